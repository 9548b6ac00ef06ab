"""Diff: Apply a layer from the content store onto a snapshot's mounts (supervisor/diff/apply.py).

Apply: the mounts are the ones Snapshots.Prepare returned: a bind mount (the layer goes into its source,
whiteouts as removals) or an overlay (the layer goes into its upper directory, whiteouts as
overlay whiteouts) — nothing is mounted to apply. The answer is the uncompressed layer's
descriptor, whose digest is the diff ID clients check against the image config.

Diff: the layer between two snapshots' mounts, into the content store: an overlay snapshot's
own upper directory when the right side is the left one plus a layer (supervisor/diff/make.py),
otherwise — the native snapshotter's full copies — the two directory trees compared
(supervisor/diff/compare.py).
"""
from __future__ import annotations

import asyncio

from supervisor import memory
from supervisor.api.common import lease_of, namespace, rpc
from supervisor.diff import make
from supervisor.diff.apply import LayerError, apply_layer
from supervisor.errors import AlreadyExists, InvalidArgument, Unimplemented
from supervisor.gen.containerd.services.diff.v1 import diff_pb2 as pb, diff_pb2_grpc as grpc_pb
from supervisor.gen.containerd.types import descriptor_pb2

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def is_layer(media_type: str) -> bool:
    return (media_type.startswith(("application/vnd.oci.image.layer.",
                                   "application/vnd.docker.image.rootfs.diff.tar"))
            and "foreign" not in media_type and "nondistributable" not in media_type)


def apply_target(mounts) -> tuple[str, str]:
    """(directory, mode) a layer is written to for these mounts."""
    if len(mounts) != 1:
        raise Unimplemented(f"apply onto {len(mounts)} mounts: one bind or overlay mount only")
    m = mounts[0]
    if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
        if "ro" in m.options:
            raise InvalidArgument("apply onto a read-only mount")
        return m.source, "native"
    if m.type == "overlay":
        for opt in m.options:
            if opt.startswith("upperdir="):
                return opt[len("upperdir="):], "overlay"
        raise InvalidArgument("apply onto an overlay without an upper directory (a view)")
    raise Unimplemented(f"apply onto a {m.type!r} mount")


class Diff(grpc_pb.DiffServicer):
    def __init__(self, services):
        self.content = services.get("content")

    @rpc
    async def Apply(self, request, context):
        ns = namespace(context)
        desc = request.diff
        if not is_layer(desc.media_type):
            raise Unimplemented(f"unsupported layer media type {desc.media_type!r}")
        target, mode = apply_target(list(request.mounts))
        blob = self.content.open_blob(ns, desc.digest)
        try:
            # The blob was verified when it was committed: only the diff ID is computed here.
            diff_id, size = await asyncio.to_thread(apply_layer, blob, target, mode)
        except LayerError as e:
            raise InvalidArgument(f"apply layer {desc.digest}: {e}") from None
        finally:
            blob.close()
            memory.trim()  # what decompression and extraction used goes back
        return pb.ApplyResponse(applied=descriptor_pb2.Descriptor(
            media_type=LAYER_TAR, digest=diff_id, size=size))

    @rpc
    async def Diff(self, request, context):
        """A layer from the difference of two snapshots' mounts (make.py), written into the
        content store under ``ref`` (and the call's lease) with the diff ID as the
        ``containerd.io/uncompressed`` label."""
        import secrets
        ns = namespace(context)
        media = request.media_type or LAYER_TAR + "+gzip"
        if media not in (LAYER_TAR, LAYER_TAR + "+gzip"):
            raise Unimplemented(f"diff media type {media!r}: tar or tar+gzip only")
        as_dicts = [[{"type": m.type, "source": m.source, "options": list(m.options)}
                     for m in side] for side in (request.left, request.right)]
        emit = _layer_source(*as_dicts)
        ref = request.ref or "diff-" + secrets.token_hex(8)
        writer = self.content.writer(ns, ref, lease=lease_of(context))
        try:
            writer.truncate(0)
            diff_id, _ = await asyncio.to_thread(make.write_tar, emit, _WriterFile(writer),
                                                 media.endswith("+gzip"))
            labels = dict(request.labels, **{"containerd.io/uncompressed": diff_id})
            try:
                digest = await asyncio.to_thread(writer.commit, labels)
            except AlreadyExists:
                digest = writer.digest()
            size = self.content.info(ns, digest).size
        finally:
            writer.close()
        return pb.DiffResponse(diff=descriptor_pb2.Descriptor(media_type=media, digest=digest,
                                                              size=size))


def _layer_source(left: list[dict], right: list[dict]):
    """``emit(tar)`` writing the layer from ``left`` to ``right``; Unimplemented for mounts
    neither way handles."""
    try:
        top = make.diff_dir(left, right)
        return lambda tar: make.walk(tar, top)
    except make.DiffUnsupported as e:
        why = str(e)
    try:
        lower, upper = make.layer_dirs(left), make.layer_dirs(right)
    except make.DiffUnsupported as e:
        raise Unimplemented(f"Diff: {e}") from None
    if len(lower) != 1 or len(upper) != 1:
        raise Unimplemented(f"Diff: {why}")
    from supervisor.diff.compare import emit_changes
    return lambda tar: emit_changes(tar, lower[0], upper[0])


class _WriterFile:
    """A content-store writer as a binary file for gzip/tarfile."""

    def __init__(self, writer):
        self.writer = writer

    def write(self, data) -> int:
        self.writer.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def register(server, services) -> None:
    grpc_pb.add_DiffServicer_to_server(Diff(services), server)
