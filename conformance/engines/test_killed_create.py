"""A ``pyrunc create`` killed half-way under real engines (issue 12): podman (conmon) and
containerd's runc shim (``ctr run --runc-binary``) kill a runtime that hangs on their time-outs,
then remove the container their own way.  Nothing of the container may stay: no process, no
cgroup in any v1 hierarchy nor in the unified one (parents made for it included), no mount, no
runtime state directory.

Each case makes create block at a named stage with pyrunc's debug stop point
(``PYRUNC_DEBUG_STOP_AT``, see pyrunc/debugstop.py), set by a wrapper the engine is given as its
runtime; the wrapper also puts a marker in the environment, which every process create starts
inherits (the stage-1 child, the init: none of them execs before READY), so they are found
wherever they were re-parented.  Once the stop is reached, the test kills the create process
(SIGKILL, as a time-out's kill; SIGTERM, as a polite one), lets the engine fail the run and then
remove the container, and looks.

pyrunc only: runc has no stop points (its columns in the table stay empty).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

import enginelib as el
from enginelib import IMAGE, describe

STAGES = ["claimed", "cgroup", "rootfs", "init", "ready"]
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM}
TIMEOUT = 60


class StopWrapper:
    """A runtime binary that is pyrunc (through the tracing wrapper) stopping at ``stage``."""

    def __init__(self, ws, stage: str):
        self.mark = f"{ws.prefix}-stop-{next(ws.counter)}"
        d = ws.mkdir("killstop", self.mark)
        self.note = d / "stopped"
        self.binary = d / "pyrunc"      # (podman asks "pyrunc" for JSON support by this name)
        real = ws.runtimes["pyrunc"].binary
        self.binary.write_text(
            "#!/bin/sh\n"
            f"export PYRUNC_DEBUG_STOP_AT={stage} PYRUNC_DEBUG_STOP_NOTE={shlex.quote(str(self.note))}"
            f" PYRUNC_TEST_MARK={self.mark}\n"
            f'exec {shlex.quote(real)} "$@"\n')
        self.binary.chmod(0o755)
        self.stage = stage
        self.runtime = el.Runtime("pyrunc", str(self.binary), ws.runtimes["pyrunc"].real)

    def wait_stopped(self, engine_proc: subprocess.Popen, out: Path) -> int:
        """Wait for the stop; the pid of the ``pyrunc create`` process."""
        def reached():
            if engine_proc.poll() is not None:
                raise AssertionError(f"the engine exited {engine_proc.returncode} before the "
                                     f"stop at {self.stage}:\n{out.read_text()[-3000:]}")
            return self.note.exists() and self.note.read_text().startswith(self.stage)
        el.wait_for(reached, TIMEOUT, 0.05, f"create to stop at {self.stage}")
        # the first of them: the stage-1 child and the init are its forks (re-parented
        # away from it once the stage-1 child is gone).  A fork can share its parent's start
        # time (clock ticks), so ties go to the one whose parent is not marked.
        marked = marked_processes(self.mark)
        first = min(marked, key=lambda p: (_start_time(p), _ppid(p) in marked))
        assert "create" in _cmdline(first), _cmdline(first)
        return first


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _start_time(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat").decode()
    return int(stat.rsplit(")", 1)[1].split()[19]) if stat else 0


def _ppid(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat").decode()
    return int(stat.rsplit(")", 1)[1].split()[1]) if stat else 0


def _cmdline(pid: int) -> list[str]:
    return _read(f"/proc/{pid}/cmdline").decode(errors="replace").split("\0")[:-1]


def state_dir_of(create_pid: int, default_root: str) -> Path:
    """Where the create process keeps the container's state: its --root (the shim passes
    <--runc-root>/<namespace>; podman none: the default) and the ID."""
    argv = _cmdline(create_pid)
    root = default_root
    for i, arg in enumerate(argv):
        if arg == "--root":
            root = argv[i + 1]
        elif arg.startswith("--root="):
            root = arg.split("=", 1)[1]
    return Path(root, argv[-1])


def marked_processes(mark: str) -> set[int]:
    """Live (not zombie) processes with ``mark`` in their environment."""
    out = set()
    needle = f"PYRUNC_TEST_MARK={mark}".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        stat = _read(f"/proc/{d}/stat").decode()
        if not stat or stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            continue
        if needle in _read(f"/proc/{d}/environ"):
            out.add(int(d))
    return out


def cgroup_dirs_named(name: str) -> list[str]:
    """Every cgroup directory, in every hierarchy, whose name contains ``name``."""
    found = []
    for hierarchy in os.listdir("/sys/fs/cgroup"):
        for dirpath, dirs, _ in os.walk(os.path.join("/sys/fs/cgroup", hierarchy)):
            found += [os.path.join(dirpath, d) for d in dirs if name in d]
    return found


def recorded_cgroups(state_dir: Path) -> list[str]:
    """The cgroup directories (leaves and claimed parents) create recorded in state.json."""
    doc = json.loads((state_dir / "state.json").read_text())
    cg = doc.get("cgroup") or {}
    dirs = list(cg.get("created", []))
    dirs += list((cg.get("dirs") or {}).values())
    dirs += [d for d in (cg.get("unified_dir"), cg.get("path")) if d]
    return sorted(set(dirs))


def leftovers(mark: str, cid: str, state_dir: Path, recorded: list[str]) -> dict:
    return {"processes": sorted(marked_processes(mark)),
            "cgroups": sorted({*[d for d in recorded if os.path.isdir(d)],
                               *cgroup_dirs_named(cid)}),
            "mounts": el.host_mounts_mentioning(cid),
            "state": state_dir.exists()}


NOTHING = {"processes": [], "cgroups": [], "mounts": [], "state": False}


def _kill_and_check(stop: StopWrapper, create_pid: int, sig: int, state_dir: Path,
                    engine_proc: subprocess.Popen, out: Path) -> list[str]:
    """Kill create; the engine's run must fail.  The recorded cgroup directories."""
    recorded = recorded_cgroups(state_dir)
    assert recorded, "create recorded no cgroup"
    os.kill(create_pid, sig)
    try:
        rc = engine_proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        tree = subprocess.run(["ps", "-eo", "pid,ppid,stat,wchan:24,args", "--forest"],
                              capture_output=True, text=True).stdout
        tree = "\n".join(line for line in tree.splitlines()
                         if str(stop.note.parent) in line or "conmon" in line or
                         "pyrunc" in line or "shim" in line)
        os.killpg(engine_proc.pid, signal.SIGKILL)
        engine_proc.wait()
        raise AssertionError(f"the engine did not give up after the runtime's "
                             f"death:\n{out.read_text()[-3000:]}\n{tree}") from None
    assert rc != 0, out.read_text()[-3000:]
    return recorded


