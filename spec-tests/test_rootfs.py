"""root, mounts, devices, masked/readonly paths, propagation — read from inside the container."""

import os
import subprocess

import pytest

from harness import base_config


def mountinfo(out: str) -> dict[str, dict]:
    """Parse a container's /proc/self/mountinfo into {mount point: fields} (last one wins)."""
    mounts = {}
    for line in out.splitlines():
        parts = line.split()
        sep = parts.index("-")
        mounts[parts[4]] = {"opts": set(parts[5].split(",")), "optional": parts[6:sep],
                            "fstype": parts[sep + 1], "source": parts[sep + 2],
                            "super": set(parts[sep + 3].split(","))}
    return mounts


def run_mountinfo(runtime, cfg):
    cfg["process"]["args"] = ["cat", "/proc/self/mountinfo"]
    res = runtime.run(cfg)
    assert res.rc == 0, res
    return mountinfo(res.out)


def test_default_mounts(runtime):
    m = run_mountinfo(runtime, base_config())
    assert m["/proc"]["fstype"] == "proc"
    assert m["/dev"]["fstype"] == "tmpfs" and {"nosuid"} <= m["/dev"]["opts"]
    assert m["/dev/pts"]["fstype"] == "devpts" and "newinstance" not in m["/dev/pts"]["opts"]
    assert {"nosuid", "noexec", "nodev"} <= m["/dev/shm"]["opts"]
    assert m["/dev/mqueue"]["fstype"] == "mqueue"
    assert m["/sys"]["fstype"] == "sysfs" and "ro" in m["/sys"]["opts"]


def test_root_readonly(runtime):
    cfg = base_config(["sh", "-c", "touch /x 2>&1; touch /tmp/x 2>&1 && echo tmp-is-root; "
                                   "cat /proc/self/mountinfo"])
    cfg["root"]["readonly"] = True
    res = runtime.run(cfg)
    lines = res.out.splitlines()
    assert "Read-only file system" in lines[0] and "Read-only file system" in lines[1]
    assert "ro" in mountinfo("\n".join(lines[2:]))["/"]["opts"]


def test_root_path_relative_and_absolute(runtime, tmp_path):
    bundle = runtime.bundle(base_config(["cat", "/etc/hostname-marker"]))
    with open(os.path.join(bundle, "rootfs/etc/hostname-marker"), "w") as f:
        f.write("abs\n")
    cfg = base_config(["cat", "/etc/hostname-marker"])
    cfg["root"]["path"] = os.path.join(bundle, "rootfs")
    runtime.write_config(bundle, cfg)
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.out == "abs\n"


def test_bind_mounts_and_options(runtime, tmp_path):
    src = tmp_path / "vol"
    (src / "sub").mkdir(parents=True)
    (src / "data").write_text("hello\n")
    cfg = base_config(["sh", "-c", "cat /mnt/ro/data; touch /mnt/ro/x 2>&1; "
                                   "touch /mnt/rw/y && echo wrote; cat /proc/self/mountinfo"])
    cfg["mounts"] += [
        {"destination": "/mnt/ro", "type": "bind", "source": str(src),
         "options": ["bind", "ro", "nosuid", "nodev", "noexec"]},
        {"destination": "/mnt/rw", "type": "none", "source": str(src),
         "options": ["rbind", "rw", "noatime"]},
    ]
    res = runtime.run(cfg)
    lines = res.out.splitlines()
    assert lines[0] == "hello"
    assert "Read-only file system" in lines[1]
    assert lines[2] == "wrote"
    m = mountinfo("\n".join(lines[3:]))
    assert {"ro", "nosuid", "nodev", "noexec"} <= m["/mnt/ro"]["opts"]
    assert "rw" in m["/mnt/rw"]["opts"] and "noatime" in m["/mnt/rw"]["opts"]
    assert (src / "y").exists()


def test_bind_file_and_relative_source(runtime):
    bundle = runtime.bundle(base_config(["cat", "/etc/greeting"]), name="b")
    with open(os.path.join(bundle, "greeting"), "w") as f:
        f.write("relative source\n")
    cfg = base_config(["cat", "/etc/greeting"])
    cfg["mounts"].append({"destination": "/etc/greeting", "source": "greeting",
                          "options": ["bind", "ro"]})
    runtime.write_config(bundle, cfg)
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.out == "relative source\n", res


