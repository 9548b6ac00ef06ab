"""The cgroup v1 driver's own behaviour (hybrid and legacy hosts — CI's machines are hybrid).

What is shared with the v2 driver (OOM, fork bomb, freezing, devices, kill, bad input...) is in
test_cgroups_behaviour.py; here: the v1 files and their ordering rules, a directory in every mounted
hierarchy, the unified-hierarchy directory on hybrid hosts, absolute cgroupsPath, and the
freezer-based kill used when there is no cgroup.kill.
"""

import os
import signal

import pytest

from cgtest import MODE, SESSION, assert_nothing_left, cgroup_file, new_counter, wait_for
from pyrunc.cgroups import load_manager, paths
from pyrunc.errors import CgroupError

pytestmark = pytest.mark.skipif(MODE == "unified",
                                reason="cgroup v1 driver: needs a hybrid or legacy host")

MiB = 1 << 20


def test_a_directory_in_every_mounted_hierarchy(cgroup, spawn):
    mgr = cgroup()
    mounted = paths.v1_hierarchies()
    assert set(mgr.dirs) == set(mounted)
    for ctrl, d in mgr.dirs.items():
        assert d.startswith(mounted[ctrl][0] + "/") and os.path.isdir(d)
    child = spawn("busybox sleep 60", mgr)
    own = paths.own_cgroups(str(child.pid))
    for ctrl, d in mgr.dirs.items():
        point, root = mounted[ctrl]
        assert point + own[ctrl] == d, ctrl
    if MODE == "hybrid":
        # the unified hierarchy too: /proc/<pid>/cgroup "0::/..."
        assert mgr.unified_dir and os.path.isdir(mgr.unified_dir)
        assert mgr.unified_dir == paths.unified_mount()[0] + own[""]


def test_resources_land_in_the_v1_files(cgroup):
    mgr = cgroup({
        "memory": {"limit": 64 * MiB, "swap": 96 * MiB, "reservation": 32 * MiB,
                   "swappiness": 10},
        "cpu": {"shares": 512, "quota": 20000, "period": 50000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42},
    })
    assert cgroup_file(mgr, "memory", "memory.limit_in_bytes") == str(64 * MiB)
    assert cgroup_file(mgr, "memory", "memory.soft_limit_in_bytes") == str(32 * MiB)
    assert cgroup_file(mgr, "memory", "memory.swappiness") == "10"
    if os.path.exists(os.path.join(mgr.dirs["memory"], "memory.memsw.limit_in_bytes")):
        assert cgroup_file(mgr, "memory", "memory.memsw.limit_in_bytes") == str(96 * MiB)
    assert cgroup_file(mgr, "cpu", "cpu.shares") == "512"
    assert cgroup_file(mgr, "cpu", "cpu.cfs_quota_us") == "20000"
    assert cgroup_file(mgr, "cpu", "cpu.cfs_period_us") == "50000"
    assert cgroup_file(mgr, "cpuset", "cpuset.cpus") == "0"
    assert cgroup_file(mgr, "pids", "pids.max") == "42"


def test_block_io_throttles_land_in_the_v1_files(cgroup):
    """Throttles exist on every v1 blkio controller: each limit is read back exactly."""
    dev = block_device()
    mgr = cgroup({"blockIO": {
        "throttleReadBpsDevice": [{**dev, "rate": 1 * MiB}],
        "throttleWriteBpsDevice": [{**dev, "rate": 2 * MiB}],
        "throttleReadIOPSDevice": [{**dev, "rate": 300}],
        "throttleWriteIOPSDevice": [{**dev, "rate": 400}],
    }})
    at = f"{dev['major']}:{dev['minor']}"
    assert cgroup_file(mgr, "blkio", "blkio.throttle.read_bps_device") == f"{at} {1 * MiB}"
    assert cgroup_file(mgr, "blkio", "blkio.throttle.write_bps_device") == f"{at} {2 * MiB}"
    assert cgroup_file(mgr, "blkio", "blkio.throttle.read_iops_device") == f"{at} 300"
    assert cgroup_file(mgr, "blkio", "blkio.throttle.write_iops_device") == f"{at} 400"


def test_block_io_weight_lands_or_is_refused_by_name(cgroup):
    """A weight needs CFQ's blkio.weight or BFQ's blkio.bfq.weight; kernels whose block devices
    all use another scheduler (mq-deadline, kyber, none) have neither, and the refusal must then
    name the field and the missing file (runc 1.1.5 refuses the same config there)."""
    probe = cgroup()
    weight_file = next((name for name in ("blkio.weight", "blkio.bfq.weight")
                        if os.path.exists(os.path.join(probe.dirs["blkio"], name))), None)
    if weight_file:
        mgr = cgroup({"blockIO": {"weight": 300}})
        assert cgroup_file(mgr, "blkio", weight_file).split()[-1] == "300"
        return
    mgr = cgroup(create=False)
    with pytest.raises(CgroupError, match=r"^linux\.resources\.blockIO\.weight: write '300' to "
                       r"\S+/blkio\.weight: not supported by this kernel"):
        mgr.create({"blockIO": {"weight": 300}})
    # the fixture destroys the half-made cgroup and checks that no directory is left


