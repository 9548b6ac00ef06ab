"""Layer unpacking: what a layer says is reproduced (owners, modes with setuid, times, xattrs,
links, devices, whiteouts, opaque directories; tar, gzip and zstd), and hostile layers are refused
without touching anything outside the target — directly and through Diff.Apply."""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile

import grpc
import pytest

from sv_layers import Layer, digest, held_metadata, huge_pax_header
from supervisor import mounts as mountmod
from supervisor.diff.apply import LayerError, apply_layer
from supervisor.gen.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from supervisor.gen.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from supervisor.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from supervisor.gen.containerd.types import descriptor_pb2
from sv_harness import code_of


@pytest.fixture
def area():
    if os.geteuid() != 0:
        pytest.skip("unpacking keeps owners and devices: needs root")
    base = tempfile.mkdtemp(prefix="svt-unpack-", dir="/tmp")
    try:
        root = os.path.join(base, "a", "b", "root")
        os.makedirs(root)
        outside = os.path.join(base, "outside")
        os.makedirs(outside)
        with open(os.path.join(outside, "victim"), "w") as f:
            f.write("untouched")
        yield root, base
    finally:
        for target in reversed(mountmod_targets(base)):
            os.system(f"umount -l {target}")
        shutil.rmtree(base, ignore_errors=True)


def mountmod_targets(base):
    from sv_harness import mounts_under
    return mounts_under(base)


def tree(base):
    """Everything under ``base`` except the root itself, with type and content."""
    out = {}
    for d, dirs, files in os.walk(base):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            out[os.path.relpath(p, base)] = (stat.S_IFMT(st.st_mode), st.st_size)
    return out


def apply_bytes(data, root, mode="native", expected=""):
    import io
    return apply_layer(io.BytesIO(data), root, mode, expected)


@pytest.mark.parametrize("compress", ["tar_bytes", "gzip", "zstd"])
def test_layer_contents_are_reproduced(area, compress):
    root, _ = area
    layer = (Layer().dir("etc", mode=0o750, uid=3, gid=4, mtime=1_500_000_000)
             .file("etc/passwd", b"root:x:0:0::/:/bin/sh\n", uid=0, gid=0)
             .file("bin/su", b"\x7fELF", mode=0o4755)
             .file("big", os.urandom(3 << 20))
             .file("attr", b"x", xattrs={"trusted.pyrunc": "v1", "trusted.overlay.opaque": "y"})
             .symlink("etc/link", "/etc/passwd").hardlink("etc/hard", "etc/passwd")
             .chardev("dev/null", 1, 3))
    plain = Layer.tar_bytes(layer) if compress == "tar_bytes" else None
    data = plain if plain is not None else getattr(layer, compress)()
    diff_id, size = apply_bytes(data, root, expected=digest(data))
    plain = plain if plain is not None else layer.buf.getvalue()
    assert (diff_id, size) == (digest(plain), len(plain))
    st = os.stat(os.path.join(root, "etc"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)) == \
        (0o750, 3, 4, 1_500_000_000)
    assert stat.S_IMODE(os.stat(os.path.join(root, "bin/su")).st_mode) == 0o4755
    assert os.readlink(os.path.join(root, "etc/link")) == "/etc/passwd"
    assert os.stat(os.path.join(root, "etc/hard")).st_ino == \
        os.stat(os.path.join(root, "etc/passwd")).st_ino
    assert os.path.getsize(os.path.join(root, "big")) == 3 << 20
    assert os.getxattr(os.path.join(root, "attr"), "trusted.pyrunc") == b"v1"
    assert "trusted.overlay.opaque" not in os.listxattr(os.path.join(root, "attr"))
    dev = os.stat(os.path.join(root, "dev/null"))
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1


def test_native_whiteouts_and_opaque_directories(area):
    root, _ = area
    apply_bytes(Layer().file("a/x", b"1").file("a/y", b"2").file("o/old", b"3")
                .file("keep", b"k").tar_bytes(), root)
    apply_bytes(Layer().whiteout("a/x").opaque("o").file("o/new", b"4").tar_bytes(), root)
    assert sorted(os.listdir(root)) == ["a", "keep", "o"]
    assert os.listdir(os.path.join(root, "a")) == ["y"]
    assert os.listdir(os.path.join(root, "o")) == ["new"]


