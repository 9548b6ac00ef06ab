"""The cgroup v2 driver's own behaviour, on a pure cgroup v2 kernel.

CI's machines are hybrid, so ``make test-vm`` boots Debian's kernel in a VM (TCG) with cgroup2
at /sys/fs/cgroup and runs this module there together with test_cgroups_behaviour.py (OOM, fork bomb,
freezing, the eBPF device filter, kill, bad input...).  Here: the conversions from the spec's
v1-flavoured values to v2 files, controllers enabled in the parents, live updates that merge
with what is there, the device program's replacement, cgroup.kill, and what v2 cannot do.
Keep it small: Python runs ~50x slower in the VM.
"""

import os
import signal

import pytest

from cgtest import MODE, assert_nothing_left, cgroup_file, wait_for
from pyrunc.cgroups import devices
from pyrunc.errors import CgroupError

pytestmark = pytest.mark.skipif(
    MODE != "unified",
    reason="cgroup v2 driver: needs a pure cgroup v2 host; `make test-vm` runs it in a VM")

MiB = 1 << 20


def has(mgr, name):
    return os.path.exists(os.path.join(mgr.path, name))


def hugepage_sizes(mgr) -> list[str]:
    """The huge page sizes this kernel offers (``hugetlb.<size>.max`` files), e.g. 2MB."""
    return sorted(n.split(".")[1] for n in os.listdir(mgr.path)
                  if n.startswith("hugetlb.") and n.endswith(".max") and n.count(".") == 2)


def test_resources_land_in_the_v2_files(cgroup):
    sizes = hugepage_sizes(cgroup())
    assert sizes, "the hugetlb controller offers no page size"
    huge = "2MB" if "2MB" in sizes else sizes[0]
    mgr = cgroup({
        "memory": {"limit": 64 * MiB, "reservation": 16 * MiB, "swap": 96 * MiB},
        "cpu": {"shares": 1024, "quota": 20000, "period": 50000, "burst": 1000,
                "cpus": "0", "mems": "0"},
        "pids": {"limit": 42},
        "hugepageLimits": [{"pageSize": huge, "limit": 4 * MiB}],
        "unified": {"memory.high": str(48 * MiB)},
    })
    # every available controller is enabled for the container in each ancestor
    parent = os.path.dirname(mgr.path)
    with open("/sys/fs/cgroup/cgroup.controllers") as f:
        available = set(f.read().split()) & {"cpu", "memory", "pids", "io", "cpuset", "hugetlb"}
    assert available <= set(open(os.path.join(parent, "cgroup.subtree_control")).read().split())
    assert cgroup_file(mgr, "", "memory.max") == str(64 * MiB)
    assert cgroup_file(mgr, "", "memory.low") == str(16 * MiB)
    assert cgroup_file(mgr, "", "memory.high") == str(48 * MiB)
    if has(mgr, "memory.swap.max"):
        assert cgroup_file(mgr, "", "memory.swap.max") == str(32 * MiB)    # swap - limit
    assert cgroup_file(mgr, "", "cpu.weight") == "39"                      # shares 1024
    assert cgroup_file(mgr, "", "cpu.max") == "20000 50000"
    assert cgroup_file(mgr, "", "cpu.max.burst") == "1000"
    assert cgroup_file(mgr, "", "cpuset.cpus") == "0"
    assert cgroup_file(mgr, "", "pids.max") == "42"
    assert cgroup_file(mgr, "", f"hugetlb.{huge}.max") == str(4 * MiB)
    if has(mgr, f"hugetlb.{huge}.rsvd.max"):
        assert cgroup_file(mgr, "", f"hugetlb.{huge}.rsvd.max") == str(4 * MiB)


def test_io_weight_lands_or_is_refused_by_name(cgroup):
    """BFQ's io.bfq.weight takes the spec's scale as is, io.weight (blk-iocost) the mapped one;
    a kernel with neither refuses the weight naming the field and the file."""
    probe = cgroup()
    if has(probe, "io.bfq.weight"):
        mgr = cgroup({"blockIO": {"weight": 500}})
        assert cgroup_file(mgr, "", "io.bfq.weight") == "default 500"
    elif has(probe, "io.weight"):
        mgr = cgroup({"blockIO": {"weight": 500}})
        assert cgroup_file(mgr, "", "io.weight") == "default 4950"
    else:
        mgr = cgroup(create=False)
        with pytest.raises(CgroupError, match=r"^linux\.resources\.blockIO\.weight: write "
                           r"'4950' to \S+/io\.weight: not supported by this kernel"):
            mgr.create({"blockIO": {"weight": 500}})


