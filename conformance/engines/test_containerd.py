"""containerd 1.6 with containerd-shim-runc-v2, the runtime named by ``ctr run --runc-binary``:
each scenario runs with pyrunc and with runc and asserts the same observable behaviour.

ctr has no --user for run, no --pids-limit, no stop and no update; those scenarios are in the
podman and CRI files.  ctr's default spec mounts no cgroup filesystem, so the cgroup scenarios
add one (``--mount type=cgroup``) to read the limits from inside.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import enginelib as el
from enginelib import IMAGE, describe

CGROUP_MOUNT = ["--mount",
                "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:nodev:noexec"]


def run_rm(ctr, script: str, *opts, timeout: float = 60):
    """``ctr run --rm`` in the foreground.  Every script here prints something: containerd
    1.6's own shim can drop all the output of a task that exits right after writing, with runc
    as with pyrunc (seen in CI on the runc anchor; upstream: concourse/concourse#6775,
    containerd/nerdctl#3877), so a run with no output at all is made once more — and fails
    the test if it happens twice in a row."""
    for _ in range(2):
        cid = ctr.name()
        res = ctr("run", "--rm", *ctr.run_opts(), *opts, IMAGE, cid, "sh", "-c", script,
                  timeout=timeout)
        if res.stdout or res.stderr:
            break
    return res


def start_detached(ctr, ws, script: str, *opts, wait_running: bool = True) -> tuple[str, Path]:
    """A task running ``sh -c script`` in the background, its output in a log file."""
    cid = ctr.name()
    log = ws.path / "containerd" / f"{cid}.log"
    res = ctr("run", "-d", "--log-uri", f"file://{log}", *ctr.run_opts(), *opts, IMAGE, cid,
              "sh", "-c", script)
    assert res.returncode == 0, describe(res)
    if wait_running:
        el.wait_for(lambda: ctr.task_status(cid) == "RUNNING", 10, 0.05, f"task {cid} to run")
    return cid, log


def wait_text(path: Path, text: str, timeout: float = 15):
    el.wait_for(lambda: path.exists() and text in path.read_text(), timeout, 0.05,
                f"{text!r} in {path.name}")


class Foreground:
    """``ctr run`` in the foreground (as a user would type it), its output in a file."""

    def __init__(self, ctr, ws, script: str, *opts):
        self.cid = ctr.name()
        self.out = ws.path / "containerd" / f"{self.cid}.fg"
        with open(self.out, "wb") as f:
            self.proc = subprocess.Popen(
                ctr.argv("run", "--rm", *ctr.run_opts(), *opts, IMAGE, self.cid, "sh", "-c",
                         script), stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                env=ctr.ctd.env, cwd=ctr.ctd.dir, start_new_session=True)

    def wait(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
            raise AssertionError(f"ctr run did not exit within {timeout}s:\n{self.out.read_text()}")

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()


def task_pid(ctr, cid: str) -> int:
    for line in ctr("tasks", "ls").stdout.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == cid:
            return int(parts[1])
    raise AssertionError(f"no task {cid}")


# ---------------------------------------------------------------- lifecycle

def test_run_foreground_exit_code(ctr):
    res = run_rm(ctr, "echo out; echo err >&2; exit 7")
    assert res.returncode == 7, describe(res)
    assert res.stdout == "out\n" and "err\n" in res.stderr, describe(res)
    cid = ctr.ids[-1]
    assert cid not in ctr("containers", "ls", "-q").stdout.split(), "--rm left the container"


def test_detached_then_logs(ctr, ws):
    cid, log = start_detached(ctr, ws, "echo line-out; echo line-err >&2; echo done; sleep 600")
    wait_text(log, "done")
    text = log.read_text()
    assert "line-out\n" in text and "line-err\n" in text, text
    assert ctr.task_status(cid) == "RUNNING"


def test_exit_code_on_delete(ctr, ws):
    cid, _ = start_detached(ctr, ws, "exit 42", wait_running=False)
    el.wait_for(lambda: ctr.task_status(cid) == "STOPPED", 10, 0.05, "the task to stop")
    res = ctr("tasks", "delete", cid)
    assert "exit code 42" in res.stderr, describe(res)


def test_exec(ctr, ws):
    cid, _ = start_detached(ctr, ws, "while :; do sleep 0.2; done")
    res = ctr("tasks", "exec", "--exec-id", "e1", cid, "sh", "-c",
              "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); exit 5")
    assert res.returncode == 5, describe(res)
    assert "pid1=sh -c while" in res.stdout, describe(res)
    res = ctr("tasks", "exec", "--exec-id", "e2", "--cwd", "/tmp", "--user", "1000", cid,
              "sh", "-c", "echo $(pwd) $(id -u)")
    assert res.returncode == 0 and res.stdout == "/tmp 1000\n", describe(res)


def test_exec_tty(ctr, ws):
    cid, _ = start_detached(ctr, ws, "while :; do sleep 0.2; done")
    rc, out = el.run_in_pty(ctr.argv("tasks", "exec", "-t", "--exec-id", "t1", cid, "sh", "-c",
                                     "tty; sleep 0.3; stty size; exit 3"),
                            env=ctr.ctd.env, cwd=ctr.ctd.dir, rows=24, cols=80)
    assert rc == 3, out
    assert "/dev/pts/" in out and "24 80" in out, out


def test_interactive_tty_tmux(ctr, ws):
    cid = ctr.name()
    argv = ctr.argv("run", "-t", "--rm", *ctr.run_opts(), IMAGE, cid, "sh")
    s = ws.tmux.start(shlex.join(argv), {"TMPDIR": ctr.ctd.env["TMPDIR"]}, rows=30, cols=100)
    ws.tmux.wait_screen(s, "# ")
    ws.tmux.send(s, "echo $((6*7))-$(tty)")
    ws.tmux.wait_screen(s, "42-/dev/pts/0")
    ws.tmux.send(s, "stty size")
    ws.tmux.wait_screen(s, "30 100")
    ws.tmux.send(s, "exit 6")
    assert ws.tmux.exit_status(s) == 6, ws.tmux.screen(s)


def test_kill_sigterm(ctr, ws):
    fg = Foreground(ctr, ws, "trap 'echo got-term; exit 3' TERM; echo ready; "
                             "while :; do sleep 0.1; done")
    try:
        wait_text(fg.out, "ready")
        res = ctr("tasks", "kill", "-s", "SIGTERM", fg.cid)
        assert res.returncode == 0, describe(res)
        assert fg.wait() == 3, fg.out.read_text()
        assert "got-term" in fg.out.read_text()
    finally:
        fg.kill()


def test_sigterm_ignored_then_sigkill(ctr, ws):
    fg = Foreground(ctr, ws, "trap '' TERM; echo ready; while :; do sleep 0.1; done")
    try:
        wait_text(fg.out, "ready")
        res = ctr("tasks", "kill", "-s", "SIGTERM", fg.cid)
        assert res.returncode == 0, describe(res)
        time.sleep(1)
        assert ctr.task_status(fg.cid) == "RUNNING", "SIGTERM stopped a task that ignores it"
        res = ctr("tasks", "kill", "-s", "SIGKILL", fg.cid)
        assert res.returncode == 0, describe(res)
        assert fg.wait() == 137, fg.out.read_text()
    finally:
        fg.kill()


def test_rm(ctr, ws, runtime):
    cid, _ = start_detached(ctr, ws, "while :; do sleep 0.2; done")
    pid = task_pid(ctr, cid)
    cgroup = el.cgroup_of(pid)["memory"]
    assert ctr("tasks", "kill", "-s", "SIGKILL", cid).returncode == 0
    el.wait_for(lambda: ctr.task_status(cid) == "STOPPED", 10, 0.05, "the task to stop")
    res = ctr("tasks", "delete", cid)
    assert res.returncode == 0, describe(res)
    res = ctr("containers", "rm", cid)
    assert res.returncode == 0, describe(res)
    assert cid not in ctr("containers", "ls", "-q").stdout.split()
    state = el.run([runtime.real, "--root", str(ctr.root / ctr.ctd.ns), "state", cid])
    assert state.returncode != 0, f"runtime state left after delete: {state.stdout}"
    assert not Path(f"/sys/fs/cgroup/memory{cgroup}").exists(), f"cgroup {cgroup} left"
    assert not el.host_mounts_mentioning(cid), el.host_mounts_mentioning(cid)


# ---------------------------------------------------------------- process settings

def test_cap_drop_cap_add(ctr):
    base = run_rm(ctr, "cat /proc/self/status")
    assert base.returncode == 0, describe(base)
    res = run_rm(ctr, el.CAP_PROBE,
                 "--cap-drop", "CAP_CHOWN", "--cap-add", "CAP_SYS_ADMIN")
    assert res.returncode == 0, describe(res)
    el.assert_cap_drop_and_add(base.stdout, res.stdout)


def test_env(ctr):
    res = run_rm(ctr, 'printf "%s|" "$FOO" "$SPACED"; echo; env',
                 "--env", "FOO=bar", "--env", "SPACED=a b  c")
    assert res.returncode == 0, describe(res)
    assert res.stdout.splitlines()[0] == "bar|a b  c|", describe(res)
    env = res.stdout.splitlines()[1:]
    assert any(v.startswith("PATH=") for v in env), env
    assert not any(v.startswith(("CONTAINERD_", "GRPC_", "PYTEST_")) for v in env), env


def test_workdir(ctr):
    res = run_rm(ctr, "pwd", "--cwd", "/tmp")
    assert res.stdout == "/tmp\n", describe(res)
    # a cwd missing from the image: the runtime creates it
    res = run_rm(ctr, "pwd; ls -ld . | cut -c1", "--cwd", "/srv/new/dir")
    assert res.returncode == 0 and res.stdout == "/srv/new/dir\nd\n", describe(res)


def test_exec_user(ctr, ws):
    cid, _ = start_detached(ctr, ws, "while :; do sleep 0.2; done")
    res = ctr("tasks", "exec", "--exec-id", "u1", "--user", "1000", cid, "sh", "-c",
              "id -u; id -g; grep CapEff /proc/self/status; touch /etc/x 2>&1; echo touch=$?")
    assert res.returncode == 0, describe(res)
    assert res.stdout.splitlines()[:2] == ["1000", "1000"], describe(res)
    assert el.caps_of(res.stdout) == 0, describe(res)
    assert "touch=1" in res.stdout and "Permission denied" in res.stdout, describe(res)


# ---------------------------------------------------------------- filesystem

def test_read_only(ctr):
    res = run_rm(ctr, "touch /x 2>&1; echo root=$?; grep ' / / ' /proc/self/mountinfo",
                 "--read-only")
    assert res.returncode == 0, describe(res)
    assert "Read-only file system" in res.stdout and "root=1" in res.stdout, describe(res)
    root_opts = res.stdout.strip().splitlines()[-1].split()[5].split(",")
    assert "ro" in root_opts, describe(res)


def test_bind_volume(ctr, ws):
    rw, ro = ws.mkdir("vol", ws.name("v")), ws.mkdir("vol", ws.name("v"))
    (rw / "host.txt").write_text("from-host\n")
    res = run_rm(ctr, "cat /data/host.txt; echo from-container > /data/c.txt; "
                      "touch /ro/x 2>&1; echo ro=$?",
                 "--mount", f"type=bind,src={rw},dst=/data,options=rbind:rw",
                 "--mount", f"type=bind,src={ro},dst=/ro,options=rbind:ro")
    assert res.returncode == 0, describe(res)
    assert "from-host" in res.stdout, describe(res)
    assert (rw / "c.txt").read_text() == "from-container\n"
    assert "ro=1" in res.stdout and "Read-only file system" in res.stdout, describe(res)


# ---------------------------------------------------------------- cgroups

def test_memory(ctr):
    res = run_rm(ctr, el.PROBE_MEMORY, "--memory-limit", str(64 << 20), *CGROUP_MOUNT)
    assert res.returncode == 0 and res.stdout.strip() == str(64 << 20), describe(res)
    res = run_rm(ctr, "dd if=/dev/zero of=/dev/null bs=96M count=1 2>/dev/null; echo dd=$?",
                 "--memory-limit", str(32 << 20))
    assert "dd=137" in res.stdout, describe(res)


def test_cpus(ctr):
    res = run_rm(ctr, el.PROBE_CPU, "--cpus", "0.5", *CGROUP_MOUNT)
    assert res.returncode == 0 and res.stdout.strip() == "50000 100000", describe(res)


def test_cgroup_membership(ctr, ws):
    """The task's processes are in /<namespace>/<id> in every hierarchy."""
    cid, _ = start_detached(ctr, ws, "while :; do sleep 0.2; done")
    want = f"/{ctr.ctd.ns}/{cid}"
    got = el.cgroup_of(task_pid(ctr, cid))
    wrong = {k or "cgroup2": v for k, v in got.items() if v != want}
    assert not wrong, f"expected {want} everywhere; differs in {wrong}"


def test_pause_resume(ctr, ws):
    vol = ws.mkdir("vol", ws.name("v"))
    cid, _ = start_detached(ctr, ws, el.COUNTER_LOOP,
                            "--mount", f"type=bind,src={vol},dst=/data,options=rbind:rw")
    count = vol / "count"
    el.wait_for(lambda: el.read_counter(count) > 2, 10, 0.05, "the counter to run")
    res = ctr("tasks", "pause", cid)
    assert res.returncode == 0, describe(res)
    assert ctr.task_status(cid) == "PAUSED"
    before = el.read_counter(count)
    time.sleep(0.5)
    assert el.read_counter(count) == before, "the counter advanced while paused"
    res = ctr("tasks", "resume", cid)
    assert res.returncode == 0, describe(res)
    assert ctr.task_status(cid) == "RUNNING"
    el.wait_for(lambda: el.read_counter(count) > before + 2, 10, 0.05,
                "the counter to advance after resume")


def test_ps(ctr, ws):
    cid, log = start_detached(ctr, ws, "sleep 1000 & echo ready; while :; do sleep 0.2; done")
    wait_text(log, "ready")
    res = ctr("tasks", "ps", cid)
    assert res.returncode == 0, describe(res)
    pids = {int(line.split()[0]) for line in res.stdout.splitlines()[1:] if line.strip()}
    init = task_pid(ctr, cid)
    assert init in pids, describe(res)
    sleepers = {p for p in pids if Path(f"/proc/{p}/cmdline").exists()
                and Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"sleep\x001000")}
    assert sleepers, f"`sleep 1000` not listed: {describe(res)}"


def test_metrics(ctr, ws):
    cid, _ = start_detached(ctr, ws, "while :; do sleep 0.2; done",
                            "--memory-limit", str(64 << 20))
    res = ctr("tasks", "metrics", cid)
    assert res.returncode == 0, describe(res)
    values = dict(line.split(None, 1) for line in res.stdout.splitlines() if len(line.split()) > 1)
    assert values.get("memory.limit_in_bytes", "").strip() == str(64 << 20), describe(res)
    assert int(values.get("pids.current", "0").strip()) >= 1, describe(res)


# ---------------------------------------------------------------- network

def test_network_none(ctr):
    res = run_rm(ctr, "ls /sys/class/net; readlink /proc/self/ns/net")
    assert res.returncode == 0, describe(res)
    *ifaces, netns = res.stdout.split()
    assert ifaces == ["lo"], describe(res)
    assert netns != os.readlink("/proc/self/ns/net"), "the task shares the host's netns"
