"""Snapshots through containerd's Snapshots API (overlayfs and native): chains, views, commit,
remove rules, usage, deep chains past overlay's option-string limit, ctr's snapshot commands, and
the clean-up of what a crash leaves."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile

import grpc
import pytest

from sv_layers import held_metadata
from sv_harness import code_of
from supervisor import mounts as mountmod
from supervisor.gen.containerd.services.snapshots.v1 import snapshots_pb2 as pb, snapshots_pb2_grpc


@contextlib.contextmanager
def snap_stub(sv):
    channel = grpc.insecure_channel("unix://" + sv.sock)
    try:
        yield snapshots_pb2_grpc.SnapshotsStub(channel), held_metadata(sv)
    finally:
        channel.close()


@contextlib.contextmanager
def mounted(mounts, base):
    target = tempfile.mkdtemp(dir=base)
    ms = [{"type": m.type, "source": m.source, "target": "", "options": list(m.options)}
          for m in mounts]
    mountmod.mount_all(target, ms)
    try:
        yield target
    finally:
        mountmod.unmount_all(target, ms)
        os.rmdir(target)


def snapdirs(sv, snapshotter):
    return os.listdir(os.path.join(sv.root, "snapshots", snapshotter, "snapshots"))


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_chain_view_commit_remove(sv, snapshotter):
    k = sv.id("s")
    with snap_stub(sv) as (st, md):
        before = set(snapdirs(sv, snapshotter)) if os.path.isdir(
            os.path.join(sv.root, "snapshots", snapshotter)) else set()
        base = st.Prepare(pb.PrepareSnapshotRequest(snapshotter=snapshotter, key=k + "-a"),
                          metadata=md).mounts
        assert [m.type for m in base] == ["bind"]
        with mounted(base, sv.base) as root:
            with open(os.path.join(root, "gone"), "w") as f:
                f.write("from the base")
            os.mkdir(os.path.join(root, "d"))
            with open(os.path.join(root, "d", "kept"), "w") as f:
                f.write("kept")
        st.Commit(pb.CommitSnapshotRequest(snapshotter=snapshotter, name=k + "-base",
                                           key=k + "-a"), metadata=md)
        # Committed snapshots have no mounts and cannot be written again.
        assert code_of(st.Mounts, pb.MountsRequest(snapshotter=snapshotter, key=k + "-base"),
                       metadata=md)[0] == grpc.StatusCode.FAILED_PRECONDITION
        child = st.Prepare(pb.PrepareSnapshotRequest(snapshotter=snapshotter, key=k + "-b",
                                                     parent=k + "-base"), metadata=md).mounts
        if snapshotter == "overlayfs":
            assert child[0].type == "overlay"
        with mounted(child, sv.base) as root:
            assert open(os.path.join(root, "d", "kept")).read() == "kept"
            os.unlink(os.path.join(root, "gone"))
            with open(os.path.join(root, "new"), "w") as f:
                f.write("new")
        st.Commit(pb.CommitSnapshotRequest(snapshotter=snapshotter, name=k + "-top",
                                           key=k + "-b", labels={"x": "y"}), metadata=md)
        view = st.View(pb.ViewSnapshotRequest(snapshotter=snapshotter, key=k + "-v",
                                              parent=k + "-top"), metadata=md).mounts
        with mounted(view, sv.base) as root:
            assert sorted(os.listdir(root)) == ["d", "new"]
            with pytest.raises(OSError) as exc:
                open(os.path.join(root, "x"), "w")
            assert exc.value.errno == errno.EROFS
        info = st.Stat(pb.StatSnapshotRequest(snapshotter=snapshotter, key=k + "-top"),
                       metadata=md).info
        assert (info.name, info.parent, info.kind, dict(info.labels)) == \
            (k + "-top", k + "-base", pb.COMMITTED, {"x": "y"})
        assert st.Usage(pb.UsageRequest(snapshotter=snapshotter, key=k + "-base"),
                        metadata=md).inodes >= 3
        names = [i.name for r in st.List(pb.ListSnapshotsRequest(
            snapshotter=snapshotter, filters=[f'name~="^{k}"']), metadata=md) for i in r.info]
        assert sorted(names) == sorted([k + "-base", k + "-top", k + "-v"])
        # A parent with children stays.
        code, _ = code_of(st.Remove, pb.RemoveSnapshotRequest(snapshotter=snapshotter,
                                                              key=k + "-base"), metadata=md)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        for key in ("-v", "-top", "-base"):
            st.Remove(pb.RemoveSnapshotRequest(snapshotter=snapshotter, key=k + key), metadata=md)
        assert set(snapdirs(sv, snapshotter)) == before


def test_deep_chain_past_the_option_page(sv):
    """80 layers: the lowerdir list is longer than a page, and the mount still works."""
    k = sv.id("deep")
    depth = 80
    with snap_stub(sv) as (st, md):
        parent = ""
        for i in range(depth):
            ms = st.Prepare(pb.PrepareSnapshotRequest(snapshotter="overlayfs", key=f"{k}-a{i}",
                                                      parent=parent), metadata=md).mounts
            if i in (0, depth - 1):
                with mounted(ms, sv.base) as root:
                    with open(os.path.join(root, f"layer{i}"), "w") as f:
                        f.write(str(i))
            st.Commit(pb.CommitSnapshotRequest(snapshotter="overlayfs", name=f"{k}-{i}",
                                               key=f"{k}-a{i}"), metadata=md)
            parent = f"{k}-{i}"
        ms = st.Prepare(pb.PrepareSnapshotRequest(snapshotter="overlayfs", key=k + "-top",
                                                  parent=parent), metadata=md).mounts
        assert len(",".join(ms[0].options)) > os.sysconf("SC_PAGESIZE")
        with mounted(ms, sv.base) as root:
            assert open(os.path.join(root, "layer0")).read() == "0"
            assert open(os.path.join(root, f"layer{depth - 1}")).read() == str(depth - 1)
        st.Remove(pb.RemoveSnapshotRequest(snapshotter="overlayfs", key=k + "-top"), metadata=md)
        for i in reversed(range(depth)):
            st.Remove(pb.RemoveSnapshotRequest(snapshotter="overlayfs", key=f"{k}-{i}"),
                      metadata=md)


def test_ctr_snapshot_commands(sv):
    k = sv.id("ctr")
    sv.ctr("snapshots", "prepare", k + "-a")
    sv.ctr("snapshots", "commit", k + "-base", k + "-a")
    sv.ctr("snapshots", "prepare", k + "-b", k + "-base")
    ls = sv.ctr("snapshots", "ls").stdout
    assert k + "-base" in ls and "Committed" in ls and "Active" in ls
    assert k + "-base" in sv.ctr("snapshots", "tree").stdout
    assert '"Kind": "Committed"' in sv.ctr("snapshots", "info", k + "-base").stdout
    assert k + "-base" in sv.ctr("snapshots", "usage").stdout
    assert "overlay" in sv.ctr("snapshots", "mounts", "/mnt", k + "-b").stdout
    sv.ctr("snapshots", "label", k + "-base", "a=b")
    assert '"a": "b"' in sv.ctr("snapshots", "info", k + "-base").stdout
    assert sv.ctr("snapshots", "rm", k + "-base", check=False).returncode != 0
    sv.ctr("snapshots", "rm", k + "-b")
    sv.ctr("snapshots", "rm", k + "-base")
    assert k not in sv.ctr("snapshots", "ls").stdout


def test_restart_removes_what_a_crash_left(sv_own):
    sv = sv_own
    with snap_stub(sv) as (st, md):
        st.Prepare(pb.PrepareSnapshotRequest(snapshotter="overlayfs", key="kept"), metadata=md)
    base = os.path.join(sv.root, "snapshots", "overlayfs", "snapshots")
    kept = set(os.listdir(base))
    os.makedirs(os.path.join(base, "99999", "fs", "half-made"))  # a directory without its row
    sv.kill9()
    sv.start()
    assert set(os.listdir(base)) == kept
    with snap_stub(sv) as (st, md):
        assert st.Stat(pb.StatSnapshotRequest(snapshotter="overlayfs", key="kept"),
                       metadata=md).info.kind == pb.ACTIVE
