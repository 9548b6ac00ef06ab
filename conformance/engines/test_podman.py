"""podman 4.3 with ``--runtime PATH`` (conmon drives the runtime): each scenario runs with pyrunc
and with runc and asserts the same observable behaviour, from inside the container where it can.

Every container gets ``--network none`` and the session's cgroup parent (cgroupfs); the store,
configuration and ulimits are the session's own (see enginelib.Podman).
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import enginelib as el
from enginelib import IMAGE, describe


def start_detached(pm, script: str, *opts) -> str:
    """A detached container running ``sh -c script``; its name."""
    name = pm.name()
    res = pm("run", "-d", *pm.run_opts(name), *opts, IMAGE, "sh", "-c", script)
    assert res.returncode == 0, describe(res)
    pm.container_id(name)
    return name


def sleeper(pm, *opts) -> str:
    return start_detached(pm, "echo ready; while :; do sleep 0.2; done", *opts)


def run_rm(pm, script: str, *opts, timeout: float = 60):
    name = pm.name()
    return pm("run", "--rm", *pm.run_opts(name), *opts, IMAGE, "sh", "-c", script,
              timeout=timeout)


def logs_contain(pm, name: str, text: str, timeout: float = 15):
    el.wait_for(lambda: text in (lambda r: r.stdout + r.stderr)(pm("logs", name)), timeout,
                0.1, f"{text!r} in the logs of {name}")


# ---------------------------------------------------------------- lifecycle

def test_run_foreground_exit_code(pm):
    name = pm.name()
    res = pm("run", "--rm", *pm.run_opts(name), IMAGE, "sh", "-c",
             "echo out; echo err >&2; exit 7")
    assert res.returncode == 7, describe(res)
    assert res.stdout == "out\n", describe(res)
    assert "err\n" in res.stderr, describe(res)
    assert pm("container", "exists", name).returncode == 1, "--rm left the container"


def test_detached_then_logs(pm):
    name = start_detached(pm, "echo line-out; echo line-err >&2; echo done; sleep 600")
    logs_contain(pm, name, "done")
    res = pm("logs", name)
    assert res.returncode == 0, describe(res)
    assert "line-out\n" in res.stdout and "line-err\n" in res.stderr, describe(res)
    assert pm.inspect(name, "{{.State.Status}}") == "running"


def test_inspect_exit_code(pm):
    name = pm.name()
    res = pm("run", *pm.run_opts(name), IMAGE, "sh", "-c", "exit 42")
    assert res.returncode == 42, describe(res)
    pm.container_id(name)
    assert pm.inspect(name, "{{.State.Status}} {{.State.ExitCode}}") == "exited 42"


def test_exec(pm):
    name = sleeper(pm)
    res = pm("exec", name, "sh", "-c", "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); exit 5")
    assert res.returncode == 5, describe(res)
    assert "pid1=sh -c echo ready" in res.stdout, describe(res)
    res = pm("exec", "-e", "X=from-exec", "-w", "/tmp", "--user", "1000", name,
             "sh", "-c", "echo $X $(pwd) $(id -u)")
    assert res.returncode == 0 and res.stdout == "from-exec /tmp 1000\n", describe(res)


def test_exec_tty(pm):
    name = sleeper(pm)
    rc, out = el.run_in_pty(pm.argv("exec", "-t", name, "sh", "-c",
                                    "tty; sleep 0.3; stty size; exit 3"),
                            env=pm.env, cwd=pm.podman.cwd, rows=24, cols=80)
    assert rc == 3, out
    assert "/dev/pts/" in out, out
    assert "24 80" in out, out


def test_interactive_tty_tmux(pm, ws):
    name = pm.name()
    argv = pm.argv("run", "-it", "--rm", *pm.run_opts(name), IMAGE, "sh")
    env = {k: v for k, v in pm.env.items() if os.environ.get(k) != v}
    s = ws.tmux.start(shlex.join(argv), env, rows=30, cols=100)
    ws.tmux.wait_screen(s, "# ")
    ws.tmux.send(s, "echo $((6*7))-$(tty)")
    ws.tmux.wait_screen(s, "42-/dev/pts/0")
    ws.tmux.send(s, "stty size")
    ws.tmux.wait_screen(s, "30 100")
    ws.tmux.send(s, "exit 6")
    assert ws.tmux.exit_status(s) == 6, ws.tmux.screen(s)


def test_kill_sigterm(pm):
    name = start_detached(pm, "trap 'echo got-term; exit 3' TERM; echo ready; "
                              "while :; do sleep 0.1; done")
    logs_contain(pm, name, "ready")
    res = pm("kill", "--signal", "TERM", name)
    assert res.returncode == 0, describe(res)
    res = pm("wait", name, timeout=20)
    assert res.stdout.strip() == "3", describe(res)
    logs_contain(pm, name, "got-term")


def test_stop_sigterm_then_sigkill(pm):
    # TERM honoured: the trap's exit status
    name = start_detached(pm, "trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done")
    logs_contain(pm, name, "ready")
    res = pm("stop", "-t", "10", name, timeout=30)
    assert res.returncode == 0 and "SIGKILL" not in res.stderr, describe(res)
    assert pm.inspect(name, "{{.State.ExitCode}}") == "3"
    # TERM ignored: SIGKILL after the timeout
    name = start_detached(pm, "trap '' TERM; echo ready; while :; do sleep 0.1; done")
    logs_contain(pm, name, "ready")
    t0 = time.monotonic()
    res = pm("stop", "-t", "2", name, timeout=30)
    waited = time.monotonic() - t0
    assert res.returncode == 0, describe(res)
    assert "resorting to SIGKILL" in res.stderr, describe(res)
    assert waited >= 1.5, f"stopped after {waited:.1f}s, before the 2 s timeout"
    assert pm.inspect(name, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"


def test_rm(pm, runtime):
    name = sleeper(pm)
    cid = pm.container_id(name)
    pid = int(pm.inspect(name, "{{.State.Pid}}"))
    cgroup = el.cgroup_of(pid)["memory"]
    res = pm("rm", "-f", "-t", "0", name)
    assert res.returncode == 0, describe(res)
    assert pm("container", "exists", name).returncode == 1
    el.wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, 0.05, "the container's init to go")
    state = el.run([runtime.real, "--root", el.DEFAULT_ROOT[runtime.name], "state", cid])
    assert state.returncode != 0, f"runtime state left after rm: {state.stdout}"
    assert not Path(f"/sys/fs/cgroup/memory{cgroup}").exists(), f"cgroup {cgroup} left"
    assert not el.host_mounts_mentioning(cid), el.host_mounts_mentioning(cid)


# ---------------------------------------------------------------- process settings

def test_user(pm):
    res = run_rm(pm, "id -u; id -g; id -un; grep CapEff /proc/self/status; "
                     "touch /etc/x 2>&1; echo touch=$?", "--user", "1000:1000")
    assert res.returncode == 0, describe(res)
    lines = res.stdout.splitlines()
    assert lines[:3] == ["1000", "1000", "app"], describe(res)
    assert el.caps_of(res.stdout) == 0, describe(res)
    assert "touch=1" in res.stdout and "Permission denied" in res.stdout, describe(res)
    res = run_rm(pm, "id -u; id -g", "--user", "nobody")
    assert res.stdout.split() == ["65534", "65534"], describe(res)


def test_cap_drop_cap_add(pm):
    base = run_rm(pm, "cat /proc/self/status")
    assert base.returncode == 0, describe(base)
    res = run_rm(pm, el.CAP_PROBE,
                 "--cap-drop", "CHOWN", "--cap-add", "SYS_ADMIN")
    assert res.returncode == 0, describe(res)
    el.assert_cap_drop_and_add(base.stdout, res.stdout)


def test_env(pm):
    pm.podman.env["PYRUNC_ENG_HOST_ONLY"] = "leak"
    try:
        res = run_rm(pm, 'printf "%s|" "$FOO" "$SPACED" "${EMPTY-unset}"; echo; env',
                     "--env", "FOO=bar", "--env", "SPACED=a b  c", "--env", "EMPTY=")
    finally:
        del pm.podman.env["PYRUNC_ENG_HOST_ONLY"]
    assert res.returncode == 0, describe(res)
    assert res.stdout.splitlines()[0] == "bar|a b  c||", describe(res)
    env = res.stdout.splitlines()[1:]
    assert any(v.startswith("PATH=") for v in env) and "container=podman" in env, env
    assert not any("PYRUNC_ENG_HOST_ONLY" in v for v in env), env


def test_workdir(pm):
    res = run_rm(pm, "pwd", "--workdir", "/tmp")
    assert res.stdout == "/tmp\n", describe(res)
    res = run_rm(pm, "pwd; touch here && echo wrote", "--workdir", "/home/app", "--user", "app")
    assert res.returncode == 0 and res.stdout == "/home/app\nwrote\n", describe(res)


# ---------------------------------------------------------------- filesystem

def test_read_only(pm):
    res = run_rm(pm, "touch /x 2>&1; echo root=$?; touch /tmp/x && echo tmp-ok; "
                     "grep ' / / ' /proc/self/mountinfo", "--read-only")
    assert res.returncode == 0, describe(res)
    assert "Read-only file system" in res.stdout and "root=1" in res.stdout, describe(res)
    assert "tmp-ok" in res.stdout, describe(res)           # podman's tmpfs on /tmp
    root_opts = res.stdout.strip().splitlines()[-1].split()[5].split(",")
    assert "ro" in root_opts, describe(res)


def test_bind_volume(pm, ws):
    rw, ro = ws.mkdir("vol", ws.name("v")), ws.mkdir("vol", ws.name("v"))
    (rw / "host.txt").write_text("from-host\n")
    res = run_rm(pm, "cat /data/host.txt; echo from-container > /data/c.txt; "
                     "touch /ro/x 2>&1; echo ro=$?",
                 "-v", f"{rw}:/data", "-v", f"{ro}:/ro:ro")
    assert res.returncode == 0, describe(res)
    assert "from-host" in res.stdout, describe(res)
    assert (rw / "c.txt").read_text() == "from-container\n"
    assert "ro=1" in res.stdout and "Read-only file system" in res.stdout, describe(res)
    assert not (ro / "x").exists()


# ---------------------------------------------------------------- cgroups

def test_memory(pm):
    res = run_rm(pm, el.PROBE_MEMORY, "--memory", "64m")
    assert res.returncode == 0 and res.stdout.strip() == str(64 << 20), describe(res)
    # the effect: an allocation beyond the limit is OOM-killed (no swap on these machines)
    res = run_rm(pm, "dd if=/dev/zero of=/dev/null bs=96M count=1 2>/dev/null; echo dd=$?",
                 "--memory", "32m", "--memory-swap", "32m")
    assert "dd=137" in res.stdout, describe(res)


def test_pids_limit(pm):
    res = run_rm(pm, f"{el.PROBE_PIDS}; i=0; while [ $i -lt 30 ]; do sleep 5 & "
                     "i=$((i+1)); done; echo forked-all", "--pids-limit", "10")
    assert res.stdout.splitlines()[0] == "10", describe(res)
    assert "forked-all" not in res.stdout and "fork" in res.stderr, describe(res)


def test_cpus(pm):
    res = run_rm(pm, el.PROBE_CPU, "--cpus", "0.5")
    assert res.returncode == 0 and res.stdout.strip() == "50000 100000", describe(res)


def test_cgroup_membership(pm):
    """The container's processes are in the container's cgroup in every hierarchy."""
    name = sleeper(pm)
    cid = pm.container_id(name)
    pid = int(pm.inspect(name, "{{.State.Pid}}"))
    want = f"{pm.podman.cgroup_parent}/libpod-{cid}"
    got = el.cgroup_of(pid)
    wrong = {k or "cgroup2": v for k, v in got.items() if v != want}
    assert not wrong, f"expected {want} everywhere; differs in {wrong}"


def test_update_resources(pm):
    name = sleeper(pm, "--memory", "64m", "--cpus", "0.5")
    res = pm("update", "--memory", "128m", "--cpus", "1.5", name)
    assert res.returncode == 0, describe(res)
    res = pm("exec", name, "sh", "-c", f"{el.PROBE_MEMORY}; {el.PROBE_CPU}")
    assert res.stdout.split("\n")[:2] == [str(128 << 20), "150000 100000"], describe(res)


def test_pause_unpause(pm, ws):
    vol = ws.mkdir("vol", ws.name("v"))
    name = start_detached(pm, el.COUNTER_LOOP, "-v", f"{vol}:/data")
    count = vol / "count"
    el.wait_for(lambda: el.read_counter(count) > 2, 10, 0.05, "the counter to run")
    res = pm("pause", name)
    assert res.returncode == 0, describe(res)
    assert pm.inspect(name, "{{.State.Status}}") == "paused"
    before = el.read_counter(count)
    time.sleep(0.5)
    assert el.read_counter(count) == before, "the counter advanced while paused"
    res = pm("unpause", name)
    assert res.returncode == 0, describe(res)
    assert pm.inspect(name, "{{.State.Status}}") == "running"
    el.wait_for(lambda: el.read_counter(count) > before + 2, 10, 0.05,
                "the counter to advance after unpause")


def test_top(pm):
    name = start_detached(pm, "sleep 1000 & echo ready; while :; do sleep 0.2; done")
    logs_contain(pm, name, "ready")
    res = pm("top", name, "pid", "args")
    assert res.returncode == 0, describe(res)
    assert "sleep 1000" in res.stdout, describe(res)
    pids = [line.split()[0] for line in res.stdout.splitlines()[1:]]
    assert "1" in pids, describe(res)


def test_stats(pm):
    name = sleeper(pm, "--memory", "64m")
    res = pm("stats", "--no-stream", "--format", "{{.PIDs}}|{{.MemUsage}}", name, timeout=30)
    assert res.returncode == 0, describe(res)
    npids, mem = res.stdout.strip().split("|")
    assert int(npids) >= 1, describe(res)
    assert mem.split("/")[1].strip() in ("67.11MB", "64MiB", "67.11 MB"), describe(res)


# ---------------------------------------------------------------- network

def test_network_none(pm):
    res = run_rm(pm, "ls /sys/class/net; readlink /proc/self/ns/net")
    assert res.returncode == 0, describe(res)
    *ifaces, netns = res.stdout.split()
    assert ifaces == ["lo"], describe(res)
    assert netns != os.readlink("/proc/self/ns/net"), "the container shares the host's netns"