def test_tmpfs_with_data_options(runtime):
    cfg = base_config()
    cfg["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                          "options": ["nosuid", "size=1m", "mode=700", "strictatime"]})
    m = run_mountinfo(runtime, cfg)["/scratch"]
    assert m["fstype"] == "tmpfs" and "size=1024k" in m["super"] and "mode=700" in m["super"]


def test_recursive_readonly(runtime, tmp_path):
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    cfg = base_config(["sh", "-c", "touch /o/inner/f 2>&1; cat /proc/self/mountinfo"])
    cfg["mounts"] += [
        {"destination": "/o", "type": "tmpfs", "source": "tmpfs", "options": []},
        {"destination": "/o/inner", "type": "tmpfs", "source": "tmpfs", "options": []},
    ]
    # remount /o recursively read-only through a bind with rro
    cfg["mounts"].append({"destination": "/o2", "source": str(outer), "options": ["rbind", "rro"]})
    res = runtime.run(cfg)
    m = mountinfo("\n".join(res.out.splitlines()[1:]))
    assert "ro" in m["/o2"]["opts"]


@pytest.fixture
def shared_dir(tmp_path):
    """A host tmpfs marked shared, so that propagation into the container can be seen."""
    path = tmp_path / "shared"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path)], check=True)
    subprocess.run(["mount", "--make-shared", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-R", "-l", str(path)], check=False)


def peer_kinds(mount: dict) -> set[str]:
    return {o.split(":")[0] for o in mount["optional"]}


@pytest.mark.parametrize("prop,expect", [("rprivate", set()), ("rshared", {"shared", "master"}),
                                         ("rslave", {"master"})])
def test_mount_propagation_option(runtime, shared_dir, prop, expect):
    cfg = base_config()
    cfg["mounts"].append({"destination": "/p", "source": str(shared_dir),
                          "options": ["rbind", prop]})
    m = run_mountinfo(runtime, cfg)["/p"]
    assert peer_kinds(m) == expect, m


@pytest.mark.parametrize("prop,expect", [("private", set()), ("slave", {"master"}),
                                         ("shared", {"master", "shared"})])
def test_rootfs_propagation(runtime, shared_dir, prop, expect):
    """The rootfs on a shared host mount: slave receives from the host, private nothing;
    shared forms a new peer group (and, never shared with the host, stays a slave of it)."""
    import shutil
    rootfs = shared_dir / "rootfs"
    shutil.copytree(runtime.template, rootfs, symlinks=True)
    cfg = base_config()
    cfg["root"]["path"] = str(rootfs)
    cfg["linux"]["rootfsPropagation"] = prop
    m = run_mountinfo(runtime, cfg)["/"]
    assert peer_kinds(m) == expect, m


def test_slave_rootfs_sees_later_host_mounts(runtime, shared_dir):
    import shutil
    import time
    rootfs = shared_dir / "rootfs"
    shutil.copytree(runtime.template, rootfs, symlinks=True)
    cfg = base_config(["sh", "-c", "while [ ! -e /mnt/late/marker ]; do sleep 0.05; done; "
                                   "echo seen"])
    cfg["root"]["path"] = str(rootfs)
    cfg["linux"]["rootfsPropagation"] = "slave"
    bundle = runtime.bundle(cfg)
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", bundle, cid, check=True, stdin=subprocess.DEVNULL)
    (rootfs / "mnt" / "late").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(rootfs / "mnt" / "late")], check=True)
    (rootfs / "mnt" / "late" / "marker").write_text("x")
    deadline = time.monotonic() + 10
    while runtime.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline, "the host's mount never reached the container"
        time.sleep(0.05)


def test_container_mounts_do_not_reach_host(runtime, shared_dir):
    """Even on a shared host mount, what the container mounts stays in the container."""
    import shutil
    rootfs = shared_dir / "rootfs"
    shutil.copytree(runtime.template, rootfs, symlinks=True)
    def ours():     # (other suites on this machine mount and unmount elsewhere meanwhile)
        with open("/proc/self/mountinfo") as f:
            return sorted(line for line in f if str(shared_dir) in line)
    before = ours()
    cfg = base_config(["sh", "-c", "mount -t tmpfs none /tmp && echo mounted"])
    cfg["root"]["path"] = str(rootfs)
    del cfg["process"]["capabilities"]          # keep CAP_SYS_ADMIN
    res = runtime.run(cfg)
    assert res.out == "mounted\n", res
    assert ours() == before


