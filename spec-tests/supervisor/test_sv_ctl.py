"""pyrunc-ctl, the docker-like client, against the daemon."""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading

from sv_harness import (CGROUP_ROOT, PYTHON, ROOT, build_rootfs, pid_alive, pty_run,
                        wait_for)


def ps(sv, *flags) -> dict[str, str]:
    """name -> Docker's State (running, paused, exited, created)."""
    lines = sv.ctl("ps", *flags, "--format", "{{.Names}} {{.State}}").stdout.splitlines()
    return dict(ln.split() for ln in lines)


def cgroups_starting(ns: str, prefix: str) -> list[str]:
    found = []
    for hier in os.listdir(CGROUP_ROOT):
        d = os.path.join(CGROUP_ROOT, hier, ns)
        if os.path.isdir(d):
            found += [os.path.join(d, e) for e in os.listdir(d) if e.startswith(prefix)]
    return found


def test_run_foreground(sv, sv_rootfs):
    name = sv.id("ctl")
    res = sv.ctl("run", "--rm", "--name", name, "-e", "A=1", "-w", "/tmp", sv_rootfs,
                 "/bin/sh", "-c", 'echo "$A $(pwd) $(hostname)"; echo oops >&2; exit 3',
                 check=False)
    assert res.returncode == 3
    a, cwd, short_id = res.stdout.split()
    assert (a, cwd) == ("1", "/tmp") and re.fullmatch("[0-9a-f]{12}", short_id)  # docker's
    assert res.stderr == "oops\n"
    assert name not in ps(sv, "-a")
    assert not cgroups_starting(sv.ns, short_id)


def test_run_interactive_stdin_user_and_volume(sv, sv_rootfs):
    host_dir = os.path.join(sv.base, "vol")
    os.makedirs(host_dir)
    with open(os.path.join(host_dir, "hello.txt"), "w") as f:
        f.write("from host\n")
    res = sv.ctl("run", "--rm", "-i", "-u", "65534:65534", "-v", f"{host_dir}:/data:ro",
                 sv_rootfs, "/bin/sh", "-c",
                 "cat; id -u; cat /data/hello.txt; touch /data/x 2>/dev/null || echo ro",
                 input="piped in\n")
    assert res.stdout == "piped in\n65534\nfrom host\nro\n"


def test_run_bundle(sv, sv_rootfs):
    bundle = os.path.join(sv.base, "bundle-" + sv.id())
    os.makedirs(bundle)
    build_rootfs(os.path.join(bundle, "rootfs"))
    from supervisor.spec import default_spec
    spec = default_spec("rootfs", ["/bin/echo", "from-bundle"], "b")
    spec["root"]["path"] = "rootfs"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    assert sv.ctl("run", "--rm", bundle).stdout == "from-bundle\n"
    assert sv.ctl("run", "--rm", bundle, "/bin/echo", "override").stdout == "override\n"


