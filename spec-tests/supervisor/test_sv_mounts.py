"""supervisor/mounts.py: containerd Mount lists made with mount(2), on real mounts (root).

Each test mounts under a private directory of its own and unmounts in ``finally``; what is
asserted is read back from /proc/self/mountinfo and from the mounted files."""
from __future__ import annotations

import os
import shutil
import tempfile

import grpc
import pytest

from supervisor import mounts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


@pytest.fixture
def base():
    path = tempfile.mkdtemp(prefix="h13-mnt-", dir="/tmp")
    try:
        yield path
    finally:
        for _ in range(8):  # whatever a failing test left mounted below the directory
            for target in sorted(_mounts_under(path), reverse=True):
                os.system(f"umount -l {target!r} 2>/dev/null")
        shutil.rmtree(path, ignore_errors=True)


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def _options(target: str) -> set[str]:
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    row = [r for r in rows if r[4] == target][-1]
    return set(row[5].split(","))


def _root(base: str) -> str:
    root = os.path.join(base, "rootfs")
    os.mkdir(root)
    return root


def test_bind_read_only_then_unmount(base):
    src = os.path.join(base, "src")
    os.mkdir(src)
    with open(os.path.join(src, "f"), "w") as f:
        f.write("hello")
    root = _root(base)
    ms = [{"type": "bind", "source": src, "options": ["rbind", "ro", "nosuid"]}]
    mounts.mount_all(root, ms)
    try:
        assert open(os.path.join(root, "f")).read() == "hello"
        assert {"ro", "nosuid"} <= _options(root)
        with pytest.raises(OSError):
            open(os.path.join(root, "g"), "w")
    finally:
        mounts.unmount_all(root, ms)
    assert _mounts_under(root) == []


def test_tmpfs_with_data_options_on_a_sub_target(base):
    root = _root(base)
    os.mkdir(os.path.join(root, "run"))
    ms = [{"type": "tmpfs", "source": "tmpfs", "target": "/run",
           "options": ["nodev", "size=1m", "mode=750"]}]
    mounts.mount_all(root, ms)
    try:
        target = os.path.join(root, "run")
        assert "nodev" in _options(target)
        st = os.statvfs(target)
        assert st.f_blocks * st.f_frsize == 1 << 20
        assert oct(os.stat(target).st_mode & 0o777) == oct(0o750)
    finally:
        mounts.unmount_all(root, ms)
    assert _mounts_under(root) == []


def test_overlay_with_lowerdirs_longer_than_a_page(base):
    """Sixty layers under a long common directory: the absolute lowerdir option is over 4096
    bytes (mount(2) would refuse it); relative to the common directory it fits."""
    layers = os.path.join(base, "d" * 200, "e" * 200)
    lowers = []
    for i in range(60):
        layer = os.path.join(layers, f"{i:02d}")
        os.makedirs(layer)
        with open(os.path.join(layer, f"layer{i:02d}"), "w") as f:
            f.write(str(i))
        lowers.append(layer)
    with open(os.path.join(lowers[0], "top"), "w") as f:
        f.write("from the first lowerdir")
    with open(os.path.join(lowers[-1], "top"), "w") as f:
        f.write("from the last lowerdir")
    option = "lowerdir=" + ":".join(lowers)
    assert len(option) > mounts.PAGE_SIZE
    root = _root(base)
    ms = [{"type": "overlay", "source": "overlay", "options": [option, "ro"]}]
    cwd = os.getcwd()
    mounts.mount_all(root, ms)
    try:
        assert os.getcwd() == cwd
        names = sorted(n for n in os.listdir(root) if n.startswith("layer"))
        assert names == [f"layer{i:02d}" for i in range(60)]
        assert open(os.path.join(root, "top")).read() == "from the first lowerdir"
    finally:
        mounts.unmount_all(root, ms)
    assert _mounts_under(root) == []


@pytest.mark.parametrize("target", ["..", "../../etc", "a/../../.."])
def test_target_that_climbs_out_is_refused(base, target):
    root = _root(base)
    with pytest.raises(mounts.MountError, match="leaves the bundle's rootfs"):
        mounts.mount_all(root, [{"type": "tmpfs", "source": "tmpfs", "target": target}])
    assert _mounts_under(base) == []


def test_target_through_a_symlink_out_is_refused(base):
    root = _root(base)
    outside = os.path.join(base, "outside")
    os.mkdir(outside)
    os.symlink(outside, os.path.join(root, "escape"))
    with pytest.raises(mounts.MountError, match="leaves the bundle's rootfs"):
        mounts.mount_all(root, [{"type": "tmpfs", "source": "tmpfs", "target": "escape"}])
    assert _mounts_under(base) == []


def test_a_failed_mount_undoes_the_ones_before(base):
    root = _root(base)
    os.mkdir(os.path.join(root, "a"))
    ms = [{"type": "tmpfs", "source": "tmpfs", "target": "a"},
          {"type": "bind", "source": os.path.join(base, "no-such-dir"), "target": "a"}]
    with pytest.raises(mounts.MountError, match="no-such-dir"):
        mounts.mount_all(root, ms)
    assert _mounts_under(base) == []


def test_task_with_a_rootfs_mount_leaving_the_bundle_is_refused(sv, sv_rootfs):
    """Through the API: InvalidArgument naming the target, and no task, mount or bundle left."""
    from sv_harness import assert_no_task_left, code_of, make_spec, mounts_under
    from supervisor.gen.containerd.services.containers.v1 import containers_pb2 as cpb
    from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb
    from supervisor.gen.containerd.types import mount_pb2
    client = sv.client()
    cid = sv.id("h13-mnt")
    spec = make_spec(sv, sv_rootfs, cid, ["/bin/true"])
    spec["root"] = {"path": "rootfs"}
    client.create_container(cid, spec)
    try:
        ms = [mount_pb2.Mount(type="bind", source=sv_rootfs, options=["rbind"]),
              mount_pb2.Mount(type="tmpfs", source="tmpfs", target="../../x")]
        code, msg = code_of(client.tasks.Create,
                            tpb.CreateTaskRequest(container_id=cid, rootfs=ms))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "leaves the bundle" in msg, msg
        assert not mounts_under(os.path.join(sv.state, "tasks"))
        assert_no_task_left(sv, cid)
    finally:
        client.containers.Delete(cpb.DeleteContainerRequest(id=cid))
