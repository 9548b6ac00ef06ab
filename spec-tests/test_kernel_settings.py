"""Process and linux settings the kernel keeps per process: scheduler, I/O priority, NUMA
memory policy, personality; netDevices; and what pyrunc refuses (intelRdt)."""

import subprocess
import uuid

import pytest

from harness import PYRUNC, base_config


def run_sh(runtime, script, process=None, linux=None):
    cfg = base_config(["sh", "-c", script])
    cfg["process"].update(process or {})
    cfg["linux"].update(linux or {})
    res = runtime.run(cfg)
    assert res.rc == 0, res
    return res.out


def test_scheduler(runtime):
    out = run_sh(runtime, "grep -E '^policy|^prio' /proc/self/sched",
                 process={"scheduler": {"policy": "SCHED_BATCH", "nice": 5}})
    fields = {l.split(":")[0].strip(): l.split(":")[1].strip() for l in out.splitlines()}
    assert fields["policy"] == "3"              # SCHED_BATCH
    assert fields["prio"] == str(120 + 5)


def test_io_priority(runtime):
    out = run_sh(runtime, "ionice -p $$",
                 process={"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 6}})
    assert out.strip() == "best-effort: prio 6"


def test_memory_policy(runtime):
    out = run_sh(runtime, "grep -m1 -o 'bind:[0-9,-]*\\|interleave:[0-9,-]*' /proc/self/numa_maps",
                 linux={"memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "0"}})
    assert out.strip() == "interleave:0"


def test_personality(runtime):
    assert run_sh(runtime, "uname -m", linux={"personality": {"domain": "LINUX32"}}) \
        .strip() in ("i686", "i386")


def test_intel_rdt_refused(runtime):
    cfg = base_config()
    cfg["linux"]["intelRdt"] = {"closID": "guaranteed_group"}
    res = runtime.run(cfg)
    assert res.rc == 1 and "intelRdt" in res.err


@pytest.fixture
def test_netns():
    """A network namespace of the test's own, with a veth pair whose vt0 end has an address.

    pyrunc runs inside it (nsenter, which unlike ``ip netns exec`` keeps /sys and its cgroup
    mounts), so the interfaces it moves are the test's, never the host's.
    """
    name = f"pyrunc-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["ip", "link", "add", "vt0", "type", "veth", "peer", "name", "vt1"],
                    ["ip", "addr", "add", "10.77.0.1/24", "dev", "vt0"]):
            subprocess.run(["ip", "netns", "exec", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_in_netns(runtime, netns, cfg):
    bundle = runtime.bundle(cfg)
    return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", PYRUNC, "--root", runtime.root,
                           "run", "--bundle", bundle, runtime.new_id()],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def test_net_devices_moved_renamed_addressed_up(runtime, test_netns):
    cfg = base_config(["sh", "-c", "ip -o -4 addr show ctr0; ip -o link show ctr0"])
    cfg["linux"]["netDevices"] = {"vt0": {"name": "ctr0"}}
    res = run_in_netns(runtime, test_netns, cfg)
    assert res.returncode == 0, res
    addr, link = res.stdout.splitlines()
    assert "10.77.0.1/24" in addr
    assert ",UP" in link
    # gone from the runtime's namespace while the container had it
    left = subprocess.run(["ip", "netns", "exec", test_netns, "ip", "-o", "link"],
                          capture_output=True, text=True).stdout
    assert "vt0" not in left


def test_net_device_missing(runtime, test_netns):
    cfg = base_config()
    cfg["linux"]["netDevices"] = {"nosuch0": {}}
    res = run_in_netns(runtime, test_netns, cfg)
    assert res.returncode == 1 and "nosuch0" in res.stderr


def test_net_device_name_clash(runtime, test_netns):
    cfg = base_config()
    cfg["linux"]["netDevices"] = {"vt0": {"name": "lo"}}
    res = run_in_netns(runtime, test_netns, cfg)
    assert res.returncode == 1 and "already exists" in res.stderr
