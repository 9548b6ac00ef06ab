"""Leases: bookkeeping of named holds on resources (nothing is garbage-collected here)."""
from __future__ import annotations

import secrets

from google.protobuf import empty_pb2

from supervisor import filters
from supervisor.api.common import namespace, rpc
from supervisor.errors import InvalidArgument
from supervisor.events import timestamp
from supervisor.gen.containerd.services.leases.v1 import leases_pb2 as pb, leases_pb2_grpc as grpc_pb


class Leases(grpc_pb.LeasesServicer):
    def __init__(self, daemon):
        self.store = daemon.store

    @rpc
    async def Create(self, request, context):
        ns = namespace(context)
        lid = request.id or secrets.token_hex(16)
        if len(lid) > 256 or any(c.isspace() or not c.isprintable() for c in lid):
            raise InvalidArgument(f"lease id {lid!r}: must be printable, without spaces")
        self.store.ns_ensure(ns)
        created = self.store.lease_create(ns, lid, dict(request.labels))
        return pb.CreateResponse(lease=pb.Lease(id=lid, created_at=timestamp(created),
                                                labels=dict(request.labels)))

    @rpc
    async def Delete(self, request, context):
        self.store.lease_delete(namespace(context), request.id)
        return empty_pb2.Empty()

    @rpc
    async def List(self, request, context):
        ns = namespace(context)
        flt = filters.parse(list(request.filters))
        out = pb.ListResponse()
        for lid, created, labels in self.store.lease_list(ns):
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
        self.store.lease_add_resource(namespace(context), request.id, *self._resource(request))
        return empty_pb2.Empty()

    @rpc
    async def DeleteResource(self, request, context):
        self.store.lease_delete_resource(namespace(context), request.id, *self._resource(request))
        return empty_pb2.Empty()

    @rpc
    async def ListResources(self, request, context):
        rows = self.store.lease_resources(namespace(context), request.id)
        return pb.ListResourcesResponse(resources=[pb.Resource(id=i, type=t) for i, t in rows])


def register(server, daemon) -> None:
    grpc_pb.add_LeasesServicer_to_server(Leases(daemon), server)
