"""Docker on pyrunc-supervisor: the docker CLI -> dockerd 20.10 (``--containerd`` pointed at
pyrunc-supervisor) -> pyrunc-shim -> the runtime.  Each scenario runs with pyrunc and with runc
as Docker's runtime (``--add-runtime``, pyrunc the default) and asserts the same behaviour.

One supervisor + dockerd pair serves the session (see dockerlib); the scenarios that kill or
restart a daemon get a pair of their own.  Every daemon lives in a network namespace the session
made: Docker's bridge, NAT rules and published ports stay inside it.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys

import pytest

import dockerlib as dl
import enginelib as el
from dockerlib import IMAGE
from enginelib import describe

# Long enough for ``docker stop -t 1`` to get there (a shell as PID 1 ignores SIGTERM).
FOREVER = "while :; do sleep 0.2; done"


# An HTTP GET printing the body (the host's static busybox wget crashes here).
FETCH = [sys.executable, "-c", "import sys, urllib.request; sys.stdout.write(urllib.request."
         "urlopen(sys.argv[1], timeout=5).read().decode())"]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def busybox_tar(ws):
    return el.build_rootfs_tar(ws)


@pytest.fixture(scope="session")
def docker_stack(ws, busybox_tar):
    stack = dl.DockerStack(ws)
    try:
        stack.start()
        stack.import_image(busybox_tar)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def dk(docker_stack, runtime):
    client = dl.DockerClient(docker_stack, runtime)
    try:
        yield client
    finally:
        client.cleanup()


def _own_stack(ws, busybox_tar, live_restore: bool):
    stack = dl.DockerStack(ws, tag=ws.name("s").rsplit("-", 1)[-1], live_restore=live_restore)
    try:
        stack.start()
        stack.import_image(busybox_tar)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def own_stack(ws, busybox_tar):
    """A supervisor + dockerd pair of the test's own (it kills or restarts them)."""
    yield from _own_stack(ws, busybox_tar, live_restore=False)


@pytest.fixture
def live_stack(ws, busybox_tar):
    """The same, dockerd with --live-restore."""
    yield from _own_stack(ws, busybox_tar, live_restore=True)


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, describe(res)
    return res.stdout


def start_detached(dk, script: str, *opts) -> str:
    name = dk.name()
    ok(dk.run("-d", *opts, IMAGE, "sh", "-c", script, name=name))
    dk.wait_state(name, "{{.State.Status}}", "running")
    return name


# ---------------------------------------------------------------- scenarios

