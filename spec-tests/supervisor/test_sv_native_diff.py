"""Diff.Diff for the native snapshotter (full copies, compared tree against tree by
supervisor/diff/compare.py): applying Diff(a, b) onto a copy of a gives b again — additions,
changes of contents, mode, owner, xattrs and symlink targets, type changes, hard links, and
deletions as whiteouts — directly and through the API with native snapshots."""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import pytest

from sv_layers import held_metadata
from supervisor.diff.apply import apply_layer
from supervisor.diff.compare import emit_changes
from supervisor.diff.make import write_tar
from supervisor.gen.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from supervisor.gen.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from supervisor.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc

WHOLE_SECOND = 1_700_000_000 * 1_000_000_000


def snapshot_of(top: str) -> dict:
    """Everything below ``top``: type, mode, owner, contents, link target, xattrs, the
    modification time (seconds: a tar keeps no more), hard-link groups."""
    out, inodes = {}, {}
    for base, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, top)
            st = os.lstat(path)
            entry = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     int(st.st_mtime), sorted((n, os.getxattr(path, n, follow_symlinks=False))
                                              for n in os.listxattr(path, follow_symlinks=False))]
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entry.append(hashlib.sha256(f.read()).hexdigest())
                if st.st_nlink > 1:
                    entry.append(inodes.setdefault(st.st_ino, rel))  # the group's first name
            elif stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(path))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry.append(st.st_rdev)
            out[rel] = entry
    return out


def write(path: str, data: bytes, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def build_left(left: str) -> None:
    write(f"{left}/etc/motd", b"hello\n")
    write(f"{left}/etc/same-size", b"aaaa")
    os.utime(f"{left}/etc/same-size", ns=(WHOLE_SECOND, WHOLE_SECOND))  # seconds only
    write(f"{left}/gone", b"deleted")
    write(f"{left}/tree/a/b/c", b"a whole tree deleted")
    write(f"{left}/was-file", b"becomes a directory")
    write(f"{left}/was-dir/x", b"becomes a file")
    write(f"{left}/chmod-me", b"x", 0o644)
    write(f"{left}/chown-me", b"x")
    write(f"{left}/keep/untouched", b"same")
    os.symlink("motd", f"{left}/etc/link")
    os.mkfifo(f"{left}/fifo")


def change_right(right: str) -> None:
    write(f"{right}/etc/motd", b"changed contents, another size\n")
    with open(f"{right}/etc/same-size", "r+b") as f:
        f.write(b"bbbb")
    os.utime(f"{right}/etc/same-size", ns=(WHOLE_SECOND, WHOLE_SECOND))
    os.unlink(f"{right}/gone")
    shutil.rmtree(f"{right}/tree")
    os.unlink(f"{right}/was-file")
    write(f"{right}/was-file/inside", b"now a directory")
    shutil.rmtree(f"{right}/was-dir")
    write(f"{right}/was-dir", b"now a file")
    os.chmod(f"{right}/chmod-me", 0o4755)  # setuid
    os.chown(f"{right}/chown-me", 1234, 5678)
    os.unlink(f"{right}/etc/link")
    os.symlink("/elsewhere", f"{right}/etc/link")
    os.setxattr(f"{right}/keep", "user.note", b"added")
    write(f"{right}/new/deep/file", b"added")
    os.link(f"{right}/new/deep/file", f"{right}/new/hardlink")
    os.mknod(f"{right}/new/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))


@pytest.fixture
def trees():
    if os.geteuid() != 0:
        pytest.skip("owners and device nodes: needs root")
    base = tempfile.mkdtemp(prefix="svt-ndiff-", dir="/tmp")
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_apply_of_the_diff_reproduces_the_right_tree(trees):
    left, right, again = (os.path.join(trees, n) for n in ("left", "right", "again"))
    os.mkdir(left)
    build_left(left)
    subprocess.run(["cp", "-a", left, right], check=True)
    subprocess.run(["cp", "-a", left, again], check=True)
    change_right(right)
    out = io.BytesIO()
    diff_id, size = write_tar(lambda tar: emit_changes(tar, left, right), out, compress=False)
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert {".wh.gone", ".wh.tree", "etc/same-size", "new/hardlink"} <= set(names)
    assert "keep/untouched" not in names and "fifo" not in names  # unchanged: not in the layer
    assert not any(n.startswith("tree/") for n in names)  # a deleted tree is one whiteout
    got, _ = apply_layer(io.BytesIO(out.getvalue()), again, "native")
    assert got == diff_id
    assert snapshot_of(again) == snapshot_of(right)
    # No change, no entries: an empty layer.
    out = io.BytesIO()
    write_tar(lambda tar: emit_changes(tar, right, right), out, compress=False)
    assert tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames() == []


def test_native_snapshots_diff_through_the_api(sv):
    """Prepare/commit native snapshots a and b (b changed from a, deletions included), Diff
    their mounts, Apply the layer onto a new snapshot of a: its tree is b's."""
    import grpc
    k = sv.id("ndiff")
    md = held_metadata(sv)
    sn = "native"
    with grpc.insecure_channel("unix://" + sv.sock) as ch:
        ss, ds = snapshots_pb2_grpc.SnapshotsStub(ch), diff_pb2_grpc.DiffStub(ch)
        cs = content_pb2_grpc.ContentStub(ch)

        def prepare(key, parent=""):
            return ss.Prepare(snapshots_pb2.PrepareSnapshotRequest(
                snapshotter=sn, key=key, parent=parent), metadata=md).mounts

        def source(mounts):
            assert len(mounts) == 1 and mounts[0].type == "bind"
            return mounts[0].source

        build_left(source(prepare(k + "-a")))
        ss.Commit(snapshots_pb2.CommitSnapshotRequest(snapshotter=sn, name=k + "-A",
                                                      key=k + "-a"), metadata=md)
        right = prepare(k + "-b", k + "-A")
        change_right(source(right))
        left = ss.View(snapshots_pb2.ViewSnapshotRequest(snapshotter=sn, key=k + "-av",
                                                         parent=k + "-A"), metadata=md).mounts
        made = ds.Diff(diff_pb2.DiffRequest(left=left, right=right, ref=k + "-layer"),
                       metadata=md).diff
        assert made.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
        again = prepare(k + "-c", k + "-A")
        applied = ds.Apply(diff_pb2.ApplyRequest(diff=made, mounts=again), metadata=md).applied
        info = cs.Info(content_pb2.InfoRequest(digest=made.digest), metadata=md).info
        assert info.labels["containerd.io/uncompressed"] == applied.digest
        assert snapshot_of(source(again)) == snapshot_of(source(right))
        # The whole of a snapshot against nothing: its every file.
        base = ds.Diff(diff_pb2.DiffRequest(left=[], right=right, media_type=(
            "application/vnd.oci.image.layer.v1.tar")), metadata=md).diff
        data = b"".join(r.data for r in cs.Read(content_pb2.ReadContentRequest(
            digest=base.digest), metadata=md))
        assert "new/deep/file" in tarfile.open(fileobj=io.BytesIO(data)).getnames()
        for key in ("-c", "-av", "-b", "-A"):
            ss.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter=sn, key=k + key),
                      metadata=md)
        for d in (made.digest, base.digest):
            cs.Delete(content_pb2.DeleteContentRequest(digest=d), metadata=md)
