"""The content store through containerd's Content API: ctr 1.6 and raw gRPC calls.

Blobs appear only complete and verified; ingests resume from the offset they reached; a ref has
one writer at a time; bad digests and sizes commit nothing; kill -9 mid-write leaves no visible
partial blob, and the same write completes after a restart.
"""
from __future__ import annotations

import hashlib
import os
import threading

import grpc
import pytest

from sv_layers import held_metadata
from sv_harness import code_of, wait_for
from supervisor.gen.containerd.services.content.v1 import content_pb2 as pb, content_pb2_grpc


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def stub(sv, namespace=None, lease=""):
    channel = grpc.insecure_channel("unix://" + sv.sock)
    if namespace is None and not lease:
        return channel, content_pb2_grpc.ContentStub(channel), held_metadata(sv)
    md = [("containerd-namespace", namespace or sv.ns)] + ([("containerd-lease", lease)] if lease else [])
    return channel, content_pb2_grpc.ContentStub(channel), md


def blob_file(sv, digest):
    return os.path.join(sv.root, "content", "blobs", "sha256", digest.split(":", 1)[1])


def write_stream(st, md, msgs):
    """Send the messages of one Write stream; the responses."""
    return list(st.Write(iter(msgs), metadata=md, timeout=60))


def test_ctr_ingest_ls_get_label_delete(sv):
    data = os.urandom(150_000).hex().encode()  # ctr() takes text
    dgst = digest_of(data)
    ref = sv.id("ref")
    sv.ctr("content", "ingest", "--expected-size", str(len(data)), "--expected-digest", dgst,
           ref, input=data.decode())
    ls = sv.ctr("content", "ls").stdout
    assert dgst in ls and "300kB" in ls
    assert sv.ctr("content", "get", dgst).stdout.encode() == data
    sv.ctr("content", "label", dgst, "pyrunc.test/x=1")
    assert "pyrunc.test/x=1" in sv.ctr("content", "ls").stdout
    assert os.path.exists(blob_file(sv, dgst))
    sv.ctr("content", "rm", dgst)
    assert dgst not in sv.ctr("content", "ls").stdout
    assert not os.path.exists(blob_file(sv, dgst))


def test_bad_digest_and_size_commit_nothing(sv):
    ch, st, md = stub(sv)
    with ch:
        data = b"x" * 5000
        wrong = digest_of(b"something else")
        ref = sv.id("bad")
        msgs = [pb.WriteContentRequest(action=pb.COMMIT, ref=ref, expected=wrong, total=len(data),
                                       data=data)]
        code, details = code_of(write_stream, st, md, msgs)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "digest" in details
        msgs = [pb.WriteContentRequest(action=pb.COMMIT, ref=ref + "s", total=len(data) + 1,
                                       data=data)]
        code, details = code_of(write_stream, st, md, msgs)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "size" in details
        st.Abort(pb.AbortRequest(ref=ref + "s"), metadata=md)
        for d in (wrong, digest_of(data)):
            assert code_of(st.Info, pb.InfoRequest(digest=d), metadata=md)[0] == \
                grpc.StatusCode.NOT_FOUND
            assert not os.path.exists(blob_file(sv, d))
        assert not [s for s in st.ListStatuses(pb.ListStatusesRequest(), metadata=md).statuses
                    if s.ref.startswith(ref)]
        # A malformed digest is refused before anything is read.
        assert code_of(st.Info, pb.InfoRequest(digest="sha256:../../etc"), metadata=md)[0] == \
            grpc.StatusCode.INVALID_ARGUMENT


def test_resume_from_offset_and_read_ranges(sv):
    ch, st, md = stub(sv)
    with ch:
        data = os.urandom(3 * 1024 * 1024 + 17)
        dgst = digest_of(data)
        ref = sv.id("resume")
        half = len(data) // 2
        out = write_stream(st, md, [
            pb.WriteContentRequest(action=pb.STAT, ref=ref, total=len(data), expected=dgst),
            pb.WriteContentRequest(action=pb.WRITE, ref=ref, offset=0, data=data[:half])])
        assert out[-1].offset == half
        status = st.Status(pb.StatusRequest(ref=ref), metadata=md).status
        assert (status.offset, status.total, status.expected) == (half, len(data), dgst)
        # Before the commit nothing is visible.
        assert code_of(st.Info, pb.InfoRequest(digest=dgst), metadata=md)[0] == \
            grpc.StatusCode.NOT_FOUND
        # A write at another offset than the one reached is refused.
        code, _ = code_of(write_stream, st, md, [
            pb.WriteContentRequest(action=pb.WRITE, ref=ref, offset=half + 5, data=b"zz")])
        assert code == grpc.StatusCode.OUT_OF_RANGE
        out = write_stream(st, md, [
            pb.WriteContentRequest(action=pb.STAT, ref=ref),
            pb.WriteContentRequest(action=pb.COMMIT, ref=ref, offset=half, data=data[half:])])
        assert out[0].offset == half and out[-1].digest == dgst
        info = st.Info(pb.InfoRequest(digest=dgst), metadata=md).info
        assert info.size == len(data)
        chunks = st.Read(pb.ReadContentRequest(digest=dgst, offset=1000, size=2_000_000),
                         metadata=md)
        assert b"".join(c.data for c in chunks) == data[1000:2_001_000]
        assert b"".join(c.data for c in st.Read(pb.ReadContentRequest(digest=dgst),
                                                metadata=md)) == data
        # The same digest again: ALREADY_EXISTS, at the first message.
        code, _ = code_of(write_stream, st, md, [
            pb.WriteContentRequest(action=pb.STAT, ref=sv.id("again"), expected=dgst)])
        assert code == grpc.StatusCode.ALREADY_EXISTS
        # Another namespace does not see it.
        ch2, st2, md2 = stub(sv, namespace=sv.ns + "o")
        with ch2:
            assert code_of(st2.Info, pb.InfoRequest(digest=dgst), metadata=md2)[0] == \
                grpc.StatusCode.NOT_FOUND
        st.Delete(pb.DeleteContentRequest(digest=dgst), metadata=md)