def block_device() -> dict:
    """A whole block device of this machine (throttles need a real one)."""
    names = sorted(os.listdir("/sys/block"), key=lambda n: n.startswith(("loop", "ram", "zram")))
    assert names, "no block device in /sys/block"
    with open(f"/sys/block/{names[0]}/dev") as f:
        major, minor = f.read().strip().split(":")
    return {"major": int(major), "minor": int(minor)}


def test_new_cpuset_directories_get_their_parents_sets(cgroup, spawn):
    mgr = cgroup()            # no cpus/mems given: a v1 cpuset starts empty, tasks could not join
    parent = os.path.dirname(mgr.dirs["cpuset"])
    for name in ("cpuset.cpus", "cpuset.mems"):
        assert cgroup_file(mgr, "cpuset", name) == open(os.path.join(parent, name)).read().strip()
    spawn("busybox sleep 60", mgr)


def test_memory_and_swap_are_written_in_the_order_the_kernel_needs(cgroup):
    mgr = cgroup({"memory": {"limit": 32 * MiB, "swap": 64 * MiB}})
    if not os.path.exists(os.path.join(mgr.dirs["memory"], "memory.memsw.limit_in_bytes")):
        pytest.skip("swap accounting is off in this kernel (no memory.memsw.*)")
    mgr.update({"memory": {"limit": 128 * MiB, "swap": 256 * MiB}})     # above the old memsw
    assert cgroup_file(mgr, "memory", "memory.limit_in_bytes") == str(128 * MiB)
    mgr.update({"memory": {"limit": 16 * MiB, "swap": 24 * MiB}})       # below the old limit
    assert cgroup_file(mgr, "memory", "memory.memsw.limit_in_bytes") == str(24 * MiB)
    mgr.update({"memory": {"limit": -1}})                                # unlimited: memsw too
    assert int(cgroup_file(mgr, "memory", "memory.limit_in_bytes")) > 2**60
    assert int(cgroup_file(mgr, "memory", "memory.memsw.limit_in_bytes")) > 2**60


def test_devices_list(cgroup):
    mgr = cgroup({"devices": [{"allow": False, "access": "rwm"},
                              {"allow": True, "type": "b", "major": 8, "access": "r"}]},
                 devices=[{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}])
    lines = cgroup_file(mgr, "devices", "devices.list").splitlines()
    assert lines[:2] == ["b 8:* r", "c 10:229 rwm"]
    assert {"c 1:3 rwm", "c 136:* rwm", "c 5:2 rwm", "c *:* m", "b *:* m"} <= set(lines)
    assert not any(line.startswith("a ") for line in lines)


def test_absolute_path_is_under_each_mount_root(cgroup, spawn):
    name = f"/{SESSION}-{new_counter()}-abs/ctr"
    mgr = cgroup(path=name)
    for ctrl, d in mgr.dirs.items():
        assert d == paths.v1_hierarchies()[ctrl][0] + name
    child = spawn("busybox sleep 60", mgr)
    assert mgr.pids() == [child.pid]
    mgr.destroy()
    assert_nothing_left(mgr)


def test_kill_all_without_cgroup_kill_freezes_then_kills(cgroup, spawn):
    """A legacy host has no unified hierarchy, hence no cgroup.kill: SIGKILL goes to every task
    while the cgroup is frozen, so a fork bomb cannot outrun it."""
    mgr = cgroup({"pids": {"limit": 24}})
    state = mgr.to_state()
    state.update(unified_dir=None, unified_mount=None)
    legacy = load_manager(state)
    spawn('b() { [ ${#1} -lt 8 ] && { b x$1 | b x$1 & }; busybox sleep 30; }; b', legacy)
    wait_for(lambda: len(legacy.pids()) > 5, what="the bomb to grow")
    legacy.kill_all(signal.SIGKILL)
    wait_for(lambda: not legacy.pids(), what="everything to die")
    assert not legacy.frozen()


def test_disable_oom_killer(cgroup):
    mgr = cgroup({"memory": {"limit": 32 * MiB, "disableOOMKiller": True}})
    assert "oom_kill_disable 1" in cgroup_file(mgr, "memory", "memory.oom_control")


@pytest.mark.skipif(MODE != "hybrid", reason="hybrid hosts only")
def test_unified_keys_need_the_controller_on_the_v2_hierarchy(cgroup):
    mgr = cgroup(create=False)
    available = open(os.path.join(paths.unified_mount()[0], "cgroup.controllers")).read().split()
    assert "memory" not in available          # this host's memory controller is on v1
    with pytest.raises(CgroupError, match=r"^linux.resources.unified.memory.high: the memory "
                                          "controller is not available in the cgroup v2 "
                                          "hierarchy of this hybrid host"):
        mgr.create({"unified": {"memory.high": "1000000"}})
    assert_nothing_left(mgr)


def test_controllers_that_are_not_mounted_are_an_error(cgroup):
    missing = [c for c in ("net_cls", "net_prio") if c not in paths.v1_hierarchies()]
    if not missing:
        pytest.skip("net_cls and net_prio are both mounted here")
    mgr = cgroup(create=False)
    with pytest.raises(CgroupError, match=r"^linux.resources.network.(classID|priorities): the "
                                          r"net_(cls|prio) cgroup controller is not mounted"):
        mgr.create({"network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 1}]}})
    assert_nothing_left(mgr)


def test_systemd_paths_are_refused():
    from pyrunc.cgroups import new_manager

    with pytest.raises(CgroupError, match="systemd cgroup driver is not supported"):
        new_manager("system.slice:pyrunc:abc", "abc")
