"""Restart policies, kept by the supervisor (supervisor/core/restart.py): a container comes back
after it exits and after the supervisor restarts; a user's stop ends that. Driven through
pyrunc-ctl, observed through inspect/ps/logs and the host's /proc."""
from __future__ import annotations

import json
import os
import signal

from sv_harness import pid_alive, wait_for


def state(sv, ref) -> dict:
    info = json.loads(sv.ctl("inspect", ref).stdout)[0]
    return {"status": info["State"]["Status"], "pid": info["State"]["Pid"],
            "count": info["RestartCount"], "exit": info["State"]["ExitCode"]}


def test_on_failure_restarts_up_to_its_limit(sv_own, sv_rootfs):
    sv = sv_own
    name = sv.id("rs")
    sv.ctl("run", "-d", "--name", name, "--restart", "on-failure:2", sv_rootfs, "sh", "-c",
           "echo started; exit 3")
    wait_for(lambda: state(sv, name) == {"status": "exited", "pid": 0, "count": 2, "exit": 3},
             timeout=120, what="two restarts, then a stop")
    assert sv.ctl("logs", name).stdout == "started\n" * 3
    info = json.loads(sv.ctl("inspect", name).stdout)[0]
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert "Exited (3)" in sv.ctl("ps", "-a", "-f", f"name={name}").stdout
    sv.ctl("rm", name)


def test_on_failure_leaves_a_clean_exit_alone_and_always_restarts_it(sv_own, sv_rootfs):
    sv = sv_own
    ok, always = sv.id("rs"), sv.id("rs")
    sv.ctl("run", "-d", "--name", ok, "--restart", "on-failure", sv_rootfs, "true")
    sv.ctl("run", "-d", "--name", always, "--restart", "always", sv_rootfs, "sh", "-c",
           "echo up")
    wait_for(lambda: state(sv, always)["count"] >= 2, timeout=120, what="always restarts")
    # decided at the exit: a clean exit under on-failure is not "restarting"
    assert state(sv, ok) == {"status": "exited", "pid": 0, "count": 0, "exit": 0}
    sv.ctl("stop", always)  # the user's stop ends the restarts
    wait_for(lambda: state(sv, always)["status"] == "exited", timeout=60, what="stopped")
    assert "Exited (0)" in sv.ctl("ps", "-a", "-f", f"name={always}").stdout
    sv.ctl("rm", ok, always)


def test_stop_ends_restarts_and_start_resumes_them(sv_own, sv_rootfs):
    sv = sv_own
    name = sv.id("rs")
    sv.ctl("run", "-d", "--name", name, "--restart", "unless-stopped", sv_rootfs, "sleep", "300")
    first = state(sv, name)["pid"]
    os.kill(first, signal.SIGKILL)  # a crash: it comes back
    wait_for(lambda: state(sv, name)["status"] == "running" and state(sv, name)["pid"] != first,
             timeout=60, what="the restart after a crash")
    assert state(sv, name)["count"] == 1
    sv.ctl("stop", "-t", "1", name)
    assert state(sv, name)["status"] == "exited"
    assert "Exited (137)" in sv.ctl("ps", "-a", "-f", f"name={name}").stdout
    sv.ctl("start", name)
    second = state(sv, name)["pid"]
    os.kill(second, signal.SIGKILL)
    wait_for(lambda: state(sv, name)["status"] == "running" and state(sv, name)["pid"] != second,
             timeout=60, what="restarts again after start")
    sv.ctl("rm", "-f", name)


def test_policies_after_a_supervisor_restart(sv_own, sv_rootfs):
    """Stopped by the user: ``always`` comes back when the supervisor starts (as with dockerd),
    ``unless-stopped`` does not; a container that died while the supervisor was down comes
    back."""
    sv = sv_own
    always, unless, died = sv.id("rs"), sv.id("rs"), sv.id("rs")
    for name, policy in ((always, "always"), (unless, "unless-stopped"), (died, "always")):
        sv.ctl("run", "-d", "--name", name, "--restart", policy, sv_rootfs, "sleep", "300")
    sv.ctl("stop", "-t", "1", always, unless)
    victim = state(sv, died)["pid"]
    sv.stop()
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not pid_alive(victim), timeout=60, what="the container's death")
    sv.start()
    wait_for(lambda: state(sv, always)["status"] == "running", timeout=60, what="always")
    wait_for(lambda: state(sv, died)["status"] == "running", timeout=60, what="the dead one")
    assert state(sv, died)["pid"] != victim
    assert state(sv, unless)["status"] == "exited"  # decided at start, with the others
    res = sv.ctl("run", "--rm", "--restart", "always", sv_rootfs, "true", check=False)
    assert res.returncode == 125 and "Conflicting options: --restart and --rm" in res.stderr
    sv.ctl("rm", "-f", always, unless, died)
