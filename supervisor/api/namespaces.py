"""Namespaces: List, Get, Create, Update (labels), Delete (only when empty).

As in containerd, a namespace nobody created reads as an empty one: Get answers it with no
labels (not NotFound), and Update creates it; dockerd asks for the labels of ``moby`` before it
has made anything there."""
from __future__ import annotations

from google.protobuf import empty_pb2

from supervisor import filters
from supervisor.api.common import rpc
from supervisor.checks import validate_id
from supervisor.errors import InvalidArgument, NotFound
from supervisor.gen.containerd.services.namespaces.v1 import (
    namespace_pb2 as pb, namespace_pb2_grpc as grpc_pb)


class Namespaces(grpc_pb.NamespacesServicer):
    def __init__(self, services):
        self.store = services.get("store")
        self.events = services.get("events")

    def _get(self, name: str) -> pb.Namespace:
        labels = self.store.ns_get(name)
        if labels is None:
            raise NotFound(f"namespace {name}: not found")
        return pb.Namespace(name=name, labels=labels)

    @rpc
    async def Get(self, request, context):
        # containerd answers Get of a namespace it does not hold with an empty one (its store
        # reads the labels of a missing bucket as none): dockerd asks before it creates any
        labels = self.store.ns_get(request.name)
        return pb.GetNamespaceResponse(namespace=pb.Namespace(name=request.name,
                                                              labels=labels or {}))

    @rpc
    async def List(self, request, context):
        flt = filters.parse([request.filter] if request.filter else [])
        out = pb.ListNamespacesResponse()
        for name, labels in self.store.ns_list():
            if flt.match(filters.mapping_adaptor({"name": name}, labels)):
                out.namespaces.add(name=name, labels=labels)
        return out

    @rpc
    async def Create(self, request, context):
        ns = request.namespace
        validate_id(ns.name, "namespace")
        self.store.ns_create(ns.name, dict(ns.labels))
        self.events.namespace(ns.name, "/namespaces/create", "NamespaceCreate", name=ns.name,
                              labels=dict(ns.labels))
        return pb.CreateNamespaceResponse(namespace=self._get(ns.name))

    @rpc
    async def Update(self, request, context):
        ns = request.namespace
        current = self.store.ns_get(ns.name)
        if current is None:  # containerd's label writes create the namespace's bucket
            validate_id(ns.name, "namespace")
            self.store.ns_create(ns.name, {})
            current = {}
        labels = dict(current)
        paths = list(request.update_mask.paths)
        if not paths:
            labels = dict(ns.labels)
        for path in paths:
            if path == "labels":
                labels = dict(ns.labels)
            elif path.startswith("labels."):
                key = path[len("labels."):]
                if key in ns.labels:
                    labels[key] = ns.labels[key]
                else:
                    labels.pop(key, None)
            else:
                raise InvalidArgument(f"cannot update {path!r} field on namespace {ns.name!r}")
        self.store.ns_set_labels(ns.name, labels)
        self.events.namespace(ns.name, "/namespaces/update", "NamespaceUpdate", name=ns.name,
                              labels=labels)
        return pb.UpdateNamespaceResponse(namespace=self._get(ns.name))

    @rpc
    async def Delete(self, request, context):
        self.store.ns_delete(request.name)
        self.events.namespace(request.name, "/namespaces/delete", "NamespaceDelete",
                              name=request.name)
        return empty_pb2.Empty()


def register(server, services) -> None:
    grpc_pb.add_NamespacesServicer_to_server(Namespaces(services), server)
