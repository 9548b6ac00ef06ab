"""Leases: named GC roots with resources and expiry (see supervisor/metadata/leases.py)."""
from __future__ import annotations

import secrets

from google.protobuf import empty_pb2

from supervisor import filters
from supervisor.api.common import namespace, rpc
from supervisor.errors import InvalidArgument
from supervisor.events import timestamp
from supervisor.gen.containerd.services.leases.v1 import leases_pb2 as pb, leases_pb2_grpc as grpc_pb


class Leases(grpc_pb.LeasesServicer):
    def __init__(self, services):
        self.store = services.get("store")
        self.leases = services.get("leases")
        self.services = services

    @rpc
    async def Create(self, request, context):
        ns = namespace(context)
        lid = request.id or secrets.token_hex(16)
        if len(lid) > 256 or any(c.isspace() or not c.isprintable() for c in lid):
            raise InvalidArgument(f"lease id {lid!r}: must be printable, without spaces")
        self.store.ns_ensure(ns)
        created = self.leases.create(ns, lid, dict(request.labels))
        return pb.CreateResponse(lease=pb.Lease(id=lid, created_at=timestamp(created),
                                                labels=dict(request.labels)))

    @rpc
    async def Delete(self, request, context):
        self.leases.delete(namespace(context), request.id)
        await collect_garbage(self.services, request.sync)
        return empty_pb2.Empty()

    @rpc
    async def List(self, request, context):
        ns = namespace(context)
        flt = filters.parse(list(request.filters))
        out = pb.ListResponse()
        for lid, created, labels in self.leases.list(ns):
            if flt.match(filters.mapping_adaptor({"id": lid}, labels)):
                out.leases.add(id=lid, created_at=timestamp(created), labels=labels)
        return out

    @staticmethod
    def _resource(request) -> tuple[str, str]:
        if not request.resource.id or not request.resource.type:
            raise InvalidArgument("resource id and type are required")
        return request.resource.id, request.resource.type

    @rpc
    async def AddResource(self, request, context):
        self.leases.add_resource(namespace(context), request.id, *self._resource(request))
        return empty_pb2.Empty()

    @rpc
    async def DeleteResource(self, request, context):
        self.leases.delete_resource(namespace(context), request.id, *self._resource(request))
        return empty_pb2.Empty()

    @rpc
    async def ListResources(self, request, context):
        rows = self.leases.resources(namespace(context), request.id)
        return pb.ListResourcesResponse(resources=[pb.Resource(id=i, type=t) for i, t in rows])


async def collect_garbage(services, sync: bool) -> None:
    """What a deleted lease held may now be garbage: collect now (``sync``) or soon."""
    import asyncio
    try:
        gc = services.get("gc")
    except KeyError:
        return
    if sync:
        await asyncio.to_thread(gc.collect)
    else:
        gc.schedule()


def register(server, services) -> None:
    grpc_pb.add_LeasesServicer_to_server(Leases(services), server)
