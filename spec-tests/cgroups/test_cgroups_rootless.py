"""Rootless pyrunc in a *delegated* cgroup v2 subtree: limits applied and enforced.

Delegation is what systemd does for a user (``Delegate=yes``): a cgroup directory and its
``cgroup.procs``, ``cgroup.subtree_control`` and ``cgroup.threads`` are chowned to the user, and
the user's processes run inside it.  Here root makes such a subtree for ``nobody`` (no
/etc/subuid needed: the container maps nobody alone to its root), starts pyrunc as nobody in a
leaf of it, and the container's cgroup goes beside that leaf.  Only a pure cgroup v2 host has
this (this project's CI hosts are hybrid: ``make test-vm`` runs it in a VM).
"""

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time

import pytest

from harness import PYRUNC, base_config

NOBODY = 65534
CGROOT = "/sys/fs/cgroup"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(f"{CGROOT}/cgroup.controllers"),
                       reason="host: no pure cgroup v2 to delegate (hybrid); `make test-vm` "
                              "runs this in a VM"),
    pytest.mark.skipif(os.geteuid() != 0, reason="host: delegating a cgroup needs root"),
]


def _write(path: str, data: str) -> None:
    with open(path, "w") as f:
        f.write(data)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _remove_cgroup_tree(top: str) -> None:
    if not os.path.isdir(top):
        return
    try:
        _write(f"{top}/cgroup.kill", "1")
    except OSError:
        pass
    deadline = time.monotonic() + 60
    for base, dirs, _ in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
        while True:
            try:
                os.rmdir(base)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)    # the killed processes are still leaving


class Delegated:
    """A cgroup subtree and a state dir delegated to nobody; pyrunc runs there as nobody."""

    def __init__(self, template: str):
        self.name = f"pyrunc-rl-{secrets.token_hex(3)}"
        self.top = f"{CGROOT}/{self.name}"
        self.runner = f"{self.top}/runner"
        self.tmp = tempfile.mkdtemp(prefix="pyrunc-rl-")
        os.chmod(self.tmp, 0o755)
        self.run_dir = os.path.join(self.tmp, "run")
        os.mkdir(self.run_dir, 0o700)
        self.bundle = os.path.join(self.tmp, "bundle")
        shutil.copytree(template, os.path.join(self.bundle, "rootfs"), symlinks=True)
        self.root = os.path.join(self.run_dir, "pyrunc")

    def setup(self) -> None:
        wanted = {"memory", "pids"}
        enabled = set(_read(f"{CGROOT}/cgroup.subtree_control").split())
        if wanted - enabled:
            _write(f"{CGROOT}/cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        os.mkdir(self.top)
        _write(f"{self.top}/cgroup.subtree_control", "+memory +pids")
        os.mkdir(self.runner)
        for path in (self.top, *(f"{self.top}/{f}" for f in
                                 ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads")),
                     self.runner, f"{self.runner}/cgroup.procs"):
            os.chown(path, NOBODY, NOBODY)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", self.tmp], check=True)

    def cleanup(self) -> None:
        _remove_cgroup_tree(self.top)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _as_nobody(self) -> None:      # (in the child, before exec)
        _write(f"{self.runner}/cgroup.procs", "0")
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    def __call__(self, *args, timeout=300):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.tmp,
               "XDG_RUNTIME_DIR": self.run_dir}
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            res = subprocess.run([PYRUNC, *args], env=env, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=err, text=True, timeout=timeout,
                                 preexec_fn=self._as_nobody, cwd=self.tmp)
            out.seek(0)
            err.seek(0)
            res.stdout, res.stderr = out.read(), err.read()
        return res


@pytest.fixture
def delegated(rootfs_template):
    d = Delegated(rootfs_template)
    try:
        d.setup()
        yield d
    finally:
        d.cleanup()


def test_limits_applied_and_enforced_in_a_delegated_cgroup(delegated):
    d = delegated
    cfg = base_config(["sleep", "3600"])
    linux = cfg["linux"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
    linux["uidMappings"] = [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    linux["cgroupsPath"] = f"/{d.name}/c1"
    linux["resources"] = {"memory": {"limit": 32 << 20}, "pids": {"limit": 12}}
    cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "sysfs"] + [
        {"destination": "/sys", "type": "none", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    with open(os.path.join(d.bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    os.chown(os.path.join(d.bundle, "config.json"), NOBODY, NOBODY)
    res = d("run", "--detach", "--bundle", d.bundle, "c1")
    assert res.returncode == 0, res
    cg = f"{d.top}/c1"
    # (few pyrunc commands: each takes seconds in the TCG VM; the host's view says enough)
    assert len(_read(f"{cg}/cgroup.procs").split()) == 1
    assert (_read(f"{cg}/memory.max"), _read(f"{cg}/pids.max")) == (str(32 << 20), "12")
    assert os.path.isfile(f"{d.root}/c1/state.json")       # $XDG_RUNTIME_DIR/pyrunc
    # enforced: forks beyond the limit fail
    res = d("exec", "c1", "sh", "-c", "for i in $(seq 30); do sleep 3600 & done; wait")
    assert res.returncode != 0, res
    assert len(_read(f"{cg}/cgroup.procs").split()) <= 12
    # pause and resume work on the delegated cgroup
    assert d("pause", "c1").returncode == 0
    assert _read(f"{cg}/cgroup.freeze") == "1"
    assert d("resume", "c1").returncode == 0
    assert _read(f"{cg}/cgroup.freeze") == "0"
    res = d("delete", "--force", "c1")
    assert res.returncode == 0, res
    assert not os.path.exists(cg), "the container's cgroup was left"
    assert os.listdir(d.root) == []
