"""Pure logic of the cgroup layer: parsing linux.resources, the v1→v2 conversions, cgroupsPath
handling, and the device-rule compiler (checked against the reference meaning by running the
generated eBPF in a small interpreter written here from the instruction-set docs).
No cgroups are touched."""

import random
import struct

import pytest

from pyrunc.cgroups import cpu, devices, io, memory, paths, load_manager
from pyrunc.cgroups.resources import DeviceRule, parse, parse_device_rules
from pyrunc.errors import CgroupError

FULL = {
    "memory": {"limit": 536870912, "reservation": 268435456, "swap": 1073741824,
               "kernel": -1, "kernelTCP": -1, "swappiness": 0, "disableOOMKiller": False,
               "useHierarchy": True, "checkBeforeUpdate": True},
    "cpu": {"shares": 1024, "quota": 1000000, "burst": 500000, "period": 500000,
            "realtimeRuntime": 950000, "realtimePeriod": 1000000, "cpus": "2-3",
            "mems": "0-7", "idle": 0},
    "blockIO": {"weight": 10, "leafWeight": 10,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300},
                                 {"major": 8, "minor": 16, "weight": 500}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200},
                       {"pageSize": "64KB", "limit": 1000000}],
    "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
    "pids": {"limit": 32771},
    "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "rxe3": {"hcaObjects": 10000}},
    "unified": {"io.max": "259:0 rbps=2097152 wiops=120", "hugetlb.1GB.max": "1073741824"},
    "devices": [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}],
}


def test_parse_full_example():
    r = parse(FULL)
    assert r.memory.limit == 536870912 and r.memory.swap == 1073741824
    assert r.memory.check_before_update is True and r.memory.kernel == -1
    assert (r.cpu.shares, r.cpu.quota, r.cpu.period, r.cpu.burst) == (1024, 1000000, 500000, 500000)
    assert (r.cpu.cpus, r.cpu.mems, r.cpu.idle) == ("2-3", "0-7", 0)
    assert [(d.major, d.minor, d.weight, d.leaf_weight) for d in r.block_io.weight_device] == \
        [(8, 0, 500, 300), (8, 16, 500, None)]
    assert [(t.major, t.minor, t.rate) for t in r.block_io.throttle["rbps"]] == [(8, 0, 600)]
    assert [(t.major, t.rate) for t in r.block_io.throttle["wiops"]] == [(8, 300)]
    assert [(h.page_size, h.limit) for h in r.hugepage_limits] == [("2MB", 209715200),
                                                                   ("64KB", 1000000)]
    assert r.network.class_id == 1048577 and r.network.priorities == [("eth0", 500)]
    assert r.pids.limit == 32771
    assert [(x.device, x.hca_handles, x.hca_objects) for x in r.rdma] == \
        [("mlx5_1", 3, 10000), ("rxe3", None, 10000)]
    assert r.unified["hugetlb.1GB.max"] == "1073741824"
    assert r.devices == [DeviceRule(False, "a", None, None, "rwm"),
                         DeviceRule(True, "c", 10, 229, "rw"),
                         DeviceRule(True, "b", 8, 0, "r")]


def test_zero_means_unset_except_pids():
    r = parse({"memory": {"limit": 0, "swap": 0}, "cpu": {"shares": 0, "quota": 0, "period": 0},
               "pids": {"limit": 0}})
    assert (r.memory.limit, r.memory.swap) == (None, None)
    assert (r.cpu.shares, r.cpu.quota, r.cpu.period) == (None, None, None)
    assert r.pids.limit == 0


