"""The conformance suite as an unprivileged user, pyrunc beside runc (part of ``make test``).

``conformance/run_rootless.py`` makes a throwaway user (its own /etc/subuid range, removed
afterwards with every process it left) and runs every check as that user, the bundles made the
way rootless podman makes them, first with pyrunc and then with runc (about 70 s for both on
this project's 2-core VM).  The pass criterion:

1. pyrunc passes every check runc passes as that user, but for the deviations listed in
   DEVIATES (each with its reason, also in docs/rootless.md);
2. pyrunc passes every MUST check that does not need privileges: the MUST checks it fails are
   all in NEEDS_PRIVILEGE, each group with what an unprivileged user cannot have on this host.

A check that starts passing is fine (the lists are the most that may fail, not what must).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PYRUNC = os.environ.get("RUNTIME") or str(HERE.parent / ".venv" / "bin" / "pyrunc")
RUNC = "/usr/sbin/runc"

# MUST checks pyrunc may fail as an unprivileged user, by what they need.
NEEDS_PRIVILEGE = {
    # The suite's own set-up mounts a tmpfs or binds a directory on the host (CAP_SYS_ADMIN in
    # the host's user namespace), before any runtime runs.
    "host mounts by the suite": [
        "mounts.shared", "mounts.rshared", "mounts.slave", "mounts.rslave", "mounts.private",
        "mounts.rprivate", "mounts.unbindable", "mounts.runbindable", "mounts.bind",
        "mounts.bind-ro", "mounts.bind-flags", "mounts.bind-nonrecursive",
        "mounts.rbind-content", "linux.rootfs-slave", "linux.rootfs-private"],
    # The suite's namespace holder (a process in new net/uts/ipc namespaces, for `path` joins)
    # needs CAP_SYS_ADMIN outside a user namespace.
    "namespaces made by the suite": [
        "lifecycle.delete-keeps-others", "namespaces.path-network", "namespaces.path-uts",
        "namespaces.path-wrong-type"],
    # No pid namespace of its own: proc cannot be mounted for the host's pid namespace, which
    # the user's user namespace does not own.
    "proc of the host's pid namespace": ["namespaces.inherit"],
    # A user namespace cannot mknod: a device is a bind of the host's node, which keeps its own
    # mode and owner, and a node the host lacks cannot be had.
    "device nodes": ["devices.config-mode", "devices.config-owner", "cgroups.devices-order"],
    # Resource limits need a delegated cgroup; cgroup v1 (this hybrid host) cannot be delegated.
    "cgroups not delegated": ["cgroups.path", "cgroups.path-removed", "cgroups.pids-limit",
                              "cgroups.memory-limit"],
    # Also in DEVIATES: pyrunc's rootless init stays non-dumpable until it execs the program.
    "the created init's /proc/<pid>/ns": ["hooks.container-namespace"],
}

# Checks runc passes as the user and pyrunc fails, by design.
DEVIATES = {
    "hooks.container-namespace": "createContainer hooks read /proc/<pid>/ns/* of the created "
    "init; pyrunc keeps it non-dumpable (its memory belongs to the host's user namespace) "
    "where runc's rootless init is dumpable, so a container process could ptrace it",
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("host: the rootless run needs root to make its test user")
    if not os.access(RUNC, os.X_OK):
        pytest.skip(f"host: runc is not installed at {RUNC} (the comparison needs it)")
    out = tmp_path_factory.mktemp("rootless") / "outcomes.json"
    res = subprocess.run([sys.executable, str(HERE / "run_rootless.py"), "--runtime", PYRUNC,
                          "--runtime", RUNC, "--json", str(out)], capture_output=True,
                         text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert out.exists(), f"run_rootless.py exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    data = json.loads(out.read_text())
    pyrunc, runc = data.values()
    return pyrunc, runc, res.stdout


def _must(outcomes: dict) -> tuple[int, int]:
    must = [o for o in outcomes.values() if o["level"] == "MUST"]
    return sum(o["passed"] for o in must), len(must)


def test_pyrunc_passes_every_check_runc_passes_as_a_user(outcomes):
    pyrunc, runc, table = outcomes
    worse = sorted(c for c, o in runc.items()
                   if o["passed"] and not pyrunc[c]["passed"] and c not in DEVIATES)
    assert not worse, "pyrunc fails as a user what runc passes: " + "; ".join(
        f"{c}: {pyrunc[c]['message']}" for c in worse) + "\n" + table
    print("rootless MUST: pyrunc %d/%d, runc %d/%d" % (*_must(pyrunc), *_must(runc)))


def test_pyrunc_passes_every_must_check_that_needs_no_privilege(outcomes):
    pyrunc, _, table = outcomes
    allowed = {c for checks in NEEDS_PRIVILEGE.values() for c in checks}
    failed = sorted(c for c, o in pyrunc.items()
                    if o["level"] == "MUST" and not o["passed"] and c not in allowed)
    assert not failed, "pyrunc fails MUST checks a user can pass: " + "; ".join(
        f"{c}: {pyrunc[c]['message']}" for c in failed) + "\n" + table
    unknown = allowed - set(pyrunc)
    assert not unknown, f"NEEDS_PRIVILEGE names checks the suite does not have: {unknown}"
