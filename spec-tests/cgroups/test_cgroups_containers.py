"""linux.resources through ``pyrunc`` itself: real containers, behaviour seen from inside.

Runs on the host (cgroup v1, hybrid) and, through ``make test-vm``, on a pure cgroup v2 kernel:
the same assertions hold on both drivers.  The fixtures come from spec-tests/harness.py (the VM
run does not load the conftest above this directory: this directory's conftest.py brings them).
"""

import json
import os
import subprocess
import time

import pytest

from harness import PYRUNC, base_config


# A memory hog: the shell keeps the whole substituted output (N MB) in memory.
HOG = "x=$(head -c %d000000 /dev/zero | tr '\\0' a); echo ${#x}"


def start(runtime, script, resources=None, caps=None, extra_linux=None):
    cfg = base_config(["sh", "-c", script])
    if resources is not None:
        cfg["linux"]["resources"] = resources
    if caps is not None:
        cfg["process"]["capabilities"] = {k: caps for k in ("bounding", "effective",
                                                             "permitted")}
    cfg["linux"].update(extra_linux or {})
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    return cid, bundle


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_memory_limit_oom_kill_and_event(runtime, tmp_path):
    cid, _ = start(runtime, "sleep 3600", resources={"memory": {"limit": 32 << 20}})
    events_out = open(tmp_path / "events", "w+")
    events = subprocess.Popen([PYRUNC, "--root", runtime.root, "events", "--interval", "1s",
                               cid], stdout=events_out, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        # a hog well over the limit: tail keeps its whole (newline-free) input in memory
        res = runtime("exec", cid, "sh", "-c", HOG % 200, timeout=120)
        assert res.rc != 0, res             # the hog was OOM-killed
        assert runtime.state(cid)["status"] == "running"    # the init was not

        def saw_oom():
            # whole lines only: a line being written can be seen in part (a write to a file
            # that spans two pages grows it a page at a time)
            events_out.seek(0)
            return any(json.loads(l).get("type") == "oom" for l in events_out
                       if l.endswith("\n"))
        wait_for(saw_oom, what="an oom event")
    finally:
        events.kill()
        events.wait()
        events_out.close()


# 60 forks: far over the limits below; the shell gives up at the first failed fork
FORK_BOMB = "for i in $(seq 60); do sleep 3600 & done; wait"


def count_processes(runtime, cid):
    return len(json.loads(runtime("ps", "--format", "json", cid, check=True).out))


def bomb(runtime, cid):
    res = runtime("exec", "-d", cid, "sh", "-c", FORK_BOMB)
    assert res.rc in (0, 1), res       # the exec itself may meet the limit
    time.sleep(1.0)
    return count_processes(runtime, cid)


def test_pids_limit_stops_fork_bomb(runtime):
    cid, _ = start(runtime, "sleep 3600", resources={"pids": {"limit": 16}})
    assert 15 <= bomb(runtime, cid) <= 16


def test_freeze_stops_cpu_and_resume_restarts_it(runtime):
    cid, _ = start(runtime, "while :; do :; done")

    def cpu_total():
        out = runtime("events", "--stats", cid, check=True).out
        return json.loads(out)["data"]["cpu"]["usage"]["total"]

    time.sleep(0.5)
    runtime("pause", cid, check=True)
    assert runtime.state(cid)["status"] == "paused"
    frozen = cpu_total()
    time.sleep(1.0)
    assert cpu_total() == frozen        # nothing runs while frozen
    res = runtime("exec", cid, "true")
    assert res.rc == 255 and "paused" in res.err     # (runc's code for a failed exec)
    runtime("resume", cid, check=True)
    assert runtime.state(cid)["status"] == "running"
    wait_for(lambda: cpu_total() > frozen, what="the busy loop to run again")


def test_denied_device_cannot_be_opened(runtime):
    """Container root may mknod anything ('m' is allowed) but opens only allowed devices."""
    caps = ["CAP_MKNOD", "CAP_DAC_OVERRIDE", "CAP_CHOWN"]
    cid, _ = start(runtime, "sleep 3600", caps=caps,
                   resources={"devices": [{"allow": False, "access": "rwm"}]})
    res = runtime("exec", cid, "sh", "-c",
                  "mknod /tmp/kmsg c 1 11 && echo made; "
                  "(echo pyrunc-test > /tmp/kmsg) 2>/dev/null && echo opened-kmsg; "
                  "echo hi > /dev/null && echo opened-null")
    assert res.out.split() == ["made", "opened-null"], res


def test_allowed_device_rule(runtime):
    caps = ["CAP_MKNOD", "CAP_DAC_OVERRIDE"]
    cid, _ = start(runtime, "sleep 3600", caps=caps,
                   resources={"devices": [{"allow": False, "access": "rwm"},
                                          {"allow": True, "type": "c", "major": 1,
                                           "minor": 11, "access": "rw"}]})
    # /dev/kmsg opened for writing (reading it would also need CAP_SYSLOG)
    res = runtime("exec", cid, "sh", "-c", "mknod /tmp/kmsg c 1 11 && "
                                           "echo pyrunc-test > /tmp/kmsg && echo opened")
    assert res.out.strip() == "opened", res


def test_update_changes_a_live_limit(runtime):
    cid, _ = start(runtime, "sleep 3600", resources={"pids": {"limit": 8}})
    assert bomb(runtime, cid) <= 8
    runtime("update", "--pids-limit", "20", cid, check=True)
    assert 16 <= bomb(runtime, cid) <= 20
    saved = json.loads(open(os.path.join(runtime.root, cid, "state.json")).read())
    assert saved["config"]["linux"]["resources"]["pids"]["limit"] == 20


def test_update_memory_from_resources_file(runtime, tmp_path):
    cid, _ = start(runtime, "sleep 3600", resources={"memory": {"limit": 256 << 20}})
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"memory": {"limit": 24 << 20}}))
    runtime("update", "-r", str(path), cid, check=True)
    res = runtime("exec", cid, "sh", "-c", HOG % 100, timeout=120)
    assert res.rc != 0          # now over the lowered limit: killed


