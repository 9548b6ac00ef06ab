"""linux.namespaces, id mappings, time offsets (config-linux.md), seen from inside."""

import os
import subprocess

import pytest

from harness import base_config

ALL = ("pid", "network", "ipc", "uts", "mount", "cgroup", "time")
PROC = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
        "cgroup": "cgroup", "time": "time", "user": "user"}


def host_ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{PROC[kind]}")


def container_ns(runtime, namespaces, kind, extra=None):
    cfg = base_config(["readlink", f"/proc/self/ns/{PROC[kind]}"])
    cfg["linux"]["namespaces"] = namespaces
    if not any(ns["type"] == "uts" for ns in namespaces):
        del cfg["hostname"]         # a hostname needs a uts namespace
    if extra:
        cfg["linux"].update(extra)
    res = runtime.run(cfg)
    assert res.rc == 0, res
    return res.out.strip()


@pytest.mark.parametrize("kind", ALL)
def test_new_namespace(runtime, kind):
    nss = [{"type": t} for t in ("mount", kind)] if kind != "mount" else [{"type": "mount"}]
    assert container_ns(runtime, nss, kind) != host_ns(kind)


@pytest.mark.parametrize("kind", ["network", "ipc", "uts", "cgroup"])
def test_absent_namespace_is_inherited(runtime, kind):
    nss = [{"type": t} for t in ("pid", "mount")]
    assert container_ns(runtime, nss, kind) == host_ns(kind)


def test_join_namespace_by_path(runtime):
    """A second container joins the first one's network and uts namespaces."""
    first = base_config(["sleep", "1000"])
    bundle = runtime.bundle(first)
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    pid = runtime.state(cid)["pid"]
    cfg = base_config(["sh", "-c", "readlink /proc/self/ns/net; hostname"])
    cfg["hostname"] = None
    del cfg["hostname"]
    cfg["linux"]["namespaces"] = [
        {"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
        {"type": "network", "path": f"/proc/{pid}/ns/net"},
        {"type": "uts", "path": f"/proc/{pid}/ns/uts"}]
    res = runtime.run(cfg)
    assert res.rc == 0, res
    net, hostname = res.out.split()
    assert net == os.readlink(f"/proc/{pid}/ns/net")
    assert hostname == "pyrunc-test"


def test_join_path_of_wrong_type_is_an_error(runtime):
    cfg = base_config()
    del cfg["hostname"]
    cfg["linux"]["namespaces"] = [{"type": "mount"}, {"type": "network",
                                                      "path": "/proc/self/ns/uts"}]
    res = runtime.run(cfg)
    assert res.rc == 1 and "is not a network namespace" in res.err


def test_join_path_missing_is_an_error(runtime):
    cfg = base_config()
    del cfg["hostname"]
    cfg["linux"]["namespaces"] = [{"type": "mount"}, {"type": "ipc", "path": "/no/such/ns"}]
    res = runtime.run(cfg)
    assert res.rc == 1 and "/no/such/ns" in res.err


def test_duplicate_namespace_is_an_error(runtime):
    cfg = base_config()
    cfg["linux"]["namespaces"].append({"type": "pid"})
    res = runtime.run(cfg)
    assert res.rc == 1 and "namespaces" in res.err


def test_pid_namespace_init_is_pid_1(runtime):
    res = runtime.sh("echo $$; ps -o pid | tail -n +2 | wc -l")
    assert res.out.split()[0] == "1"


def test_loopback_up_in_new_netns(runtime):
    res = runtime.sh("ip -o link show | wc -l; ip -o link show lo; "
                     "(nc -l -p 7777 & sleep 0.3; echo hi | nc -w 1 127.0.0.1 7777)")
    lines = res.out.splitlines()
    assert lines[0].strip() == "1"          # only lo
    assert "<LOOPBACK,UP,LOWER_UP>" in lines[1]
    assert lines[2] == "hi"                 # traffic flows over it


def user_ns_config(script, host_base=100000):
    cfg = base_config(["sh", "-c", script])
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_base, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_base, "size": 65536}]
    return cfg


def test_user_namespace_maps(runtime):
    res = runtime.run(user_ns_config("cat /proc/self/uid_map /proc/self/gid_map; id -u"))
    assert res.rc == 0, res
    lines = [l.split() for l in res.out.splitlines()]
    assert lines[0] == ["0", "100000", "65536"]
    assert lines[1] == ["0", "100000", "65536"]
    assert lines[2] == ["0"]


def test_user_namespace_file_ownership_on_bind(runtime, tmp_path):
    """A file container-root writes to a bind mount is owned by the mapped host uid."""
    share = tmp_path / "share"
    share.mkdir()
    os.chown(share, 100000, 100000)
    cfg = user_ns_config("echo hi > /share/f && echo ok")
    cfg["mounts"].append({"destination": "/share", "type": "none", "source": str(share),
                          "options": ["bind"]})
    bundle = runtime.bundle(cfg)
    os.mkdir(os.path.join(bundle, "rootfs/share"))  # the rootfs is not the mapped root's to write
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.rc == 0 and res.out == "ok\n", res
    st = os.stat(share / "f")
    assert (st.st_uid, st.st_gid) == (100000, 100000)


def test_time_namespace_offsets(runtime):
    cfg = base_config(["cat", "/proc/uptime"])
    cfg["linux"]["namespaces"].append({"type": "time"})
    cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0},
                                   "monotonic": {"secs": 1000}}
    res = runtime.run(cfg)
    assert res.rc == 0, res
    with open("/proc/uptime") as f:
        host_uptime = float(f.read().split()[0])
    assert float(res.out.split()[0]) - host_uptime > 86400 * 365 - 60


def test_mappings_without_user_namespace_refused(runtime):
    cfg = base_config()
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    res = runtime.run(cfg)
    assert res.rc == 1 and "user namespace" in res.err


def test_init_is_not_dumpable_while_created(runtime):
    """With a user namespace, a dumpable init's /proc files would belong to the mapped uid; a
    non-dumpable one's stay root's, out of the container's reach."""
    cfg = user_ns_config("true")
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    pid = runtime.state(cid)["pid"]
    st = os.stat(f"/proc/{pid}/environ")
    assert st.st_uid == 0
    runtime("delete", "-f", cid, check=True)
