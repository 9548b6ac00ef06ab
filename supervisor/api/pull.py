"""Pull (pyrunc.services.pull.v1): the daemon pulls an image (supervisor/images/pull.py) and
streams its progress. The pull runs on a worker thread; its progress events cross to the event
loop through a queue. A client that goes away does not stop the pull half-way through a blob's
commit, but the lease is dropped either way and garbage collection takes what is unfinished."""
from __future__ import annotations

import asyncio

from supervisor import memory
from supervisor.api.common import namespace, rpc_stream
from supervisor.api.leases import collect_garbage
from supervisor.errors import (FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                               Unauthenticated)
from supervisor.gen.containerd.types import descriptor_pb2
from supervisor.gen.pyrunc.services.pull.v1 import pull_pb2 as pb, pull_pb2_grpc as grpc_pb
from supervisor.images.pull import PullError, Puller

_DONE = object()


class Pull(grpc_pb.PullServicer):
    def __init__(self, services):
        self.services = services

    @rpc_stream
    async def Pull(self, request, context):
        ns = namespace(context)
        if not request.ref:
            raise InvalidArgument("a reference to pull is required")
        snapshotter = request.snapshotter or "overlayfs"
        if snapshotter not in self.services.get("snapshotters"):
            raise InvalidArgument(f"snapshotter not loaded: {snapshotter}")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def progress(event):
            loop.call_soon_threadsafe(queue.put_nowait, event)
        try:
            puller = Puller(self.services, ns, request.ref, request.plain_http, request.platform,
                            snapshotter, not request.no_unpack, progress,
                            self.services.get("registry_hosts"))
        except PullError as e:
            raise InvalidArgument(str(e)) from None
        job = loop.run_in_executor(None, puller.run)
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, _DONE))
        while True:
            event = await queue.get()
            if event is _DONE:
                break
            yield pb.PullProgress(digest=event.get("digest", ""), offset=event.get("offset", 0),
                                  total=event.get("total", 0), done=event.get("done", False),
                                  unpacking=event.get("unpack", ""))
        await collect_garbage(self.services, False)
        memory.trim()  # the download and unpack buffers go back to the system
        try:
            image = job.result()
        except PullError as e:
            raise _STATUS.get(e.reason, FailedPrecondition)(str(e)) from None
        t = image["target"]
        yield pb.PullProgress(image=image["name"], target=descriptor_pb2.Descriptor(
            media_type=t["media_type"], digest=t["digest"], size=t["size"]))


_STATUS = {"not found": NotFound, "unauthorized": Unauthenticated,
           "forbidden": PermissionDenied}


def register(server, services) -> None:
    grpc_pb.add_PullServicer_to_server(Pull(services), server)