def _stop_engine(engine_proc: subprocess.Popen):
    if engine_proc.poll() is None:
        os.killpg(engine_proc.pid, signal.SIGKILL)
        engine_proc.wait()


# ---------------------------------------------------------------- podman

@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("stage", STAGES)
def test_podman_create_killed(podman, ws, stage, sig):
    """``podman run`` whose runtime create is killed at ``stage``; then ``podman rm -f``."""
    stop = StopWrapper(ws, stage)
    name = ws.name("k")
    # a cgroup parent of its own: the parents pyrunc makes for it must go too
    parent = f"/{ws.prefix}-{stop.mark.rsplit('-', 1)[1]}kill"
    out = ws.path / "killstop" / stop.mark / "podman.out"
    argv = podman.argv("run", "-d", "--name", name, "--network", "none", "--cgroup-parent",
                       parent, IMAGE, "sleep", "300", runtime=stop.runtime)
    with open(out, "wb") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                stderr=subprocess.STDOUT, env=podman.env, cwd=podman.cwd,
                                start_new_session=True)
    cid = None
    try:
        create_pid = stop.wait_stopped(proc, out)
        cid = _cmdline(create_pid)[-1]
        ws.known_ids.add(cid)
        state_dir = state_dir_of(create_pid, el.DEFAULT_ROOT["pyrunc"])
        recorded = _kill_and_check(stop, create_pid, SIGNALS[sig], state_dir, proc, out)
        res = podman("rm", "-f", "-t", "0", name, runtime=stop.runtime, timeout=TIMEOUT)
        assert res.returncode == 0, describe(res)
        assert podman("container", "exists", name).returncode == 1
        left = leftovers(stop.mark, cid, state_dir, recorded)
        assert left == NOTHING, left
    finally:
        _stop_engine(proc)
        podman("rm", "-f", "-t", "0", name, timeout=TIMEOUT)


# ---------------------------------------------------------------- containerd

@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("stage", STAGES)
def test_containerd_create_killed(containerd, ws, stage, sig):
    """``ctr run -d --runc-binary`` whose runtime create is killed at ``stage``; then the
    task (if any) and the container are removed as ctr removes them."""
    stop = StopWrapper(ws, stage)
    cid = ws.name("k")
    ws.known_ids.add(cid)
    root = ws.mkdir("killstop", stop.mark, "root")
    out = ws.path / "killstop" / stop.mark / "ctr.out"
    argv = containerd.ctr_argv("run", "-d", "--runc-binary", str(stop.binary), "--runc-root",
                               str(root), "--fifo-dir", str(containerd.fifo), IMAGE, cid,
                               "sleep", "300")
    with open(out, "wb") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                stderr=subprocess.STDOUT, env=containerd.env,
                                cwd=containerd.dir, start_new_session=True)
    try:
        create_pid = stop.wait_stopped(proc, out)
        assert _cmdline(create_pid)[-1] == cid
        state_dir = state_dir_of(create_pid, "")
        assert state_dir.is_relative_to(root), state_dir
        recorded = _kill_and_check(stop, create_pid, SIGNALS[sig], state_dir, proc, out)
        containerd.ctr("tasks", "delete", "-f", cid, timeout=TIMEOUT)     # (none: create failed)
        res = containerd.ctr("containers", "rm", cid, timeout=TIMEOUT)
        assert res.returncode == 0, describe(res)
        left = leftovers(stop.mark, cid, state_dir, recorded)
        assert left == NOTHING, left
    finally:
        _stop_engine(proc)
        el.kill_cgroup(f"/{containerd.ns}/{cid}")
        containerd.ctr("tasks", "delete", "-f", cid, timeout=20)
        containerd.ctr("containers", "rm", cid, timeout=20)