def test_overlay_whiteouts_hide_lower_files(area):
    root, base = area
    lower, upper, work, merged = (os.path.join(base, n) for n in ("lower", "upper", "work", "m"))
    for d in (lower, upper, work, merged):
        os.makedirs(d)
    apply_bytes(Layer().file("a/x", b"1").file("a/y", b"2").file("o/old", b"3").tar_bytes(),
                lower)
    apply_bytes(Layer().whiteout("a/x").opaque("o").file("o/new", b"4").tar_bytes(), upper,
                mode="overlay")
    assert stat.S_ISCHR(os.lstat(os.path.join(upper, "a/x")).st_mode)
    assert os.getxattr(os.path.join(upper, "o"), "trusted.overlay.opaque") == b"y"
    m = [{"type": "overlay", "source": "overlay",
          "options": [f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"]}]
    mountmod.mount_all(merged, m)
    try:
        assert os.listdir(os.path.join(merged, "a")) == ["y"]
        assert os.listdir(os.path.join(merged, "o")) == ["new"]
    finally:
        mountmod.unmount_all(merged, m)


HOSTILE = {
    "dotdot": lambda: Layer().file("../../../outside/victim", b"pwned").tar_bytes(),
    "dotdot-inside": lambda: Layer().file("x/../../outside/victim", b"pwned").tar_bytes(),
    "absolute": lambda: Layer().file("/tmp/pwned-by-layer", b"pwned").tar_bytes(),
    "symlink-then-write": lambda: Layer().symlink("evil", "../../../outside")
    .file("evil/victim", b"pwned").tar_bytes(),
    "abs-symlink-then-write": lambda: Layer().symlink("evil", "/")
    .file("evil/tmp/pwned-by-layer", b"pwned").tar_bytes(),
    "hardlink-outside": lambda: Layer().hardlink("h", "../../../outside/victim").tar_bytes(),
    "hardlink-absolute": lambda: Layer().hardlink("h", "/etc/passwd").tar_bytes(),
    "hardlink-through-symlink": lambda: Layer().symlink("evil", "../../../outside")
    .hardlink("h", "evil/victim").tar_bytes(),
    "whiteout-outside": lambda: Layer().whiteout("../../../outside/victim").tar_bytes(),
    "whiteout-through-symlink": lambda: Layer().symlink("evil", "../../../outside")
    .whiteout("evil/victim").tar_bytes(),
    "opaque-through-symlink": lambda: Layer().symlink("evil", "../../../outside")
    .opaque("evil").tar_bytes(),
    "huge-header": lambda: huge_pax_header(),
    "truncated": lambda: Layer().file("big", os.urandom(100_000)).tar_bytes()[:50_000],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("mode", ["native", "overlay"])
def test_hostile_layers_are_refused(area, name, mode):
    root, base = area
    before = tree(os.path.join(base, "outside"))
    with pytest.raises(LayerError):
        apply_bytes(HOSTILE[name](), root, mode)
    assert tree(os.path.join(base, "outside")) == before
    assert open(os.path.join(base, "outside", "victim")).read() == "untouched"
    assert not os.path.exists("/tmp/pwned-by-layer")
    assert set(os.listdir(base)) == {"a", "outside"}


def test_bad_digest_is_refused(area):
    root, _ = area
    data = Layer().file("f", b"x").gzip()
    with pytest.raises(LayerError, match="digest"):
        apply_bytes(data, root, expected=digest(b"other"))


# -- through the API --------------------------------------------------------------------------------

@contextlib.contextmanager
def stubs(sv):
    ch = grpc.insecure_channel("unix://" + sv.sock)
    try:
        yield (content_pb2_grpc.ContentStub(ch), snapshots_pb2_grpc.SnapshotsStub(ch),
               diff_pb2_grpc.DiffStub(ch), held_metadata(sv))
    finally:
        ch.close()


def put_blob(cs, md, data, ref):
    try:
        list(cs.Write(iter([content_pb2.WriteContentRequest(
            action=content_pb2.COMMIT, ref=ref, total=len(data), expected=digest(data),
            data=data)]), metadata=md))
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def test_diff_apply_through_the_api(sv):
    k = sv.id("apply")
    base_layer = Layer().file("etc/motd", b"hi").file("gone", b"x").gzip()
    top_layer = Layer().whiteout("gone").file("new", b"n").zstd()
    with stubs(sv) as (cs, ss, ds, md):
        parent = ""
        for i, data in enumerate((base_layer, top_layer)):
            put_blob(cs, md, data, f"{k}-{i}")
            ms = ss.Prepare(snapshots_pb2.PrepareSnapshotRequest(
                snapshotter="overlayfs", key=f"{k}-a{i}", parent=parent), metadata=md).mounts
            applied = ds.Apply(diff_pb2.ApplyRequest(diff=descriptor_pb2.Descriptor(
                media_type=GZ, digest=digest(data), size=len(data)), mounts=ms),
                metadata=md).applied
            assert applied.media_type == "application/vnd.oci.image.layer.v1.tar"
            ss.Commit(snapshots_pb2.CommitSnapshotRequest(snapshotter="overlayfs",
                                                          name=f"{k}-{i}", key=f"{k}-a{i}"),
                      metadata=md)
            parent = f"{k}-{i}"
        view = ss.View(snapshots_pb2.ViewSnapshotRequest(snapshotter="overlayfs", key=k + "-v",
                                                         parent=parent), metadata=md).mounts
        target = tempfile.mkdtemp(dir=sv.base)
        ms = [{"type": m.type, "source": m.source, "options": list(m.options)} for m in view]
        mountmod.mount_all(target, ms)
        try:
            assert sorted(os.listdir(target)) == ["etc", "new"]
        finally:
            mountmod.unmount_all(target, ms)
        for key in (k + "-v", f"{k}-1", f"{k}-0"):
            ss.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter="overlayfs", key=key),
                      metadata=md)


def test_hostile_layer_through_the_api(sv):
    k = sv.id("hostile")
    outside = os.path.join(sv.base, "outside-" + k)
    os.makedirs(outside)
    data = Layer().symlink("evil", outside).file("evil/victim", b"pwned").gzip()
    with stubs(sv) as (cs, ss, ds, md):
        put_blob(cs, md, data, k)
        ms = ss.Prepare(snapshots_pb2.PrepareSnapshotRequest(snapshotter="overlayfs", key=k),
                        metadata=md).mounts
        code, details = code_of(ds.Apply, diff_pb2.ApplyRequest(diff=descriptor_pb2.Descriptor(
            media_type=GZ, digest=digest(data), size=len(data)), mounts=ms), metadata=md)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "symlink" in details
        assert os.listdir(outside) == []
        code, _ = code_of(ds.Apply, diff_pb2.ApplyRequest(diff=descriptor_pb2.Descriptor(
            media_type="application/vnd.example.unknown", digest=digest(data)), mounts=ms),
            metadata=md)
        assert code == grpc.StatusCode.UNIMPLEMENTED
        ss.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter="overlayfs", key=k),
                  metadata=md)
        cs.Delete(content_pb2.DeleteContentRequest(digest=digest(data)), metadata=md)


