"""Operating the supervisor like a daemon operators know (issue 19): shim process titles,
``--version`` everywhere, the config file, log levels, Prometheus metrics."""
from __future__ import annotations

import os
import shutil
import subprocess

from google.protobuf import empty_pb2

from sv_harness import ROOT, destroy, pid_alive, wait_for

BIN = os.path.join(ROOT, ".venv", "bin")


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").replace(b"\0", b" ").decode()


def ps_args() -> dict[int, str]:
    """``ps -eo pid,args`` as operators read it."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True,
                         check=True).stdout
    return {int(pid): args for pid, _, args in (ln.strip().partition(" ")
                                                for ln in out.splitlines())}


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


# -- process titles --------------------------------------------------------------------------------

def test_ps_names_every_shim_and_its_container(sv_own, sv_rootfs):
    sv = sv_own
    other_ns = sv.ns + "b"
    started = [(sv.ns, sv.id("title")), (sv.ns, sv.id("title")), (other_ns, sv.id("title"))]
    for ns, cid in started:
        sv.ctr("run", "-d", "--rootfs", sv_rootfs, cid, "sleep", "1000", namespace=ns)
    # every container's shim, the zygote and the spare (started in the background)
    wait_for(lambda: len(sv.shim_pids()) == len(started) + 2, 60, what="shims, zygote, spare")
    shims = sv.shim_pids()
    titles = ps_args()
    want = {f"pyrunc-shim ns={ns} id={cid}" for ns, cid in started}
    assert sorted(titles[p] for p in shims) == sorted(want | {"pyrunc-shim zygote",
                                                              "pyrunc-shim spare"}), titles
    for ns, cid in started:
        # the titled shim is the one that owns the container: its init's parent
        init = int(sv.ctr("task", "ls", namespace=ns).stdout.split(cid)[1].split()[0])
        assert titles[ppid(init)] == f"pyrunc-shim ns={ns} id={cid}"
        # pgrep finds it by its title
        found = subprocess.run(["pgrep", "-f", f"^pyrunc-shim ns={ns} id={cid}$"],
                               capture_output=True, text=True).stdout.split()
        assert [int(p) for p in found] == [ppid(init)]
    # the process name (what top shows, pgrep matches without -f) says pyrunc-shim as well
    for pid in shims:
        with open(f"/proc/{pid}/comm") as f:
            assert f.read().startswith("pyrunc-shim"), pid
    # a deleted container's shim is gone, with its title
    ns, cid = started[0]
    gone = [p for p in shims if titles[p] == f"pyrunc-shim ns={ns} id={cid}"][0]
    sv.ctr("task", "kill", "-s", "KILL", cid, namespace=ns)
    wait_for(lambda: "STOPPED" in sv.ctr("task", "ls", namespace=ns).stdout, 60,
             what="task stopped")
    sv.ctr("task", "delete", cid, namespace=ns)
    sv.ctr("container", "delete", cid, namespace=ns)
    wait_for(lambda: not pid_alive(gone), 60, what="the deleted container's shim exits")
    for ns, cid in started[1:]:
        destroy(sv, sv.client(ns), cid)


# -- versions -----------------------------------------------------------------------------------------

def git_commit() -> str | None:
    """The checkout's commit by git itself (None without git: then only consistency is checked)."""
    git = shutil.which("git")
    if git is None:
        return None
    res = subprocess.run([git, "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def test_every_command_prints_its_version_and_the_servers_revision(sv):
    from supervisor import __version__
    revision = sv.client().version.Version(empty_pb2.Empty()).revision
    expected = git_commit()
    if expected is not None:
        assert revision == expected
    assert revision
    for prog in ("pyrunc-supervisor", "pyrunc-shim", "pyrunc-ctl"):
        res = subprocess.run([os.path.join(BIN, prog), "--version"], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res
        assert res.stdout == f"{prog} {__version__} {revision}\n"
    res = subprocess.run([os.path.join(BIN, "pyrunc"), "--version"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and f"\ncommit: {revision}\n" in res.stdout, res
    # what a containerd client shows
    out = sv.ctr("version").stdout
    assert f"Revision: {revision}" in out.split("Server:")[1]
