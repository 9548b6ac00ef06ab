"""Snapshots: containerd's Snapshots service over supervisor/snapshots/ (one store per
snapshotter: ``overlayfs`` and ``native``). Calls carrying a ``containerd-lease`` header put the
snapshots they create under that lease."""
from __future__ import annotations

import asyncio

from google.protobuf import empty_pb2

from supervisor import filters
from supervisor.api.common import lease_of, namespace, rpc, rpc_stream
from supervisor.api.content import merge_labels
from supervisor.errors import InvalidArgument
from supervisor.events import timestamp
from supervisor.gen.containerd.events import snapshot_pb2 as ev
from supervisor.gen.containerd.services.snapshots.v1 import (
    snapshots_pb2 as pb, snapshots_pb2_grpc as grpc_pb)
from supervisor.gen.containerd.types import mount_pb2
from supervisor.snapshots.store import ACTIVE, KIND_NAMES, VIEW


def mounts_pb(mounts: list[dict]) -> list:
    return [mount_pb2.Mount(type=m["type"], source=m["source"], target=m.get("target", ""),
                            options=m["options"]) for m in mounts]


def info_pb(info) -> pb.Info:
    return pb.Info(name=info.name, parent=info.parent, kind=info.kind,
                   created_at=timestamp(info.created), updated_at=timestamp(info.updated),
                   labels=info.labels)


class Snapshots(grpc_pb.SnapshotsServicer):
    def __init__(self, services):
        self.snapshotters = services.get("snapshotters")
        self.events = services.get("events")
        self.store = services.get("store")

    def _get(self, name: str):
        try:
            return self.snapshotters[name or "overlayfs"]
        except KeyError:
            raise InvalidArgument(f"snapshotter not loaded: {name}") from None

    async def _create(self, request, context, kind):
        ns = namespace(context)
        self.store.ns_ensure(ns)
        sn = self._get(request.snapshotter)
        mounts = await asyncio.to_thread(sn.create, ns, request.key, request.parent, kind,
                                         dict(request.labels), lease_of(context))
        if kind == ACTIVE:
            self.events.publish(ns, "/snapshot/prepare", ev.SnapshotPrepare(
                key=request.key, parent=request.parent, snapshotter=sn.name))
        return mounts_pb(mounts)

    @rpc
    async def Prepare(self, request, context):
        return pb.PrepareSnapshotResponse(mounts=await self._create(request, context, ACTIVE))

    @rpc
    async def View(self, request, context):
        return pb.ViewSnapshotResponse(mounts=await self._create(request, context, VIEW))

    @rpc
    async def Mounts(self, request, context):
        sn = self._get(request.snapshotter)
        return pb.MountsResponse(mounts=mounts_pb(sn.mounts(namespace(context), request.key)))

    @rpc
    async def Commit(self, request, context):
        ns = namespace(context)
        sn = self._get(request.snapshotter)
        await asyncio.to_thread(sn.commit, ns, request.name, request.key, dict(request.labels),
                                lease_of(context))
        self.events.publish(ns, "/snapshot/commit", ev.SnapshotCommit(
            key=request.key, name=request.name, snapshotter=sn.name))
        return empty_pb2.Empty()

    @rpc
    async def Remove(self, request, context):
        ns = namespace(context)
        sn = self._get(request.snapshotter)
        await asyncio.to_thread(sn.remove, ns, request.key)
        self.events.publish(ns, "/snapshot/remove", ev.SnapshotRemove(key=request.key,
                                                                      snapshotter=sn.name))
        return empty_pb2.Empty()

    @rpc
    async def Stat(self, request, context):
        sn = self._get(request.snapshotter)
        return pb.StatSnapshotResponse(info=info_pb(sn.stat(namespace(context), request.key)))

    @rpc
    async def Update(self, request, context):
        ns = namespace(context)
        sn = self._get(request.snapshotter)
        info = sn.stat(ns, request.info.name)
        labels = merge_labels(info.labels, dict(request.info.labels),
                              list(request.update_mask.paths), f"snapshot {info.name}")
        return pb.UpdateSnapshotResponse(info=info_pb(sn.set_labels(ns, info.name, labels)))

    @rpc_stream
    async def List(self, request, context):
        sn = self._get(request.snapshotter)
        flt = filters.parse(list(request.filters))
        batch = pb.ListSnapshotsResponse()
        for info in sn.list(namespace(context)):
            fields = {"name": info.name, "parent": info.parent,
                      "kind": KIND_NAMES.get(info.kind, "")}
            if flt.match(filters.mapping_adaptor(fields, info.labels)):
                batch.info.append(info_pb(info))
                if len(batch.info) >= 100:
                    yield batch
                    batch = pb.ListSnapshotsResponse()
        if batch.info:
            yield batch

    @rpc
    async def Usage(self, request, context):
        sn = self._get(request.snapshotter)
        size, inodes = await asyncio.to_thread(sn.usage, namespace(context), request.key)
        return pb.UsageResponse(size=size, inodes=inodes)

    @rpc
    async def Cleanup(self, request, context):
        await asyncio.to_thread(self._get(request.snapshotter).cleanup)
        return empty_pb2.Empty()


def register(server, services) -> None:
    grpc_pb.add_SnapshotsServicer_to_server(Snapshots(services), server)