def test_detached_logs_exec_stats_pause_stop_rm(sv, sv_rootfs):
    name = sv.id("ctl")
    out = sv.ctl("run", "-d", "--name", name, sv_rootfs, "/bin/sh", "-c",
                 "trap 'echo bye; exit 0' TERM; i=0; while true; do echo line $i; "
                 "i=$((i+1)); sleep 0.05; done").stdout
    assert re.fullmatch("[0-9a-f]{64}", out.strip())
    assert ps(sv)[name] == "running"
    wait_for(lambda: "line 3" in sv.ctl("logs", name).stdout, what="log lines")
    res = sv.ctl("exec", name, "/bin/sh", "-c", "echo in-exec; exit 4", check=False)
    assert (res.returncode, res.stdout) == (4, "in-exec\n")
    res = sv.ctl("exec", "-i", name, "/bin/cat", input="via exec stdin\n")
    assert res.stdout == "via exec stdin\n"
    stats = sv.ctl("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name).stdout
    assert stats.split()[0] == name and int(stats.split()[1]) >= 1
    sv.ctl("pause", name)
    assert ps(sv)[name] == "paused"
    sv.ctl("resume", name)
    assert ps(sv)[name] == "running"
    info = json.loads(sv.ctl("inspect", name).stdout)[0]
    assert info["Name"] == "/" + name and info["State"]["Status"] == "running"
    res = sv.ctl("rm", name, check=False)
    assert res.returncode == 1 and "You cannot remove a running container" in res.stderr
    sv.ctl("stop", "-t", "10", name)  # the trap exits 0 on SIGTERM, well within the grace
    assert ps(sv, "-a")[name] == "exited"
    assert "Exited (0)" in sv.ctl("ps", "-a").stdout
    assert name not in ps(sv)
    assert sv.ctl("logs", name).stdout.rstrip().endswith("bye")
    log = info["LogPath"]
    sv.ctl("rm", name)
    assert name not in ps(sv, "-a")
    assert not os.path.exists(log)


def test_stop_escalates_to_sigkill(sv, sv_rootfs):
    name = sv.id("ctl")
    sv.ctl("run", "-d", "--name", name, sv_rootfs, "/bin/sh", "-c",
           "trap '' TERM; sleep 300 & wait")
    pid = json.loads(sv.ctl("inspect", name).stdout)[0]["State"]["Pid"]
    sv.ctl("stop", "-t", "1", name)
    assert "Exited (137)" in sv.ctl("ps", "-a").stdout
    assert not pid_alive(pid)
    sv.ctl("rm", name)


def test_kill_logs_follow_and_force_rm(sv, sv_rootfs):
    name = sv.id("ctl")
    sv.ctl("run", "-d", "--name", name, sv_rootfs, "/bin/sh", "-c",
           "trap 'echo got-usr1; exit 5' USR1; echo started; while true; do sleep 0.05; done")
    follow = subprocess.Popen([PYTHON, "-m", "supervisor.ctl", "-a", sv.sock, "-n", sv.ns,
                               "logs", "-f", name], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    wait_for(lambda: "started" in sv.ctl("logs", name).stdout, what="started")
    sv.ctl("kill", "-s", "USR1", name)
    out, _ = follow.communicate(timeout=30)
    assert out == "started\ngot-usr1\n"
    assert "Exited (5)" in sv.ctl("ps", "-a").stdout
    sv.ctl("rm", name)

    name2 = sv.id("ctl")
    sv.ctl("run", "-d", "--name", name2, sv_rootfs, "/bin/sleep", "300")
    sv.ctl("rm", "-f", name2)
    assert name2 not in ps(sv, "-a")


def test_tty(sv, sv_rootfs):
    argv = ["env", f"PYTHONPATH={ROOT}", f"PYRUNC_SUPERVISOR_ADDRESS={sv.sock}",
            f"PYRUNC_NAMESPACE={sv.ns}", PYTHON, "-m", "supervisor.ctl", "run", "-t", "--rm",
            sv_rootfs, "/bin/sh", "-c",
            "tty; for i in $(seq 100); do s=$(stty -F /dev/tty size 2>/dev/null); "
            "case $s in [1-9]*) break;; esac; sleep 0.05; done; echo size=$s; exit 6"]
    code, out = pty_run(argv, cols=88, rows=11)
    assert code == 6, out
    assert "/dev/pts/" in out and "size=11 88" in out, out


def test_events(sv, sv_rootfs):
    """The container's events in order; the subscription is known live once a probe's event
    arrives (no fixed sleeps)."""
    proc = subprocess.Popen([PYTHON, "-m", "supervisor.ctl", "-a", sv.sock, "-n", sv.ns,
                             "events", f"namespace=={sv.ns}"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()

    def seen(text):
        return any(text in ln for ln in list(lines))
    try:
        probes: list[str] = []

        def probe_seen():  # a probe per try: any probe seen means the stream is live
            probes.append(sv.ctl("create", sv_rootfs, "/bin/true").stdout.strip())
            sv.ctl("rm", probes[-1])
            return _quietly(wait_for, lambda: any(seen(p) for p in probes), 2)
        wait_for(probe_seen, timeout=60, step=0, what="the subscription to deliver a probe")
        cid = sv.ctl("run", "-d", sv_rootfs, "/bin/true").stdout.strip()
        sv.ctl("wait", cid)
        sv.ctl("rm", cid)
        wait_for(lambda: any("/containers/delete" in ln and cid in ln for ln in list(lines)),
                 timeout=60, what="the delete event")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
        reader.join(10)
    topics = [ln.split()[2] for ln in lines if cid in ln]
    assert topics == ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit",
                      "/tasks/delete", "/containers/delete"], lines


def _quietly(fn, *args):
    try:
        return fn(*args)
    except AssertionError:
        return False


def test_clear_errors(sv, sv_rootfs):
    """Docker's messages and exit codes: 1 when the daemon refuses, 125 for run's own errors."""
    res = sv.ctl("rm", "no-such-container", check=False)
    assert res.returncode == 1
    assert res.stderr == "Error response from daemon: No such container: no-such-container\n"
    res = sv.ctl("logs", "no-such-container", check=False)
    assert res.returncode == 1 and "No such container" in res.stderr
    res = sv.ctl("run", "/nonexistent/dir", "/bin/true", check=False)
    assert res.returncode == 125 and "neither a rootfs directory nor a bundle" in res.stderr
    res = sv.ctl("run", "-v", "./relative:/x", sv_rootfs, "/bin/true", check=False)
    assert res.returncode == 125 and "volume" in res.stderr
    res = sv.ctl("run", "-u", "nobody", sv_rootfs, "/bin/true", check=False)
    assert res.returncode == 125 and "user" in res.stderr
    res = sv.ctl("kill", "-s", "NOSUCHSIG", "x", check=False)
    assert res.returncode == 1 and "Invalid signal: NOSUCHSIG" in res.stderr
    res = sv.ctl("ps", env={"PYRUNC_SUPERVISOR_ADDRESS": os.path.join(sv.base, "none.sock")},
                 check=False)
    assert res.returncode == 1 and "Is pyrunc-supervisor running?" in res.stderr
    assert res.stderr.count("\n") == 1
    res = sv.ctl("run", sv_rootfs, "/bin/true",
                 env={"PYRUNC_SUPERVISOR_ADDRESS": os.path.join(sv.base, "none.sock")},
                 check=False)
    assert res.returncode == 125 and "Is pyrunc-supervisor running?" in res.stderr
