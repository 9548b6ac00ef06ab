"""Acceptance: Debian's unmodified ctr (containerd 1.6) against pyrunc-supervisor.

Each test drives the real ctr binary and checks what the container saw or did from the outside
(exit codes, output, pids, cgroup state) and the supervisor's view through ctr itself.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

from sv_harness import CTR, cgroup_dirs, pid_alive, pty_run, wait_for


def tasks(sv) -> dict[str, tuple[int, str]]:
    out = sv.ctr("tasks", "ls").stdout.splitlines()[1:]
    return {f[0]: (int(f[1]), f[2]) for f in (line.split() for line in out) if len(f) == 3}


def containers(sv) -> list[str]:
    return [line.split()[0] for line in sv.ctr("containers", "ls").stdout.splitlines()[1:]]


def run_detached(sv, sv_rootfs, *cmd) -> str:
    cid = sv.id()
    sv.ctr("run", "-d", "--rootfs", sv_rootfs, cid, *cmd)
    return cid


def remove(sv, cid: str) -> None:
    if cid in tasks(sv):
        sv.ctr("tasks", "kill", "-a", "-s", "SIGKILL", cid, check=False)
        wait_for(lambda: tasks(sv).get(cid, (0, "STOPPED"))[1] == "STOPPED", what="stop")
        sv.ctr("tasks", "delete", cid)
    sv.ctr("containers", "rm", cid)


def test_version_shows_server(sv):
    out = sv.ctr("version").stdout
    assert "Server:" in out
    uuid = re.search(r"UUID: (\S+)", out)
    assert uuid and len(uuid.group(1)) == 36


def test_run_foreground_exit_code_and_output(sv, sv_rootfs):
    cid = sv.id()
    res = sv.ctr("run", "--rootfs", sv_rootfs, cid, "/bin/sh", "-c",
                 "echo to-out; echo to-err >&2; exit 3", check=False)
    assert res.returncode == 3
    assert res.stdout == "to-out\n"
    assert "to-err" in res.stderr
    assert tasks(sv)[cid][1] == "STOPPED" if cid in tasks(sv) else True
    assert cid in containers(sv)  # without --rm the container stays
    sv.ctr("containers", "rm", cid)
    assert cid not in containers(sv)


def test_run_rm_leaves_nothing(sv, sv_rootfs):
    cid = sv.id()
    res = sv.ctr("run", "--rm", "--rootfs", sv_rootfs, cid, "/bin/true")
    assert res.returncode == 0
    assert cid not in containers(sv)
    assert cid not in tasks(sv)
    assert cid not in sv.task_dirs()
    assert not cgroup_dirs(sv.ns, cid)
    assert sv.db_count("containers") == len(containers(sv))


def test_run_env_and_cwd(sv, sv_rootfs):
    res = sv.ctr("run", "--rm", "--env", "GREETING=hello world", "--env", "B=2", "--cwd", "/tmp",
                 "--rootfs", sv_rootfs, sv.id(), "/bin/sh", "-c", 'echo "$GREETING:$B"; pwd')
    assert res.stdout == "hello world:2\n/tmp\n"


def test_run_stdin_is_forwarded(sv, sv_rootfs):
    res = sv.ctr("run", "--rm", "--rootfs", sv_rootfs, sv.id(), "/bin/sh", "-c",
                 "read line; echo got:$line", input="hello\n")
    assert res.stdout == "got:hello\n"


def test_run_tty(sv, sv_rootfs):
    cid = sv.id()
    code, out = pty_run([CTR, "-a", sv.sock, "-n", sv.ns, "run", "-t", "--rm", "--rootfs",
                          sv_rootfs, cid, "/bin/sh", "-c",
                          "tty; for i in $(seq 100); do s=$(stty -F /dev/tty size 2>/dev/null);"
                          " case $s in [1-9]*) break;; esac; sleep 0.05; done; echo size=$s;"
                          " exit 4"])
    assert code == 4, out
    assert re.search(r"/dev/pts/\d+", out), out
    assert "size=17 91" in out, out  # ctr sent our window size through ResizePty
    assert cid not in containers(sv)


def test_run_tty_interactive_input(sv, sv_rootfs):
    cid = sv.id()
    code, out = pty_run([CTR, "-a", sv.sock, "-n", sv.ns, "run", "-t", "--rm", "--rootfs",
                          sv_rootfs, cid, "/bin/sh"], send=b"echo $((6*7))\rexit 5\r")
    assert code == 5, out
    assert "42" in out


def test_run_detached_and_lifecycle(sv, sv_rootfs):
    cid = run_detached(sv, sv_rootfs, "/bin/sleep", "300")
    pid, status = tasks(sv)[cid]
    assert status == "RUNNING" and pid_alive(pid)
    ps = sv.ctr("tasks", "ps", cid).stdout.split()
    assert str(pid) in ps
    sv.ctr("tasks", "kill", cid)  # SIGTERM: sleep as pid 1 ignores it, like under containerd
    time.sleep(0.3)
    assert tasks(sv)[cid][1] == "RUNNING"
    sv.ctr("tasks", "kill", "-s", "SIGKILL", cid)
    wait_for(lambda: tasks(sv)[cid][1] == "STOPPED", what="task stopped")
    assert not pid_alive(pid)
    res = sv.ctr("tasks", "delete", cid)
    assert "137" in res.stdout + res.stderr  # ctr warns about the non-zero exit code
    assert cid not in tasks(sv)
    sv.ctr("containers", "rm", cid)
    assert cid not in containers(sv)


def test_kill_signal_reaches_process(sv, sv_rootfs):
    cid = run_detached(sv, sv_rootfs, "/bin/sh", "-c",
                       "trap 'exit 7' USR1; while true; do sleep 0.05; done")
    time.sleep(0.2)
    sv.ctr("tasks", "kill", "-s", "SIGUSR1", cid)
    assert sv.client().wait(cid, timeout=20) == 7
    remove(sv, cid)


def test_kill_all_reaches_every_process(sv, sv_rootfs):
    cid = run_detached(sv, sv_rootfs, "/bin/sh", "-c",
                       "trap '' TERM; sleep 300 & sleep 300 & wait")
    wait_for(lambda: len(sv.ctr("tasks", "ps", cid).stdout.splitlines()) == 4, what="3 pids")
    pids = [int(line.split()[0]) for line in sv.ctr("tasks", "ps", cid).stdout.splitlines()[1:]]
    sv.ctr("tasks", "kill", "-a", "-s", "SIGKILL", cid)
    wait_for(lambda: tasks(sv)[cid][1] == "STOPPED", what="task stopped")
    assert not any(pid_alive(p) for p in pids)
    remove(sv, cid)


def test_exec_with_exec_id(sv, sv_rootfs):
    cid = run_detached(sv, sv_rootfs, "/bin/sleep", "300")
    res = sv.ctr("tasks", "exec", "--exec-id", "ex1", cid, "/bin/sh", "-c",
                 "echo in-exec; cat /proc/1/cmdline | tr '\\0' ' '; exit 6", check=False)
    assert res.returncode == 6
    assert res.stdout.startswith("in-exec\n")
    assert "sleep 300" in res.stdout  # same pid namespace as the container
    # the exec is gone (ctr deleted it), so the id can be used again
    res = sv.ctr("tasks", "exec", "--exec-id", "ex1", cid, "/bin/true")
    assert res.returncode == 0
    remove(sv, cid)


def test_exec_detached_clashing_id_and_ps(sv, sv_rootfs):
    cid = run_detached(sv, sv_rootfs, "/bin/sleep", "300")
    sv.ctr("tasks", "exec", "-d", "--exec-id", "long", cid, "/bin/sleep", "200")
    res = sv.ctr("tasks", "exec", "-d", "--exec-id", "long", cid, "/bin/true", check=False)
    assert res.returncode != 0 and "already exists" in res.stderr
    ps = sv.ctr("tasks", "ps", cid).stdout
    assert "long" in ps  # the exec's pid is listed with its exec id
    from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb
    proc = sv.client().tasks.Get(tpb.GetRequest(container_id=cid, exec_id="long")).process
    remove(sv, cid)
    # ctr exec -d leaves its FIFO directory to whoever deletes the exec (as with containerd)
    shutil.rmtree(os.path.dirname(proc.stdout), ignore_errors=True)


def test_pause_resume_freezes_cgroup(sv, sv_rootfs):
    cid = run_detached(sv, sv_rootfs, "/bin/sleep", "300")
    sv.ctr("tasks", "pause", cid)
    assert tasks(sv)[cid][1] == "PAUSED"
    freezer = [d for d in cgroup_dirs(sv.ns, cid) if "/freezer/" in d]
    if freezer:
        with open(os.path.join(freezer[0], "freezer.state")) as f:
            assert f.read().strip() == "FROZEN"
    sv.ctr("tasks", "resume", cid)
    assert tasks(sv)[cid][1] == "RUNNING"
    if freezer:
        with open(os.path.join(freezer[0], "freezer.state")) as f:
            assert f.read().strip() == "THAWED"
    remove(sv, cid)


def test_metrics(sv, sv_rootfs):
    cid = run_detached(sv, sv_rootfs, "/bin/sh", "-c", "sleep 300 & wait")
    wait_for(lambda: len(sv.ctr("tasks", "ps", cid).stdout.splitlines()) == 3, what="2 pids")
    out = sv.ctr("tasks", "metrics", cid).stdout
    values = dict(line.split(None, 1) for line in out.splitlines()
                  if line and not line.startswith(("ID", "METRIC", cid)))
    assert int(values["pids.current"]) == 2
    assert int(values["memory.usage_in_bytes"]) > 0
    assert int(values["cpuacct.usage"]) > 0
    remove(sv, cid)


def test_containers_info_and_rm(sv, sv_rootfs):
    cid = sv.id()
    sv.ctr("containers", "create", "--label", "role=test", "--rootfs", sv_rootfs, cid,
           "/bin/echo", "x")
    info = sv.ctr("containers", "info", cid).stdout
    assert '"role": "test"' in info
    assert '"/bin/echo"' in info
    assert cid in containers(sv)
    res = sv.ctr("containers", "ls", "labels.role==test").stdout
    assert cid in res
    res = sv.ctr("containers", "ls", "labels.role==other").stdout
    assert cid not in res
    sv.ctr("containers", "rm", cid)
    assert cid not in containers(sv)
    res = sv.ctr("containers", "info", cid, check=False)
    assert res.returncode != 0 and "not found" in res.stderr


def test_events_in_containerd_order(sv, sv_rootfs):
    events = subprocess.Popen([CTR, "-a", sv.sock, "events"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        cid = sv.id()
        sv.ctr("run", "--rm", "--rootfs", sv_rootfs, cid, "/bin/sh", "-c", "exit 2", check=False)
        cid2 = run_detached(sv, sv_rootfs, "/bin/sleep", "300")
        sv.ctr("tasks", "exec", "--exec-id", "e1", cid2, "/bin/true")
        sv.ctr("tasks", "pause", cid2)
        sv.ctr("tasks", "resume", cid2)
        remove(sv, cid2)
        time.sleep(0.5)
    finally:
        events.terminate()
        out = events.communicate(timeout=10)[0]
    first = [ln.split()[5] for ln in out.splitlines() if f'"{cid}"' in ln]
    assert first == ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit",
                     "/tasks/delete", "/containers/delete"], out
    exit_line = next(ln for ln in out.splitlines() if "/tasks/exit" in ln and cid in ln)
    assert '"exit_status":2' in exit_line
    second = [ln.split()[5] for ln in out.splitlines() if f'"{cid2}"' in ln]
    assert second == ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exec-added",
                      "/tasks/exec-started", "/tasks/exit", "/tasks/paused", "/tasks/resumed",
                      "/tasks/exit", "/tasks/delete", "/containers/delete"], out


def test_events_filter(sv, sv_rootfs):
    events = subprocess.Popen([CTR, "-a", sv.sock, "events", 'topic=="/tasks/exit"'],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        cid = sv.id()
        sv.ctr("run", "--rm", "--rootfs", sv_rootfs, cid, "/bin/true")
        time.sleep(0.3)
    finally:
        events.terminate()
        out = events.communicate(timeout=10)[0]
    lines = [ln for ln in out.splitlines() if cid in ln]
    assert len(lines) == 1 and "/tasks/exit" in lines[0], out


def test_namespaces_are_separate(sv, sv_rootfs):
    other = sv.ns + "b"
    cid = sv.id()
    sv.ctr("run", "-d", "--rootfs", sv_rootfs, cid, "/bin/sleep", "300", namespace=other)
    try:
        assert cid not in containers(sv)
        assert other in sv.ctr("namespaces", "ls").stdout
        res = sv.ctr("namespaces", "rm", other, check=False)
        assert res.returncode != 0  # not empty
    finally:
        sv.ctr("tasks", "kill", "-s", "SIGKILL", cid, namespace=other, check=False)
        sv.client(other).wait(cid, timeout=20)
        sv.ctr("tasks", "delete", cid, namespace=other, check=False)
        sv.ctr("containers", "rm", cid, namespace=other)
        for d in cgroup_dirs(other):
            os.rmdir(d)
    sv.ctr("namespaces", "rm", other)
    assert other not in sv.ctr("namespaces", "ls").stdout