@pytest.mark.parametrize("raw, message", [
    ([], "linux.resources: must be an object"),
    ({"memory": {"limit": "1G"}}, 'linux.resources.memory.limit: must be an integer, got "1G"'),
    ({"memory": {"limit": True}}, "linux.resources.memory.limit: must be an integer"),
    ({"memory": {"limit": -2}}, "linux.resources.memory.limit: -2 is invalid"),
    ({"memory": {"limit": 2**63}}, "linux.resources.memory.limit: 9223372036854775808 is out of range"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness: 101 is out of range"),
    ({"memory": {"disableOOMKiller": "yes"}}, "linux.resources.memory.disableOOMKiller: must be a boolean"),
    ({"cpu": {"shares": -1}}, "linux.resources.cpu.shares: -1 is out of range"),
    ({"cpu": {"quota": -5}}, "linux.resources.cpu.quota: -5 is invalid"),
    ({"cpu": {"quota": 1000, "burst": 2000}}, "linux.resources.cpu.burst: 2000 is larger than quota 1000"),
    ({"cpu": {"cpus": "0-a"}}, 'linux.resources.cpu.cpus: "0-a" is not a list'),
    ({"cpu": {"mems": "3-1"}}, 'linux.resources.cpu.mems: "3-1" is not a list'),
    ({"blockIO": {"weight": 70000}}, "linux.resources.blockIO.weight: 70000 is out of range"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0}]}},
     "linux.resources.blockIO.weightDevice[0]: needs weight or leafWeight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
     "linux.resources.blockIO.throttleReadBpsDevice[0].minor: is required"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
     'linux.resources.hugepageLimits[0].pageSize: "2M" is not a size'),
    ({"hugepageLimits": [{"pageSize": "2MB"}]}, "linux.resources.hugepageLimits[0].limit: is required"),
    ({"pids": {}}, "linux.resources.pids.limit: is required"),
    ({"pids": {"limit": -7}}, "linux.resources.pids.limit: -7 is invalid"),
    ({"rdma": {"mlx5_1": {}}}, "linux.resources.rdma.mlx5_1: needs hcaHandles or hcaObjects"),
    ({"unified": {"memory": "1"}}, 'linux.resources.unified.memory: is not a cgroup file name'),
    ({"unified": {"../x.y": "1"}}, "linux.resources.unified.../x.y: is not a cgroup file name"),
    ({"unified": {"memory.high": 5}}, "linux.resources.unified.memory.high: must be a string"),
    ({"devices": [{"access": "rwm"}]}, "linux.resources.devices[0].allow: is required"),
    ({"devices": [{"allow": True, "type": "x"}]}, 'linux.resources.devices[0].type: "x" is not one of'),
    ({"devices": [{"allow": True, "access": "rwx"}]}, 'linux.resources.devices[0].access: "rwx" is not'),
    ({"devices": [{"allow": True, "type": "c", "major": 2**40}]},
     "linux.resources.devices[0].major: 1099511627776 is not a device number"),
    ({"network": {"priorities": [{"priority": 1}]}},
     "linux.resources.network.priorities[0].name: is required"),
])
def test_parse_rejects(raw, message):
    with pytest.raises(CgroupError) as err:
        parse(raw)
    assert str(err.value).startswith(message), str(err.value)


# --- conversions ------------------------------------------------------------------------------

@pytest.mark.parametrize("shares, weight", [(2, 1), (1024, 39), (512, 20), (262144, 10000)])
def test_shares_to_weight(shares, weight):
    assert cpu.shares_to_weight(shares) == weight


@pytest.mark.parametrize("shares", [1, 262145])
def test_shares_out_of_range(shares):
    with pytest.raises(CgroupError, match=r"linux.resources.cpu.shares: .* out of range \[2, 262144\]"):
        cpu.shares_to_weight(shares)


@pytest.mark.parametrize("weight, v2", [(10, 1), (100, 910), (500, 4950), (1000, 10000)])
def test_blkio_weight_to_io_weight(weight, v2):
    assert io.weight_to_v2(weight) == v2


def test_blkio_weight_out_of_range():
    with pytest.raises(CgroupError, match=r"blockIO.weight: 5 is out of range \[10, 1000\]"):
        io.weight_to_v2(5)


@pytest.mark.parametrize("quota, period, current, line", [
    (50000, 100000, "max 100000", "50000 100000"),
    (-1, None, "20000 50000", "max 50000"),
    (None, 250000, "20000 100000", "20000 250000"),
    (30000, None, None, "30000 100000"),
    (None, None, "max 100000", None),
])
def test_cpu_max(quota, period, current, line):
    assert cpu.cpu_max(quota, period, current) == line


@pytest.mark.parametrize("swap, limit, current, value", [
    (None, None, None, None),
    (None, 1 << 20, None, None),
    (None, -1, None, "max"),             # unlimited memory → unlimited swap
    (-1, 1 << 20, None, "max"),
    (3 << 20, 1 << 20, None, 2 << 20),   # memory+swap → swap alone
    (1 << 20, 1 << 20, None, 0),         # no swap at all
    (3 << 20, None, str(1 << 20), 2 << 20),  # update: limit from memory.max
])
def test_swap_conversion(swap, limit, current, value):
    assert memory.swap_max_v2(swap, limit, current) == value