def test_ps_lists_exactly_the_container(runtime):
    cid, _ = start(runtime, "sleep 3601 & sleep 3602 & wait")

    def listed():
        pids = json.loads(runtime("ps", "--format", "json", cid, check=True).out)
        return pids if len(pids) == 3 else None
    pids = wait_for(listed, what="three processes")
    init_ns = os.readlink(f"/proc/{runtime.state(cid)['pid']}/ns/pid")
    in_ns = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == init_ns:
                    in_ns.append(int(name))
            except OSError:
                pass
    assert sorted(pids) == sorted(in_ns)
    table = runtime("ps", cid, check=True).out.splitlines()
    assert "PID" in table[0].split() and len(table) == 4


def test_kill_all(runtime):
    cid, _ = start(runtime, "sleep 3601 & sleep 3602 & wait")
    wait_for(lambda: len(json.loads(runtime("ps", "-f", "json", cid).out)) == 3,
             what="three processes")
    runtime("kill", "--all", cid, "KILL", check=True)
    wait_for(lambda: runtime.state(cid)["status"] == "stopped", what="stopped")


def test_cgroups_path_is_honoured(runtime):
    name = f"{runtime.prefix}-custom"
    cid, _ = start(runtime, "sleep 3600", extra_linux={"cgroupsPath": f"/{name}"})
    with open(f"/proc/{runtime.state(cid)['pid']}/cgroup") as f:
        lines = f.read().splitlines()
    # every hierarchy, named ones (name=systemd) included, as runc does
    assert all(line.split(":", 2)[2].startswith(f"/{name}") for line in lines), lines


@pytest.mark.parametrize("userns", [False, True], ids=["born-in-it", "moved-in-userns"])
def test_init_is_in_every_cgroup_of_the_container(runtime, userns):
    """Without a user namespace the init is forked into the cgroup v2 directory (clone3) and
    joins the v1 hierarchies itself; with one, the parent moves it.  Either way every hierarchy
    shows the container's cgroup before the program runs (the program reads its own)."""
    name = f"{runtime.prefix}-placed-{int(userns)}"
    extra = {"cgroupsPath": f"/{name}"}
    if userns:
        cfg = base_config()
        extra["namespaces"] = cfg["linux"]["namespaces"] + [{"type": "user"}]
        extra["uidMappings"] = extra["gidMappings"] = [
            {"containerID": 0, "hostID": 100000, "size": 65536}]
    cid, _ = start(runtime, "cat /proc/self/cgroup > /tmp/cg; sleep 3600", extra_linux=extra)
    pid = runtime.state(cid)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert all(line.split(":", 2)[2] == f"/{name}" for line in lines), lines
    inside = wait_for(lambda: runtime("exec", cid, "cat", "/tmp/cg").out, what="/tmp/cg")
    assert len(inside.splitlines()) == len(lines), inside


@pytest.mark.parametrize("resources,needle", [
    ({"memory": {"limit": "lots"}}, "linux.resources.memory.limit"),
    ({"cpu": {"cpus": "0-999"}}, "linux.resources.cpu"),
    ({"pids": {"limit": "x"}}, "linux.resources.pids.limit"),
])
def test_bad_resources_leave_nothing(runtime, resources, needle):
    cfg = base_config()
    cfg["linux"]["resources"] = resources
    res = runtime.run(cfg)
    assert res.rc == 1 and needle in res.err, res