def test_default_devices(runtime):
    res = runtime.sh("for d in null zero full random urandom tty; do "
                     "stat -c '%n %f %t:%T %a' /dev/$d; done; "
                     "for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; "
                     "head -c 4 /dev/zero | od -An -tx1; echo x > /dev/null && echo null-ok")
    lines = res.out.splitlines()
    expected = {"null": "1:3", "zero": "1:5", "full": "1:7", "random": "1:8",
                "urandom": "1:9", "tty": "5:0"}
    for line in lines[:6]:
        name, raw_mode, dev, mode = line.split()
        assert int(raw_mode, 16) & 0o170000 == 0o020000      # a character device
        major, minor = (int(x, 16) for x in dev.split(":"))
        assert f"{major}:{minor}" == expected[name.split("/")[-1]]
        assert mode == "666"
    assert lines[6:11] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1",
                           "/proc/self/fd/2", "pts/ptmx"]
    assert lines[11].split() == ["00", "00", "00", "00"]
    assert lines[12] == "null-ok"


def test_linux_devices(runtime):
    cfg = base_config(["sh", "-c", "stat -c '%F %t:%T %a %u %g' /dev/fuse /dev/mine/loop7"])
    cfg["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o620,
         "uid": 1000, "gid": 5},
        {"path": "/dev/mine/loop7", "type": "b", "major": 7, "minor": 7},
    ]
    res = runtime.run(cfg)
    lines = res.out.splitlines()
    assert lines[0] == "character special file a:e5 620 1000 5"
    assert lines[1].startswith("block special file 7:7 666 0 0")


def test_device_conflicting_existing_file_is_an_error(runtime):
    cfg = base_config(["true"])
    cfg["linux"]["devices"] = [{"path": "/etc/passwd", "type": "c", "major": 1, "minor": 3}]
    res = runtime.run(cfg)
    assert res.rc == 1 and "/etc/passwd" in res.err


def test_masked_and_readonly_paths(runtime):
    # /proc/keys (a file) and /proc/acpi (a directory) exist on this kernel; kcore does not
    cfg = base_config(["sh", "-c", "cat /proc/keys | wc -c; ls /proc/acpi | wc -l; "
                                   "stat -c %t:%T /proc/keys; "
                                   "(echo 1 > /proc/sys/vm/drop_caches) 2>&1; "
                                   "touch /proc/acpi/x 2>&1"])
    cfg["linux"]["maskedPaths"] = ["/proc/keys", "/proc/acpi", "/proc/does-not-exist"]
    del cfg["process"]["capabilities"]          # even with every capability
    res = runtime.run(cfg)
    lines = res.out.splitlines()
    assert lines[0].strip() == "0"
    assert lines[1].strip() == "0"
    assert lines[2] == "1:3"                    # /dev/null
    assert "Read-only file system" in lines[3]
    assert "Read-only file system" in lines[4]


def test_masked_paths_cannot_be_unmounted(runtime):
    cfg = base_config(["sh", "-c", "umount /proc/keys 2>&1; cat /proc/keys | wc -c"])
    cfg["linux"]["maskedPaths"] = ["/proc/keys"]
    res = runtime.run(cfg)
    assert "Operation not permitted" in res.out
    assert res.out.splitlines()[-1].strip() == "0"


def test_default_dev_pts_and_shm_when_config_has_none(runtime):
    cfg = base_config()
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] not in ("/dev/pts",
                                                                          "/dev/shm")]
    m = run_mountinfo(runtime, cfg)
    assert m["/dev/pts"]["fstype"] == "devpts"
    assert m["/dev/shm"]["fstype"] == "tmpfs"


def test_no_pivot(runtime):
    bundle = runtime.bundle(base_config(["sh", "-c", "ls /; cat /proc/self/mountinfo | wc -l"]))
    res = runtime("run", "--no-pivot", "--bundle", bundle, runtime.new_id(),
                  stdin=subprocess.DEVNULL)
    assert res.rc == 0, res
    assert "bin" in res.out.split()


def test_old_root_is_gone(runtime):
    res = runtime.sh("cat /proc/self/mountinfo")
    for line in res.out.splitlines():
        assert line.split()[4] != "/" or line.split()[3] == "/" or True
    assert not any("/tmp/pytest" in line.split()[4] for line in res.out.splitlines())


