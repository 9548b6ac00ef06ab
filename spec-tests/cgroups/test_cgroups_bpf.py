"""The eBPF device programs on the real kernel.

Random rule lists are compiled, loaded with bpf(BPF_PROG_LOAD) and attached to a fresh cgroup
in the cgroup2 hierarchy; a process in that cgroup then opens (read, write, read-write) and
mknods a handful of devices, and every answer must be the one the reference meaning
(``devices.allowed``) gives: EPERM exactly when denied.

This needs a cgroup2 hierarchy: on a hybrid host (like CI's) the unified one at
/sys/fs/cgroup/unified — device programs work there as on a pure v2 host (the kernel asks the
task's cgroup2 programs first, then the v1 devices controller) — and in the VM, on the kernel the
v2 driver is tested with (a Python child per rule list: ~15 s there).
"""

import json
import os
import random
import subprocess
import sys

import pytest

from cgtest import SESSION, new_counter
from pyrunc.cgroups import detect_mode, devices, paths
from pyrunc.cgroups.resources import DeviceRule

pytestmark = pytest.mark.skipif(
    detect_mode() not in ("unified", "hybrid") or paths.unified_mount() is None,
    reason="needs a cgroup2 hierarchy (this host has none mounted)")

DEVICES = [("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("b", 7, 0), ("b", 7, 1)]

CHILD = r"""
import json, os, sys
sys.stdin.readline()
out = []
for path, idx in json.loads(sys.argv[1]):
    res = {}
    for acc, flags in (("r", os.O_RDONLY), ("w", os.O_WRONLY), ("rw", os.O_RDWR)):
        try:
            os.close(os.open(path, flags | os.O_NONBLOCK))
            res[acc] = True
        except OSError as e:
            res[acc] = e.errno != 1
    st = os.stat(path)
    tmp = path + ".m"
    try:
        os.mknod(tmp, st.st_mode, st.st_rdev)
        os.unlink(tmp)
        res["m"] = True
    except OSError as e:
        res["m"] = e.errno != 1
    out.append(res)
print(json.dumps(out))
"""


@pytest.fixture
def v2_cgroup():
    """A bare directory in the cgroup2 hierarchy, removed afterwards."""
    point, root = paths.unified_mount()
    made = []

    def make():
        d = paths.resolve(f"{SESSION}-bpf-{new_counter()}", point, root,
                          paths.own_cgroups().get(""), v2=True)
        os.mkdir(d)
        made.append(d)
        return d

    yield make
    for d in made:
        if os.path.isdir(d):
            os.rmdir(d)


@pytest.fixture
def nodes(tmp_path):
    out = []
    for i, (t, major, minor) in enumerate(DEVICES):
        p = tmp_path / f"dev{i}"
        mode = 0o600 | (0o020000 if t == "c" else 0o060000)
        os.mknod(p, mode, os.makedev(major, minor))
        out.append(str(p))
    return out


def run_in(cgroup_dir: str, node_paths: list[str]) -> list[dict]:
    proc = subprocess.Popen([sys.executable, "-S", "-c", CHILD,
                             json.dumps([[p, i] for i, p in enumerate(node_paths)])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
            f.write(str(proc.pid))
        out, err = proc.communicate(b"go\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


def expected(rules, acc_results_keys=("r", "w", "rw", "m")):
    return [{acc: devices.allowed(rules, t, major, minor, acc) for acc in acc_results_keys}
            for t, major, minor in DEVICES]


def random_rules(rng):
    rules = []
    for _ in range(rng.randint(1, 6)):
        dtype = rng.choice("acb")
        major = minor = None
        if dtype != "a":
            major = rng.choice([None, 1, 7])
            minor = rng.choice([None, 0, 1, 3, 5, 7])
        rules.append(DeviceRule(rng.random() < 0.6, dtype, major, minor,
                                rng.choice(["r", "w", "m", "rw", "rm", "wm", "rwm"])))
    return rules


def test_kernel_agrees_with_reference_on_random_rule_lists(v2_cgroup, nodes):
    rng = random.Random(20240607)
    for _ in range(12):
        rules = random_rules(rng)
        d = v2_cgroup()
        devices.set_v2(d, rules)
        assert run_in(d, nodes) == expected(rules), rules


def test_default_rules(v2_cgroup, nodes):
    d = v2_cgroup()
    rules = devices.effective(None, [])
    devices.set_v2(d, rules)
    got = run_in(d, nodes)
    # null/zero/full usable; the loop devices only for mknod
    assert got[:3] == [{"r": True, "w": True, "rw": True, "m": True}] * 3
    assert got[3:] == [{"r": False, "w": False, "rw": False, "m": True}] * 2


def test_replacing_rules_keeps_one_program_and_applies_to_running_tasks(v2_cgroup, nodes):
    d = v2_cgroup()
    allow_loop = [DeviceRule(True, "b", 7, None, "rw")]
    devices.set_v2(d, devices.effective(None, []))
    first = devices.attached_v2(d)
    assert len(first) == 1
    devices.set_v2(d, devices.effective(allow_loop, []))
    second = devices.attached_v2(d)
    assert len(second) == 1 and second != first
    assert run_in(d, nodes)[3] == {"r": True, "w": True, "rw": True, "m": True}


def test_verifier_log_reaches_the_error():
    from pyrunc.linux import bpf

    a = bpf.Asm()
    a.exit()                        # r0 never set: the verifier refuses
    with pytest.raises(bpf.VerifierError) as err:
        bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, a.assemble())
    assert "R0" in err.value.log
    assert str(err.value).startswith("bpf prog load: ")
