"""Content: containerd's Content service over supervisor/content/store.py.

Write is the bidirectional STAT/WRITE/COMMIT stream: the first message names the ref (and may give
the expected digest and size); every message is answered with the writer's state; COMMIT verifies
and ends the stream. A write at offset 0 to an ingest that has data restarts it; any other offset
must be the current one (OUT_OF_RANGE otherwise), which is how a client resumes. Calls carrying a
``containerd-lease`` header put what they write under that lease.
"""
from __future__ import annotations

import asyncio
import errno
import os
import sqlite3

from google.protobuf import empty_pb2

from supervisor import filters, memory
from supervisor.api.common import lease_of, namespace, rpc, rpc_stream
from supervisor.content.store import CHUNK
from supervisor.errors import InvalidArgument, OutOfRange, ResourceExhausted, SupervisorError
from supervisor.events import timestamp
from supervisor.gen.containerd.events import content_pb2 as ev
from supervisor.gen.containerd.services.content.v1 import content_pb2 as pb, content_pb2_grpc as grpc_pb


def info_pb(info) -> pb.Info:
    return pb.Info(digest=info.digest, size=info.size, created_at=timestamp(info.created),
                   updated_at=timestamp(info.updated), labels=info.labels)


def status_pb(st) -> pb.Status:
    return pb.Status(ref=st.ref, offset=st.offset, total=st.total, expected=st.expected,
                     started_at=timestamp(st.started), updated_at=timestamp(st.updated))


def merge_labels(current: dict, new: dict, paths: list[str], what: str) -> dict:
    """Labels after an Update with a field mask (``labels`` or ``labels.KEY``; none: all)."""
    labels = dict(current)
    if not paths:
        return dict(new)
    for path in paths:
        if path == "labels":
            labels = dict(new)
        elif path.startswith("labels."):
            key = path[len("labels."):]
            if key in new and new[key] != "":
                labels[key] = new[key]
            else:
                labels.pop(key, None)
        else:
            raise InvalidArgument(f"cannot update {path!r} field on {what}")
    return labels


class Content(grpc_pb.ContentServicer):
    def __init__(self, services):
        self.cs = services.get("content")
        self.events = services.get("events")
        self.store = services.get("store")

    @rpc
    async def Info(self, request, context):
        return pb.InfoResponse(info=info_pb(self.cs.info(namespace(context), request.digest)))

    @rpc
    async def Update(self, request, context):
        ns = namespace(context)
        info = self.cs.info(ns, request.info.digest)
        labels = merge_labels(info.labels, dict(request.info.labels),
                              list(request.update_mask.paths), f"content {info.digest}")
        return pb.UpdateResponse(info=info_pb(self.cs.set_labels(ns, info.digest, labels)))

    @rpc_stream
    async def List(self, request, context):
        flt = filters.parse(list(request.filters))
        batch = pb.ListContentResponse()
        for info in self.cs.list(namespace(context)):
            if flt.match(filters.mapping_adaptor({"digest": info.digest, "size": str(info.size)},
                                                 info.labels)):
                batch.info.append(info_pb(info))
                if len(batch.info) >= 100:
                    yield batch
                    batch = pb.ListContentResponse()
        if batch.info:
            yield batch

    @rpc
    async def Delete(self, request, context):
        ns = namespace(context)
        self.cs.delete(ns, request.digest)
        self.events.publish(ns, "/content/delete", ev.ContentDelete(digest=request.digest))
        return empty_pb2.Empty()

    @rpc_stream
    async def Read(self, request, context):
        """A blob from ``offset`` (``size`` bytes, or to its end). Blobs never change once
        committed, so its size bounds the reads (no empty read at the end); a small read
        (manifests, configs: what ``ctr run`` reads a dozen times) is done on the event loop,
        which costs less than the hop to a worker thread."""
        f = self.cs.open_blob(namespace(context), request.digest)
        with f:
            offset = max(0, request.offset)
            end = os.fstat(f.fileno()).st_size
            if request.size > 0:
                end = min(end, offset + request.size)
            while offset < end:
                n = min(CHUNK, end - offset)
                data = _pread(f, n, offset) if n <= INLINE_READ else \
                    await asyncio.to_thread(_pread, f, n, offset)
                if not data:
                    break
                yield pb.ReadContentResponse(offset=offset, data=data)
                offset += len(data)

    @rpc
    async def Status(self, request, context):
        return pb.StatusResponse(status=status_pb(self.cs.status(namespace(context), request.ref)))

    @rpc
    async def ListStatuses(self, request, context):
        flt = filters.parse(list(request.filters))
        out = pb.ListStatusesResponse()
        for st in self.cs.statuses(namespace(context)):
            if flt.match(filters.mapping_adaptor({"ref": st.ref})):
                out.statuses.append(status_pb(st))
        return out

    @rpc
    async def Abort(self, request, context):
        self.cs.abort(namespace(context), request.ref)
        return empty_pb2.Empty()

    async def Write(self, request_iterator, context):
        writer = None
        try:
            ns = namespace(context)
            lease = lease_of(context)
            async for req in request_iterator:
                if writer is None:
                    self.store.ns_ensure(ns)
                    writer = self.cs.writer(ns, req.ref, req.total, req.expected, lease)
                elif req.ref and req.ref != writer.ref:
                    raise InvalidArgument(f"ref {req.ref}: the stream writes {writer.ref}")
                writer.set_target(req.total, req.expected) if (req.total or req.expected) \
                    else None
                yield await self._step(writer, req)
                if req.action == pb.COMMIT:
                    return
        except SupervisorError as e:
            await context.abort(e.code, str(e))
        except (OSError, sqlite3.Error) as e:  # a full disk: the ingest stays, nothing is visible
            code = ResourceExhausted.code if _full(e) else SupervisorError.code
            await context.abort(code, f"ref {writer.ref if writer else ''}: "
                                      f"{getattr(e, 'strerror', None) or e}")
        finally:
            if writer is not None:
                writer.close()
                if writer.offset > CHUNK:
                    memory.trim()  # a layer's worth of messages went through

    async def _step(self, writer, req) -> pb.WriteContentResponse:
        digest = ""
        if req.action in (pb.WRITE, pb.COMMIT):
            if req.offset > 0 and req.offset != writer.offset:
                raise OutOfRange(f"write @{req.offset} must occur at current offset "
                                 f"{writer.offset}")
            if req.offset == 0 and writer.offset > 0:
                writer.truncate(0)
            if req.data:
                await asyncio.to_thread(writer.write, req.data)
            if req.action == pb.COMMIT:
                digest = await asyncio.to_thread(writer.commit, dict(req.labels))
        st = writer.status()
        return pb.WriteContentResponse(
            action=req.action, started_at=timestamp(st.started), updated_at=timestamp(st.updated),
            offset=st.offset, total=st.total, digest=digest or writer.digest())


def _full(e: Exception) -> bool:
    return getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "full" in str(e)


INLINE_READ = 64 << 10


def _pread(f, n: int, offset: int) -> bytes:
    return os.pread(f.fileno(), n, offset)


def register(server, services) -> None:
    from supervisor.api import content_wire
    content_wire.register(grpc_pb.add_ContentServicer_to_server, Content(services), server,
                          pb.WriteContentRequest)