def test_tmpcopyup(runtime):
    bundle = runtime.bundle(base_config(["sh", "-c", "cat /etc/data/a /etc/data/sub/b; "
                                                     "readlink /etc/data/l; "
                                                     "stat -c %a /etc/data/sub"]))
    data = os.path.join(bundle, "rootfs/etc/data")
    os.makedirs(os.path.join(data, "sub"))
    os.chmod(os.path.join(data, "sub"), 0o750)
    with open(os.path.join(data, "a"), "w") as f:
        f.write("A\n")
    with open(os.path.join(data, "sub/b"), "w") as f:
        f.write("B\n")
    os.symlink("a", os.path.join(data, "l"))
    cfg = base_config(["sh", "-c", "cat /etc/data/a /etc/data/sub/b; readlink /etc/data/l; "
                                   "stat -c %a /etc/data/sub; grep ' /etc/data ' "
                                   "/proc/self/mountinfo | wc -l"])
    cfg["mounts"].append({"destination": "/etc/data", "type": "tmpfs", "source": "tmpfs",
                          "options": ["tmpcopyup"]})
    runtime.write_config(bundle, cfg)
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.out.split() == ["A", "B", "a", "750", "1"], res


def test_cgroup_mount_shows_own_cgroup(runtime):
    cfg = base_config(["sh", "-c", "ls /sys/fs/cgroup; cat /proc/self/mountinfo"])
    cfg["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup",
                          "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "ro"]})
    res = runtime.run(cfg)
    assert res.rc == 0, res
    assert "memory" in res.out.split() or "cgroup.procs" in res.out.split()


def test_sysctl(runtime):
    cfg = base_config(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward "
                                   "/proc/sys/kernel/shmmni"])
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    res = runtime.run(cfg)
    assert res.out.split() == ["1", "1234"], res
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() != "1234"


def test_sysctl_not_namespaced_refused(runtime):
    cfg = base_config(["true"])
    cfg["linux"]["sysctl"] = {"vm.swappiness": "10"}
    res = runtime.run(cfg)
    assert res.rc == 1 and "vm.swappiness" in res.err


def _owned_dir(tmp_path, uid):
    path = tmp_path / f"owned{uid}"
    path.mkdir()
    (path / "f").write_text("x")
    for p in (path, path / "f"):
        os.chown(p, uid, uid)
    return path


def test_idmap_mount_with_its_own_mappings(runtime, tmp_path):
    """On-disk 1000 seen as 0 inside (mapping 1000 -> 0), and what root writes lands as 1000."""
    src = _owned_dir(tmp_path, 1000)
    cfg = base_config(["sh", "-c", "stat -c '%u %g' /data/f; echo y > /data/new && echo wrote"])
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                          "options": ["bind", "idmap"],
                          "uidMappings": [{"containerID": 1000, "hostID": 0, "size": 1}],
                          "gidMappings": [{"containerID": 1000, "hostID": 0, "size": 1}]})
    res = runtime.run(cfg)
    assert res.out.split() == ["0", "0", "wrote"], res
    st = os.stat(src / "new")
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_idmap_mount_takes_the_user_namespace_mappings(runtime, tmp_path):
    """Without mappings of its own, the mount uses the container's: host root's files appear
    owned by the container's root."""
    src = _owned_dir(tmp_path, 0)
    cfg = base_config(["sh", "-c", "stat -c '%u' /data/f; touch /data/mine && echo ok"])
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["mounts"].append({"destination": "/data", "source": str(src),
                          "options": ["rbind", "ridmap"]})
    bundle = runtime.bundle(cfg)
    os.mkdir(os.path.join(bundle, "rootfs/data"))
    res = runtime("run", "--bundle", bundle, runtime.new_id(), stdin=subprocess.DEVNULL)
    assert res.out.split() == ["0", "ok"], res
    assert os.stat(src / "mine").st_uid == 0


def test_idmap_without_any_mapping_is_an_error(runtime, tmp_path):
    cfg = base_config()
    cfg["mounts"].append({"destination": "/data", "source": str(tmp_path),
                          "options": ["bind", "idmap"]})
    res = runtime.run(cfg)
    assert res.rc == 1 and "idmap" in res.err
