"""Containers: metadata only (the spec, runtime, labels...); running is the Tasks service's job.

A container cannot be deleted while it has a task (running or stopped but not deleted): the
server refuses with FailedPrecondition, so no shim or mount is ever orphaned by a metadata delete.
"""
from __future__ import annotations

from google.protobuf import empty_pb2

from supervisor import filters
from supervisor.api.common import SPEC_URL, namespace, rpc, rpc_stream
from supervisor.checks import decode_json_any, validate_id
from supervisor.errors import FailedPrecondition, InvalidArgument, NotFound
from supervisor.events import timestamp
from supervisor.gen.containerd.services.containers.v1 import (
    containers_pb2 as pb, containers_pb2_grpc as grpc_pb)

UPDATABLE = ("labels", "image", "spec", "snapshotter", "snapshot_key", "extensions", "sandbox")


def load(store, ns: str, cid: str) -> pb.Container:
    data = store.container_get(ns, cid)
    if data is None:
        raise NotFound(f"container \"{cid}\" in namespace \"{ns}\": not found")
    c = pb.Container()
    c.ParseFromString(data)
    return c


def _adaptor(c: pb.Container):
    fields = {"id": c.id, "image": c.image, "runtime.name": c.runtime.name,
              "snapshotter": c.snapshotter, "snapshot_key": c.snapshot_key}
    return filters.mapping_adaptor(fields, dict(c.labels))


def _validate(c: pb.Container) -> None:
    validate_id(c.id, "container id")
    if not c.runtime.name:
        raise InvalidArgument("container.Runtime.Name must be set")
    if not c.spec.type_url and not c.spec.value:
        raise InvalidArgument("container.Spec must be set")
    if c.spec.type_url != SPEC_URL:
        raise InvalidArgument(f"container.Spec: unsupported type {c.spec.type_url!r}")
    spec = decode_json_any(c.spec.value, "container.Spec")
    if not isinstance(spec.get("process"), dict) or not isinstance(spec.get("root", {}), dict):
        raise InvalidArgument("container.Spec: not an OCI runtime spec (process/root)")


class Containers(grpc_pb.ContainersServicer):
    def __init__(self, services):
        self.store = services.get("store")
        self.events = services.get("events")
        self.tasks = services.get("tasks")

    @rpc
    async def Get(self, request, context):
        return pb.GetContainerResponse(container=load(self.store, namespace(context), request.id))

    def _list(self, ns: str, request) -> list[pb.Container]:
        flt = filters.parse(list(request.filters))
        out = []
        for data in self.store.container_list(ns):
            c = pb.Container()
            c.ParseFromString(data)
            if flt.match(_adaptor(c)):
                out.append(c)
        return out

    @rpc
    async def List(self, request, context):
        return pb.ListContainersResponse(containers=self._list(namespace(context), request))

    @rpc_stream
    async def ListStream(self, request, context):
        for c in self._list(namespace(context), request):
            yield pb.ListContainerMessage(container=c)

    @rpc
    async def Create(self, request, context):
        ns = namespace(context)
        c = pb.Container()
        c.CopyFrom(request.container)
        _validate(c)
        now = timestamp()
        c.created_at.CopyFrom(now)
        c.updated_at.CopyFrom(now)
        if self.store.ns_ensure(ns):
            self.events.namespace(ns, "/namespaces/create", "NamespaceCreate", name=ns)
        self.store.container_insert(ns, c.id, c.SerializeToString())
        self.events.container(ns, "/containers/create", "ContainerCreate", id=c.id, image=c.image,
                              runtime=dict(name=c.runtime.name, options=c.runtime.options))
        return pb.CreateContainerResponse(container=c)

    @rpc
    async def Update(self, request, context):
        ns = namespace(context)
        new = request.container
        if not new.id:
            raise InvalidArgument("container.ID must be set")
        c = load(self.store, ns, new.id)
        paths = list(request.update_mask.paths) or list(UPDATABLE)
        for path in paths:
            self._apply(c, new, path)
        _validate(c)
        c.updated_at.CopyFrom(timestamp())
        self.store.container_replace(ns, c.id, c.SerializeToString())
        self.events.container(ns, "/containers/update", "ContainerUpdate", id=c.id,
                              image=c.image, labels=dict(c.labels), snapshot_key=c.snapshot_key)
        return pb.UpdateContainerResponse(container=c)

    @staticmethod
    def _apply(c: pb.Container, new: pb.Container, path: str) -> None:
        head, _, key = path.partition(".")
        if head in ("labels", "extensions") and key:
            src, dst = getattr(new, head), getattr(c, head)
            if key in src:
                if head == "labels":
                    dst[key] = src[key]
                else:
                    dst[key].CopyFrom(src[key])
            else:
                dst.pop(key, None)
            return
        if head not in UPDATABLE or key:
            raise InvalidArgument(f"cannot update {path!r} field on container {c.id!r}")
        if head in ("labels", "extensions"):
            getattr(c, head).clear()
            getattr(c, head).MergeFrom(getattr(new, head))
        elif head == "spec":
            c.spec.CopyFrom(new.spec)
        else:
            setattr(c, head, getattr(new, head))

    @rpc
    async def Delete(self, request, context):
        ns = namespace(context)
        load(self.store, ns, request.id)
        if self.tasks.has_task(ns, request.id):
            raise FailedPrecondition(
                f"cannot delete container \"{request.id}\": it has a task; delete the task first")
        self.store.container_delete(ns, request.id)
        self.events.container(ns, "/containers/delete", "ContainerDelete", id=request.id)
        return empty_pb2.Empty()


def register(server, services) -> None:
    grpc_pb.add_ContainersServicer_to_server(Containers(services), server)
