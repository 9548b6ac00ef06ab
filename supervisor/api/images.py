"""Images: containerd's Images service over supervisor/images/store.py, with the /images/*
events. Delete with ``sync`` runs garbage collection before it answers (when a collector is
registered)."""
from __future__ import annotations

from google.protobuf import empty_pb2

from supervisor import filters
from supervisor.api.common import namespace, rpc
from supervisor.api.leases import collect_garbage
from supervisor.errors import InvalidArgument
from supervisor.events import timestamp
from supervisor.gen.containerd.events import image_pb2 as ev
from supervisor.gen.containerd.services.images.v1 import images_pb2 as pb, images_pb2_grpc as grpc_pb
from supervisor.gen.containerd.types import descriptor_pb2


def target_dict(desc) -> dict:
    return {"media_type": desc.media_type, "digest": desc.digest, "size": desc.size,
            "annotations": dict(desc.annotations)}


def image_pb(img) -> pb.Image:
    t = img.target
    return pb.Image(name=img.name, labels=img.labels, created_at=timestamp(img.created),
                    updated_at=timestamp(img.updated), target=descriptor_pb2.Descriptor(
                        media_type=t["media_type"], digest=t["digest"], size=t["size"],
                        annotations=t.get("annotations") or {}))


def _adaptor(img):
    fields = {"name": img.name, "target.digest": img.target["digest"],
              "target.mediatype": img.target["media_type"]}

    def adapt(path):
        key = ".".join(path)
        if path[0] == "labels" and len(path) > 1:
            value = img.labels.get(".".join(path[1:]))
            return value, value is not None
        if key in fields:
            return fields[key], True
        return None, False
    return adapt


class Images(grpc_pb.ImagesServicer):
    def __init__(self, services):
        self.images = services.get("images")
        self.events = services.get("events")
        self.store = services.get("store")
        self.services = services

    @rpc
    async def Get(self, request, context):
        return pb.GetImageResponse(image=image_pb(self.images.get(namespace(context),
                                                                  request.name)))

    @rpc
    async def List(self, request, context):
        flt = filters.parse(list(request.filters))
        return pb.ListImagesResponse(images=[image_pb(i) for i in self.images.list(
            namespace(context)) if flt.match(_adaptor(i))])

    @rpc
    async def Create(self, request, context):
        ns = namespace(context)
        self.store.ns_ensure(ns)
        img = request.image
        created = self.images.create(ns, img.name, dict(img.labels), target_dict(img.target))
        self.events.publish(ns, "/images/create", ev.ImageCreate(name=img.name,
                                                                 labels=dict(img.labels)))
        return pb.CreateImageResponse(image=image_pb(created))

    @rpc
    async def Update(self, request, context):
        ns = namespace(context)
        img = request.image
        cur = self.images.get(ns, img.name)
        labels, target = dict(cur.labels), dict(cur.target)
        paths = list(request.update_mask.paths)
        if not paths:
            labels, target = dict(img.labels), target_dict(img.target)
        for path in paths:
            if path == "labels":
                labels = dict(img.labels)
            elif path.startswith("labels."):
                key = path[len("labels."):]
                if img.labels.get(key):
                    labels[key] = img.labels[key]
                else:
                    labels.pop(key, None)
            elif path == "target":
                target = target_dict(img.target)
            elif path == "annotations":
                target["annotations"] = dict(img.target.annotations)
            else:
                raise InvalidArgument(f"cannot update {path!r} field on image {img.name!r}")
        updated = self.images.update(ns, img.name, labels, target)
        self.events.publish(ns, "/images/update", ev.ImageUpdate(name=img.name, labels=labels))
        return pb.UpdateImageResponse(image=image_pb(updated))

    @rpc
    async def Delete(self, request, context):
        ns = namespace(context)
        self.images.delete(ns, request.name)
        self.events.publish(ns, "/images/delete", ev.ImageDelete(name=request.name))
        await collect_garbage(self.services, request.sync)
        return empty_pb2.Empty()


def register(server, services) -> None:
    grpc_pb.add_ImagesServicer_to_server(Images(services), server)