def test_diff_makes_a_layer_that_applies_back(sv):
    """Diff.Diff between a snapshot and its parent: files added, a file deleted (an overlay
    whiteout) and an emptied directory made opaque come out as an OCI layer, which Diff.Apply
    reproduces on the parent; ctr snapshots diff prints the same gzip layer."""
    import gzip
    import io
    import subprocess
    import tarfile
    from sv_harness import CTR
    k = sv.id("mk")
    with stubs(sv) as (cs, ss, ds, md):
        def mount_pb(ms):
            return [{"type": m.type, "source": m.source, "options": list(m.options)} for m in ms]
        base = ss.Prepare(snapshots_pb2.PrepareSnapshotRequest(snapshotter="overlayfs",
                                                                key=k + "-a"), metadata=md).mounts
        target = tempfile.mkdtemp(dir=sv.base)
        mountmod.mount_all(target, mount_pb(base))
        try:
            os.makedirs(os.path.join(target, "d"))
            for name in ("gone", "d/old"):
                with open(os.path.join(target, name), "w") as f:
                    f.write(name)
        finally:
            mountmod.unmount_all(target, mount_pb(base))
        ss.Commit(snapshots_pb2.CommitSnapshotRequest(snapshotter="overlayfs", name=k + "-A",
                                                      key=k + "-a"), metadata=md)
        top = ss.Prepare(snapshots_pb2.PrepareSnapshotRequest(
            snapshotter="overlayfs", key=k + "-b", parent=k + "-A"), metadata=md).mounts
        mountmod.mount_all(target, mount_pb(top))
        try:
            os.unlink(os.path.join(target, "gone"))
            import shutil
            shutil.rmtree(os.path.join(target, "d"))
            os.makedirs(os.path.join(target, "d"))
            with open(os.path.join(target, "d", "new"), "w") as f:
                f.write("new")
            os.symlink("/nowhere", os.path.join(target, "link"))
        finally:
            mountmod.unmount_all(target, mount_pb(top))
        left = ss.View(snapshots_pb2.ViewSnapshotRequest(
            snapshotter="overlayfs", key=k + "-lv", parent=k + "-A"), metadata=md).mounts
        made = ds.Diff(diff_pb2.DiffRequest(left=left, right=top, ref=k + "-layer"),
                       metadata=md).diff
        assert made.media_type == GZ
        data = b"".join(r.data for r in cs.Read(content_pb2.ReadContentRequest(
            digest=made.digest), metadata=md))
        names = tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))).getnames()
        assert ".wh.gone" in names and "d/new" in names and "link" in names
        # Apply it back onto the parent: the same tree as the snapshot it came from.
        again = ss.Prepare(snapshots_pb2.PrepareSnapshotRequest(
            snapshotter="overlayfs", key=k + "-c", parent=k + "-A"), metadata=md).mounts
        ds.Apply(diff_pb2.ApplyRequest(diff=made, mounts=again), metadata=md)
        mountmod.mount_all(target, mount_pb(again))
        try:
            assert sorted(os.listdir(target)) == ["d", "link"]
            assert os.listdir(os.path.join(target, "d")) == ["new"]
            assert os.readlink(os.path.join(target, "link")) == "/nowhere"
        finally:
            mountmod.unmount_all(target, mount_pb(again))
        out = subprocess.run([CTR, "-a", sv.sock, "-n", md[0][1], "snapshots", "diff", k + "-b"],
                             capture_output=True, timeout=60)
        assert out.returncode == 0 and out.stdout[:2] == b"\x1f\x8b", out.stderr
        for key in ("-c", "-lv", "-b", "-A"):
            ss.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter="overlayfs", key=k + key),
                      metadata=md)