def test_updates_merge_with_current_values(cgroup):
    mgr = cgroup({"cpu": {"quota": 20000, "period": 100000}, "memory": {"limit": 32 * MiB}})
    mgr.update({"cpu": {"period": 50000}})
    assert cgroup_file(mgr, "", "cpu.max") == "20000 50000"
    mgr.update({"cpu": {"quota": -1}})
    assert cgroup_file(mgr, "", "cpu.max") == "max 50000"
    if has(mgr, "memory.swap.max"):
        mgr.update({"memory": {"swap": 48 * MiB}})        # swap alone: limit read back
        assert cgroup_file(mgr, "", "memory.swap.max") == str(16 * MiB)
    mgr.update({"memory": {"limit": -1}})
    assert cgroup_file(mgr, "", "memory.max") == "max"


def test_check_before_update_refuses_a_limit_below_usage(cgroup, spawn):
    mgr = cgroup({"memory": {"limit": 64 * MiB}})
    shm = f"/dev/shm/{os.path.basename(os.path.dirname(mgr.path))}"
    try:
        # tmpfs pages stay charged to the cgroup after the writer exits
        spawn(f"exec busybox dd if=/dev/zero of={shm} bs=1M count=8", mgr).finish()
        assert int(cgroup_file(mgr, "", "memory.current")) >= 8 * MiB
        with pytest.raises(CgroupError, match=r"^linux.resources.memory.limit: 4194304 is below "
                                              r"the current usage \d+ \(checkBeforeUpdate\)"):
            mgr.update({"memory": {"limit": 4 * MiB, "checkBeforeUpdate": True}})
        assert cgroup_file(mgr, "", "memory.max") == str(64 * MiB)
    finally:
        if os.path.exists(shm):
            os.unlink(shm)


def test_device_program_is_replaced_not_stacked(cgroup):
    mgr = cgroup()
    first = devices.attached_v2(mgr.path)
    assert len(first) == 1
    mgr.update({"pids": {"limit": 10}})                   # no devices: program untouched
    assert devices.attached_v2(mgr.path) == first
    mgr.update({"devices": [{"allow": True, "type": "b", "major": 7, "access": "r"}]})
    second = devices.attached_v2(mgr.path)
    assert len(second) == 1 and second != first


def test_cgroup_kill_kills_even_frozen_tasks(cgroup, spawn):
    mgr = cgroup()
    child = spawn("busybox sleep 60 & busybox sleep 60 & wait", mgr)
    wait_for(lambda: len(mgr.pids()) == 3, what="processes")
    mgr.freeze()
    mgr.kill_all(signal.SIGKILL)                          # cgroup.kill
    assert child.finish()[0] == -signal.SIGKILL
    wait_for(lambda: not mgr.pids(), what="the frozen tasks to die")
    assert mgr.frozen()


UNSUPPORTED = [
    ({"cpu": {"realtimeRuntime": 950000}}, "linux.resources.cpu.realtimeRuntime: the realtime "
                                           "scheduler cannot be limited on cgroup v2"),
    ({"network": {"classID": 1}}, "linux.resources.network: net_cls/net_prio do not exist"),
    ({"memory": {"swappiness": 10}}, "linux.resources.memory.swappiness: not supported on cgroup v2"),
    ({"memory": {"kernel": MiB}}, "linux.resources.memory.kernel: kernel memory limits"),
    ({"memory": {"disableOOMKiller": True}}, "linux.resources.memory.disableOOMKiller: not "),
    ({"blockIO": {"leafWeight": 10}}, "linux.resources.blockIO.leafWeight: not supported"),
    ({"unified": {"memory.bogus": "1"}}, "linux.resources.unified.memory.bogus: write '1' to "),
    ({"unified": {"nosuch.max": "1"}}, "linux.resources.unified.nosuch.max: the nosuch "
                                       "controller is not available"),
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares: 1 is out of range [2, 262144]"),
]


@pytest.mark.parametrize("resources, message", UNSUPPORTED,
                         ids=[m.split(":")[0] for _, m in UNSUPPORTED])
def test_what_v2_cannot_do_is_an_error_and_leaves_nothing(cgroup, resources, message):
    mgr = cgroup(create=False)
    with pytest.raises(CgroupError) as err:
        mgr.create(resources)
    assert str(err.value).startswith(message), str(err.value)
    assert_nothing_left(mgr)