def test_one_writer_per_ref(sv):
    ch, st, md = stub(sv)
    with ch:
        ref = sv.id("lock")
        gate = threading.Event()
        done = threading.Event()

        def first():
            yield pb.WriteContentRequest(action=pb.STAT, ref=ref)
            gate.set()
            done.wait(60)

        stream = st.Write(first(), metadata=md, timeout=60)
        next(stream)
        assert gate.wait(60)
        try:
            code, details = code_of(write_stream, st, md, [
                pb.WriteContentRequest(action=pb.WRITE, ref=ref, data=b"intruder")])
            assert code == grpc.StatusCode.UNAVAILABLE and "locked" in details
        finally:
            done.set()
            stream.cancel()
        # Once the first writer is gone the ref is free again.
        def free():
            try:
                write_stream(st, md, [pb.WriteContentRequest(action=pb.STAT, ref=ref)])
                return True
            except grpc.RpcError:
                return False
        wait_for(free, 60, what="the ref to be unlocked")
        st.Abort(pb.AbortRequest(ref=ref), metadata=md)


def test_lease_holds_what_is_written(sv):
    ch, st, md = stub(sv, namespace=sv.ns)
    with ch:
        lid = sv.id("lease")
        sv.ctr("leases", "create", "--id", lid)
        _, _, lmd = stub(sv, lease=lid)
        data = os.urandom(1000)
        write_stream(st, lmd, [pb.WriteContentRequest(action=pb.COMMIT, ref=sv.id("l"),
                                                      data=data)])
        res = sv.ctr("leases", "ls").stdout
        assert lid in res
        from supervisor.gen.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
        lst = leases_pb2_grpc.LeasesStub(ch)
        rs = lst.ListResources(leases_pb2.ListResourcesRequest(id=lid), metadata=md).resources
        assert (digest_of(data), "content") in [(r.id, r.type) for r in rs]
        # Without its lease the blob is garbage: a synchronous delete collects it.
        sv.ctr("leases", "rm", "--sync", lid)
        assert code_of(st.Info, pb.InfoRequest(digest=digest_of(data)), metadata=md)[0] == \
            grpc.StatusCode.NOT_FOUND
        assert not os.path.exists(blob_file(sv, digest_of(data)))


def test_kill9_mid_write_leaves_no_partial_blob(sv_own):
    sv = sv_own
    data = os.urandom(2 * 1024 * 1024)
    dgst = digest_of(data)
    ref = sv.id("crash")
    ch, st, md = stub(sv)
    with ch:
        write_stream(st, md, [
            pb.WriteContentRequest(action=pb.STAT, ref=ref, total=len(data), expected=dgst),
            pb.WriteContentRequest(action=pb.WRITE, ref=ref, data=data[:1_000_000])])
    sv.kill9()
    sv.start()
    ch, st, md = stub(sv)
    with ch:
        assert code_of(st.Info, pb.InfoRequest(digest=dgst), metadata=md)[0] == \
            grpc.StatusCode.NOT_FOUND
        assert not os.path.exists(blob_file(sv, dgst))
        out = write_stream(st, md, [
            pb.WriteContentRequest(action=pb.STAT, ref=ref),
            pb.WriteContentRequest(action=pb.COMMIT, ref=ref, offset=1_000_000,
                                   data=data[1_000_000:])])
        assert out[0].offset == 1_000_000 and out[-1].digest == dgst
        with open(blob_file(sv, dgst), "rb") as f:
            assert f.read() == data


def test_full_content_root_is_a_clear_error_and_stays_consistent(sv_rootfs):
    """The daemon's root on an 8 MiB tmpfs: a 16 MiB blob fails with RESOURCE_EXHAUSTED and
    'No space left on device', nothing is visible, and after an abort a small blob commits."""
    import subprocess
    from sv_harness import Supervisor
    sv = Supervisor()
    try:
        os.makedirs(sv.root)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", sv.root],
                       check=True)
        sv.start()
        ch, st, md = stub(sv)
        with ch:
            big = os.urandom(16 << 20)
            ref = sv.id("full")
            msgs = [pb.WriteContentRequest(action=pb.WRITE, ref=ref, offset=i, data=big[i:i + (1 << 20)])
                    for i in range(0, len(big), 1 << 20)]
            msgs.append(pb.WriteContentRequest(action=pb.COMMIT, ref=ref, offset=len(big),
                                               expected=digest_of(big), total=len(big)))
            code, details = code_of(write_stream, st, md, msgs)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "No space left" in details
            assert code_of(st.Info, pb.InfoRequest(digest=digest_of(big)), metadata=md)[0] == \
                grpc.StatusCode.NOT_FOUND
            assert os.listdir(os.path.join(sv.root, "content", "blobs", "sha256")) == []
            st.Abort(pb.AbortRequest(ref=ref), metadata=md)
            small = os.urandom(1000)
            out = write_stream(st, md, [pb.WriteContentRequest(
                action=pb.COMMIT, ref=sv.id("small"), data=small, expected=digest_of(small))])
            assert out[-1].digest == digest_of(small)
            assert st.Info(pb.InfoRequest(digest=digest_of(small)), metadata=md).info.size == 1000
    finally:
        sv.cleanup()