@pytest.mark.parametrize("swap, limit, current, message", [
    (1 << 20, 2 << 20, None, r"memory\+swap limit 1048576 is lower than the memory limit 2097152"),
    (1 << 20, -1, None, "needs a memory limit"),
    (1 << 20, None, "max", "needs a memory limit"),
])
def test_swap_conversion_errors(swap, limit, current, message):
    with pytest.raises(CgroupError, match=message):
        memory.swap_max_v2(swap, limit, current)


def test_swap_below_limit_is_rejected_by_both_drivers():
    m = parse({"memory": {"limit": 2 << 20, "swap": 1 << 20}}).memory
    with pytest.raises(CgroupError, match=r"^linux.resources.memory.swap: memory\+swap limit"):
        memory.check(m)


# --- cgroupsPath --------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    (None, "/pyrunc/abc"),
    ("/a/b", "/a/b"),
    ("//a/./b/", "/a/b"),
    ("a/b", "a/b"),
    ("./a", "a"),
])
def test_clean_path(raw, clean):
    assert paths.clean(raw, "abc") == clean


@pytest.mark.parametrize("raw, message", [
    ("/a/../../etc", "must not contain '..'"),
    ("..", "must not contain '..'"),
    ("/", "names the root cgroup"),
    ("", "names the root cgroup"),
    ("system.slice:docker:abc", "the systemd cgroup driver is not supported"),
    (5, "must be a string"),
])
def test_clean_path_rejects(raw, message):
    with pytest.raises(CgroupError, match=message) as err:
        paths.clean(raw, "abc")
    assert str(err.value).startswith("linux.cgroupsPath: ")


def test_bad_container_id_for_default_path():
    with pytest.raises(CgroupError, match="cannot name a cgroup"):
        paths.clean(None, "a/b")


@pytest.mark.parametrize("clean, point, root, own, v2, result", [
    ("/x/y", "/sys/fs/cgroup/memory", "/", "/sess", False, "/sys/fs/cgroup/memory/x/y"),
    ("x/y", "/sys/fs/cgroup/memory", "/", "/sess/a", False, "/sys/fs/cgroup/memory/sess/a/x/y"),
    ("x/y", "/sys/fs/cgroup", "/", "/user.slice/s.scope", True, "/sys/fs/cgroup/user.slice/x/y"),
    ("x/y", "/sys/fs/cgroup", "/", "/", True, "/sys/fs/cgroup/x/y"),
    # a mount showing only a subtree: our own path is relative to the hierarchy's root
    ("x", "/sys/fs/cgroup/cpu", "/docker/c1", "/docker/c1/sub", False, "/sys/fs/cgroup/cpu/sub/x"),
])
def test_resolve(clean, point, root, own, v2, result):
    assert paths.resolve(clean, point, root, own, v2) == result


def test_mountinfo_unescape():
    assert paths._unescape(r"/mnt/a\040b") == "/mnt/a b"


@pytest.mark.parametrize("state", [
    {"driver": "v2", "path": "/sys/fs/cgroup/../../etc", "mount": "/sys/fs/cgroup"},
    {"driver": "v2", "path": "/etc/x", "mount": "/sys/fs/cgroup"},
    {"driver": "v2", "path": "/sys/fs/cgroup/a", "mount": "/sys/fs/cgroup", "created": ["/tmp"]},
    {"driver": "v1", "dirs": {"memory": "/tmp/x"}, "mounts": {"memory": "/sys/fs/cgroup/memory"}},
    {"driver": "v3"},
])
def test_load_manager_refuses_paths_outside_cgroupfs(state):
    with pytest.raises(CgroupError):
        load_manager(state)


def test_state_round_trip():
    state = {"driver": "v2", "path": "/sys/fs/cgroup/a/b", "mount": "/sys/fs/cgroup",
             "created": ["/sys/fs/cgroup/a", "/sys/fs/cgroup/a/b"], "devices": [["c", 10, 200]]}
    assert load_manager(state).to_state() == state


# --- devices ----------------------------------------------------------------------------------