def test_run_rm_exit_code_and_output(dk, ws):
    offset = ws.trace_offset()
    res = dk.run("--rm", IMAGE, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7")
    assert res.returncode == 7, describe(res)
    assert res.stdout == "to-stdout\n", describe(res)
    assert "to-stderr" in res.stderr, describe(res)
    calls = ws.trace_since(offset)
    assert re.search(rf"^\[{dk.runtime.name}\] .* create ", calls, re.M), calls
    other = {"pyrunc": "runc", "runc": "pyrunc"}[dk.runtime.name]
    assert f"[{other}]" not in calls, calls


def test_default_runtime_is_pyrunc(docker_stack, ws):
    """No --runtime: dockerd's --default-runtime, pyrunc (one run, outside the table)."""
    offset = ws.trace_offset()
    res = docker_stack("run", "--rm", IMAGE, "sh", "-c", "echo default")
    assert res.returncode == 0 and res.stdout == "default\n", describe(res)
    assert re.search(r"^\[pyrunc\] .* create ", ws.trace_since(offset), re.M)


def test_detached_ps_logs_exec_top_stats_inspect(dk):
    name = start_detached(dk, "echo started; " + FOREVER)
    assert name in ok(dk("ps", "--format", "{{.Names}} {{.Status}}"))
    pid = int(dk.inspect(name, "{{.State.Pid}}"))
    assert pid > 0 and os.path.exists(f"/proc/{pid}")
    el.wait_for(lambda: "started" in dk("logs", name).stdout, 60, 0.2, "the container's log")
    res = dk("exec", "-e", "X=1", "-w", "/tmp", name, "sh", "-c", "echo $X $(pwd); exit 4")
    assert res.returncode == 4 and res.stdout == "1 /tmp\n", describe(res)
    top = ok(dk("top", name))
    assert "while" in top or "sleep" in top, top
    stats = ok(dk("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name))
    assert stats.split()[0] == name and int(stats.split()[1]) >= 1, stats


def test_stop_timeout_then_sigkill(dk):
    name = start_detached(dk, FOREVER)      # sh as PID 1: SIGTERM is ignored
    ok(dk("stop", "-t", "1", name))
    assert dk.inspect(name, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    assert f"Exited (137)" in ok(dk("ps", "-a", "--filter", f"name={name}",
                                    "--format", "{{.Status}}"))


def test_stop_sigterm_handled(dk):
    name = start_detached(dk, "trap 'exit 3' TERM; " + FOREVER)
    ok(dk("stop", "-t", "30", name))
    assert dk.inspect(name, "{{.State.ExitCode}}") == "3"


def test_kill_signal_and_wait(dk):
    name = start_detached(dk, "trap 'exit 9' USR1; " + FOREVER)
    waiter = subprocess.Popen(dk.argv("wait", name), stdout=subprocess.PIPE, text=True,
                              env=dk.env)
    try:
        ok(dk("kill", "-s", "USR1", name))
        out, _ = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert out.strip() == "9"
    assert dk.inspect(name, "{{.State.ExitCode}}") == "9"


def test_pause_unpause(dk):
    name = start_detached(dk, "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done")
    ok(dk("pause", name))
    assert dk.inspect(name, "{{.State.Status}} {{.State.Paused}}") == "paused true"
    assert "Paused" in ok(dk("ps", "--filter", f"name={name}", "--format", "{{.Status}}"))
    ok(dk("unpause", name))
    assert dk.inspect(name, "{{.State.Status}}") == "running"
    first = ok(dk("exec", name, "cat", "/tmp/n"))
    el.wait_for(lambda: dk("exec", name, "cat", "/tmp/n").stdout != first, 60, 0.2,
                "the counter to move after unpause")


def test_restart_and_rm_force(dk):
    name = start_detached(dk, FOREVER)
    pid = int(dk.inspect(name, "{{.State.Pid}}"))
    ok(dk("restart", "-t", "0", name))
    dk.wait_state(name, "{{.State.Status}}", "running")
    assert int(dk.inspect(name, "{{.State.Pid}}")) not in (0, pid)
    new_pid = int(dk.inspect(name, "{{.State.Pid}}"))
    ok(dk("rm", "-f", name))
    el.wait_for(lambda: not os.path.exists(f"/proc/{new_pid}"), 60, 0.1, "the init to be gone")
    assert dk("inspect", name).returncode != 0


def test_publish_port_inside_the_netns(dk, ws):
    www = ws.mkdir("docker-www", dk.runtime.name)
    (www / "index.html").write_text(f"hello from {dk.runtime.name}\n")
    port = {"pyrunc": 18080, "runc": 18081}[dk.runtime.name]
    name = start_detached(dk, "exec httpd -f -p 80 -h /www", "-p", f"{port}:80",
                          "-v", f"{www}:/www:ro")
    ip = dk.inspect(name, "{{.NetworkSettings.IPAddress}}")
    assert ip, "no bridge address"
    ns = dk.stack.netns

    def fetch(url):
        res = ns.nsenter(FETCH + [url], timeout=30)
        return res.stdout if res.returncode == 0 else ""
    for url in (f"http://127.0.0.1:{port}/", f"http://{ip}:80/"):
        got = el.wait_for(lambda: fetch(url), 60, 0.3, f"{url} to answer")
        assert got == f"hello from {dk.runtime.name}\n"
    nat = ok(ns.nsenter(["iptables", "-t", "nat", "-S", "DOCKER"]))
    assert f"--dport {port}" in nat, nat
    # the host's network saw none of it
    res = el.run(FETCH + [f"http://127.0.0.1:{port}/"])
    assert f"hello from {dk.runtime.name}" not in res.stdout, describe(res)


def test_volumes_env_workdir_user(dk, ws):
    rw = ws.mkdir("docker-vol", dk.runtime.name, "rw")
    ro = ws.mkdir("docker-vol", dk.runtime.name, "ro")
    (ro / "f").write_text("read-only data\n")
    os.chmod(rw, 0o777)
    script = ("echo $GREETING; pwd; id -u; id -g; cat /ro/f; echo made > /rw/out; "
              "touch /ro/x 2>/dev/null; echo ro-write=$?")
    res = dk.run("--rm", "-v", f"{rw}:/rw", "-v", f"{ro}:/ro:ro", "-e", "GREETING=hi there",
                 "-w", "/home/app", "-u", "1000:1000", IMAGE, "sh", "-c", script)
    assert res.returncode == 0, describe(res)
    assert res.stdout.splitlines() == ["hi there", "/home/app", "1000", "1000", "read-only data",
                                       "ro-write=1"], describe(res)
    assert (rw / "out").read_text() == "made\n"
    assert (rw / "out").stat().st_uid == 1000
    assert not (ro / "x").exists()


def test_memory_limit_and_update(dk):
    name = start_detached(dk, FOREVER, "-m", "64m")
    assert ok(dk("exec", name, "sh", "-c", el.PROBE_MEMORY)).strip() == str(64 << 20)
    ok(dk("update", "--memory", "96m", "--memory-swap", "192m", name))
    assert ok(dk("exec", name, "sh", "-c", el.PROBE_MEMORY)).strip() == str(96 << 20)
    assert dk.inspect(name, "{{.HostConfig.Memory}}") == str(96 << 20)


def test_restart_on_failure(dk):
    name = dk.name()
    ok(dk.run("-d", "--restart", "on-failure:2", IMAGE, "sh", "-c", "echo ran; exit 5",
              name=name))
    dk.wait_state(name, "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
                  "2 exited 5")
    assert dk("logs", name).stdout.split() == ["ran"] * 3


def test_restart_always(dk):
    name = dk.name()
    ok(dk.run("-d", "--restart", "always", IMAGE, "sh", "-c", "echo ran; exit 1", name=name))
    el.wait_for(lambda: int(dk.inspect(name, "{{.RestartCount}}")) >= 2, 60, 0.2,
                "two restarts")
    ok(dk("stop", "-t", "0", name))
    assert dk.inspect(name, "{{.State.Status}}") == "exited"


def test_interactive_stdin(dk):
    res = dk.run("--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z; echo done",
                 input="line one\nline two\n")
    assert res.returncode == 0 and res.stdout == "LINE ONE\nLINE TWO\ndone\n", describe(res)
    name = start_detached(dk, FOREVER)
    res = dk("exec", "-i", name, "sh", "-c", "wc -l", input="a\nb\nc\n")
    assert res.returncode == 0 and res.stdout.strip() == "3", describe(res)


def test_terminal(dk):
    # dockerd 20.10 starts the process on a 0x0 terminal; the CLI resizes it just after
    # (API 1.41 has no console size at create): wait for the client's size to arrive
    script = ('i=0; while [ "$(stty size 2>/dev/null)" != "33 111" ] && [ $i -lt 600 ]; do '
              'sleep 0.1; i=$((i+1)); done; tty; stty size; exit 6')
    rc, out = el.run_in_pty(dk.argv("run", "--rm", "-t", *dk.run_opts(), IMAGE, "sh", "-c",
                                    script),
                            env=dk.env, timeout=60, rows=33, cols=111)
    assert rc == 6, out
    assert "/dev/pts/0" in out and "33 111" in out, out
    name = start_detached(dk, FOREVER)
    rc, out = el.run_in_pty(dk.argv("exec", "-it", name, "sh", "-c", "tty; exit 2"),
                            env=dk.env, timeout=60)
    assert rc == 2 and "/dev/pts/" in out, out


def test_logs_follow_large_output(dk):
    lines = 100_000
    name = dk.name()
    ok(dk.run("-d", IMAGE, "sh", "-c", f"sleep 0.5; seq 1 {lines}", name=name))
    res = dk("logs", "-f", name, timeout=120)
    assert res.returncode == 0, describe(res)
    got = res.stdout.split()
    assert len(got) == lines and got[-1] == str(lines) and got[0] == "1", len(got)
    assert dk.inspect(name, "{{.State.Status}} {{.State.ExitCode}}") == "exited 0"


def _run_one(dk, i: int) -> tuple[int, subprocess.CompletedProcess]:
    return i, dk.run("--rm", IMAGE, "sh", "-c", f"echo out-{i}; echo err-{i} >&2; exit {i}")


def test_parallel_runs(dk):
    n = 10
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda i: _run_one(dk, i), range(1, n + 1)))
    for i, res in results:
        assert res.returncode == i, describe(res)
        assert res.stdout == f"out-{i}\n", describe(res)
        assert f"err-{i}" in res.stderr, describe(res)


# ---------------------------------------------------------------- daemon restarts

def test_supervisor_kill9_and_restart(own_stack, runtime):
    dk = dl.DockerClient(own_stack, runtime)
    survivor = start_detached(dk, "trap 'exit 3' TERM; echo up; " + FOREVER)
    exits_while_down = start_detached(dk, "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 21")
    exits_after = start_detached(dk, "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 22")
    pid = int(dk.inspect(survivor, "{{.State.Pid}}"))

    own_stack.kill_supervisor()
    # exits while the supervisor is down: the shim keeps the exit until a daemon takes it
    down_pid = int(dk.inspect(exits_while_down, "{{.State.Pid}}"))
    el.run(["nsenter", "-t", str(down_pid), "-m", "touch", "/tmp/go"], check=True)
    el.wait_for(lambda: not os.path.exists(f"/proc/{down_pid}"), 60, 0.1, "the exit")
    own_stack.start_supervisor()

    # dockerd reconnects by itself (it polls grpc.health.v1.Health) and hears the exit
    dk.wait_state(exits_while_down, "{{.State.Status}} {{.State.ExitCode}}", "exited 21",
                  timeout=90)
    assert os.path.exists(f"/proc/{pid}")
    assert ok(dk("exec", survivor, "echo", "exec-ok")) == "exec-ok\n"
    assert "up" in ok(dk("logs", survivor)).split()
    ok(dk("exec", exits_after, "touch", "/tmp/go"))
    res = dk("wait", exits_after, timeout=90)
    assert res.returncode == 0 and res.stdout.strip() == "22", describe(res)
    ok(dk("stop", "-t", "30", survivor))
    assert dk.inspect(survivor, "{{.State.Status}} {{.State.ExitCode}}") == "exited 3"
    res = dk.run("--rm", IMAGE, "sh", "-c", "echo fresh; exit 5")
    assert res.returncode == 5 and res.stdout == "fresh\n", describe(res)


def test_dockerd_live_restore(live_stack, runtime):
    own_stack = live_stack
    dk = dl.DockerClient(own_stack, runtime)
    name = start_detached(dk, "trap 'exit 4' TERM; " + FOREVER)
    pid = int(dk.inspect(name, "{{.State.Pid}}"))
    own_stack.stop_dockerd()
    assert os.path.exists(f"/proc/{pid}"), "the container died with dockerd"
    own_stack.start_dockerd()
    dk.wait_state(name, "{{.State.Status}} {{.State.Pid}}", f"running {pid}")
    assert ok(dk("exec", name, "echo", "again")) == "again\n"
    ok(dk("stop", "-t", "30", name))
    assert dk.inspect(name, "{{.State.ExitCode}}") == "4"
