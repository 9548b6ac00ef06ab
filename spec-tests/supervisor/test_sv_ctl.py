"""pyrunc-ctl, the docker-like client, against the daemon."""
from __future__ import annotations

import json
import os
import subprocess
import time

from sv_harness import (PYTHON, ROOT, build_rootfs, cgroup_dirs, pid_alive, pty_run,
                        wait_for)


def ps(sv, *flags) -> dict[str, str]:
    lines = sv.ctl("ps", *flags).stdout.splitlines()[1:]
    return {ln.split()[0]: ln.split(None, 2)[1] for ln in lines}


def test_run_foreground(sv, sv_rootfs):
    name = sv.id("ctl")
    res = sv.ctl("run", "--rm", "--name", name, "-e", "A=1", "-w", "/tmp", sv_rootfs,
                 "/bin/sh", "-c", 'echo "$A $(pwd) $(hostname)"; echo oops >&2; exit 3',
                 check=False)
    assert res.returncode == 3
    assert res.stdout == f"1 /tmp {name}\n"
    assert res.stderr == "oops\n"
    assert name not in ps(sv, "-a")
    assert not cgroup_dirs(sv.ns, name)


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
    assert out.strip() == name
    assert ps(sv)[name] == "running"
    wait_for(lambda: "line 3" in sv.ctl("logs", name).stdout, what="log lines")
    res = sv.ctl("exec", name, "/bin/sh", "-c", "echo in-exec; exit 4", check=False)
    assert (res.returncode, res.stdout) == (4, "in-exec\n")
    res = sv.ctl("exec", "-i", name, "/bin/cat", input="via exec stdin\n")
    assert res.stdout == "via exec stdin\n"
    stats = sv.ctl("stats", name).stdout.splitlines()
    assert stats[0].split()[0] == "CONTAINER" and stats[1].split()[0] == name
    sv.ctl("pause", name)
    assert ps(sv)[name] == "paused"
    sv.ctl("resume", name)
    assert ps(sv)[name] == "running"
    info = json.loads(sv.ctl("inspect", name).stdout)[0]
    assert info["id"] == name and info["task"]["status"] == "running"
    res = sv.ctl("rm", name, check=False)
    assert res.returncode == 125 and "stop it first" in res.stderr
    sv.ctl("stop", "-t", "10", name)  # the trap exits 0 on SIGTERM, well within the grace
    assert ps(sv, "-a")[name] == "exited"
    assert "exited (0)" in sv.ctl("ps", "-a").stdout
    assert name not in ps(sv)
    assert sv.ctl("logs", name).stdout.rstrip().endswith("bye")
    log = info["labels"]["io.pyrunc.ctl/log"]
    sv.ctl("rm", name)
    assert name not in ps(sv, "-a")
    assert not os.path.exists(log)


def test_stop_escalates_to_sigkill(sv, sv_rootfs):
    name = sv.id("ctl")
    sv.ctl("run", "-d", "--name", name, sv_rootfs, "/bin/sh", "-c",
           "trap '' TERM; sleep 300 & wait")
    pid = json.loads(sv.ctl("inspect", name).stdout)[0]["task"]["pid"]
    sv.ctl("stop", "-t", "0.5", name)
    assert "exited (137)" in sv.ctl("ps", "-a").stdout
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
    assert "exited (5)" in sv.ctl("ps", "-a").stdout
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
    proc = subprocess.Popen([PYTHON, "-m", "supervisor.ctl", "-a", sv.sock, "-n", sv.ns,
                             "events", f"namespace=={sv.ns}"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.8)
        name = sv.id("ctl")
        sv.ctl("run", "--rm", "--name", name, sv_rootfs, "/bin/true")
        time.sleep(0.3)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    topics = [ln.split()[2] for ln in out.splitlines() if name in ln]
    assert topics == ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit",
                      "/tasks/delete", "/containers/delete"], out


def test_clear_errors(sv, sv_rootfs):
    res = sv.ctl("rm", "no-such-container", check=False)
    assert res.returncode == 125
    assert res.stderr == "pyrunc-ctl: no such container: no-such-container\n"
    res = sv.ctl("logs", "no-such-container", check=False)
    assert res.returncode == 125 and "no such container" in res.stderr
    res = sv.ctl("run", "/nonexistent/dir", "/bin/true", check=False)
    assert res.returncode == 125 and "neither a rootfs directory nor a bundle" in res.stderr
    res = sv.ctl("run", "-v", "relative:/x", sv_rootfs, "/bin/true", check=False)
    assert res.returncode == 125 and "volume" in res.stderr
    res = sv.ctl("run", "-u", "nobody", sv_rootfs, "/bin/true", check=False)
    assert res.returncode == 125 and "user" in res.stderr
    res = sv.ctl("kill", "-s", "NOSUCHSIG", "x", check=False)
    assert res.returncode == 125
    res = sv.ctl("ps", env={"PYRUNC_SUPERVISOR_ADDRESS": os.path.join(sv.base, "none.sock")},
                 check=False)
    assert res.returncode == 125 and "is pyrunc-supervisor running?" in res.stderr
    assert res.stderr.count("\n") == 1