def test_effective_rule_order():
    user = parse_device_rules([{"allow": False, "access": "rwm"},
                               {"allow": True, "type": "c", "major": 10, "minor": 200}])
    nodes = devices.rules_for_nodes([{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229},
                                     {"type": "p", "path": "/dev/fifo"},
                                     {"type": "u", "path": "/dev/u", "major": 4, "minor": 1}])
    rules = devices.effective(user, nodes)
    assert rules[0] == devices.DENY_ALL
    assert rules[1:3] == user
    assert rules[3:5] == [DeviceRule(True, "c", 10, 229, "rwm"), DeviceRule(True, "c", 4, 1, "rwm")]
    assert rules[5:] == devices.DEFAULT_RULES
    allowed = devices.allowed
    assert allowed(rules, "c", 1, 3, "rw")           # /dev/null survives the config's deny-all
    assert allowed(rules, "c", 10, 200, "rwm")
    assert allowed(rules, "c", 136, 7, "rw")         # any pts
    assert allowed(rules, "b", 8, 0, "m")            # mknod anything
    assert not allowed(rules, "b", 8, 0, "r")
    assert not allowed(rules, "c", 1, 1, "r")        # /dev/mem


def test_v1_lines():
    assert DeviceRule(False, "a", None, None, "rwm").v1_lines() == ["a"]
    assert DeviceRule(True, "a", None, None, "m").v1_lines() == ["c *:* m", "b *:* m"]
    assert DeviceRule(True, "c", 136, None, "rw").v1_lines() == ["c 136:* rw"]
    assert parse_device_rules([{"allow": True, "type": "a", "major": 3}])[0].major is None


def run_bpf(code: bytes, dtype: int, access: int, major: int, minor: int) -> int:
    """Interpret the subset of eBPF the device compiler emits (64-bit ALU with immediates or
    registers, 32-bit loads from the context, forward conditional jumps, exit)."""
    ctx = struct.pack("<III", (access << 16) | dtype, major, minor)
    insns = [struct.unpack("<BBhi", code[i:i + 8]) for i in range(0, len(code), 8)]
    regs = [0] * 11
    regs[1] = "ctx"
    mask = 2**64 - 1
    pc = 0
    for _ in range(10000):
        op, r, off, imm = insns[pc]
        dst, src = r & 0xF, r >> 4
        cls = op & 0x07
        pc += 1
        if cls == 0x01:                                   # LDX
            assert op == 0x61 and regs[src] == "ctx"      # BPF_MEM | BPF_W
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif cls == 0x07:                                 # ALU64
            operand = regs[src] if op & 0x08 else imm & mask
            a = regs[dst]
            regs[dst] = {0xb0: lambda: operand, 0x50: lambda: a & operand,
                         0x70: lambda: a >> operand, 0x40: lambda: a | operand,
                         0x00: lambda: a + operand}[op & 0xF0]() & mask
        elif cls == 0x05:                                 # JMP
            kind = op & 0xF0
            if kind == 0x90:
                return regs[0]
            a, b = regs[dst], imm & mask
            taken = {0x00: True, 0x10: a == b, 0x50: a != b, 0x40: bool(a & b)}[kind]
            assert off >= 0
            if taken:
                pc += off
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("program did not exit")


ACCESS_SETS = ["r", "w", "m", "rw", "rm", "wm", "rwm"]


def random_rules(rng: random.Random) -> list[DeviceRule]:
    rules = []
    for _ in range(rng.randint(0, 7)):
        dtype = rng.choice("acbcb")
        major = minor = None
        if dtype != "a":
            major = rng.choice([None, 1, 1, 7, 8])
            minor = rng.choice([None, 0, 3, 5])
        rules.append(DeviceRule(rng.random() < 0.6, dtype, major, minor, rng.choice(ACCESS_SETS)))
    return rules


def test_compiled_program_matches_reference_meaning():
    rng = random.Random(1234)
    bits = {"m": 1, "r": 2, "w": 4}
    for _ in range(400):
        rules = random_rules(rng)
        code = devices.compile_rules(rules)
        for dtype, tcode in (("c", 2), ("b", 1)):
            for major in (1, 7, 8):
                for minor in (0, 3, 5):
                    for acc in ACCESS_SETS:
                        want = devices.allowed(rules, dtype, major, minor, acc)
                        got = run_bpf(code, tcode, sum(bits[c] for c in acc), major, minor)
                        assert bool(got) == want, (rules, dtype, major, minor, acc)


def test_program_shape():
    # the default list compiles to straight-line code that ends at the unconditional deny-all
    code = devices.compile_rules(devices.effective(None, []))
    assert len(code) % 8 == 0 and len(code) // 8 < 64
    ops = [code[i] for i in range(0, len(code), 8)]
    assert ops.count(0x95) == 2                      # two exits: deny and allow
    # nothing after an unconditional rule: the verifier refuses unreachable code
    assert devices.compile_rules([DeviceRule(True, "c", 1, 3, "rw"), devices.DENY_ALL]) == \
        devices.compile_rules([devices.DENY_ALL])
