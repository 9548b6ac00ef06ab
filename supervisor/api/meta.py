"""Version and Introspection: who the server is, and which plugins (services) it offers."""
from __future__ import annotations

import os
import platform


from supervisor import filters, version
from supervisor.api.common import rpc
from supervisor.gen.containerd.services.introspection.v1 import (
    introspection_pb2 as ipb, introspection_pb2_grpc as igrpc)
from supervisor.gen.containerd.services.version.v1 import version_pb2 as vpb, version_pb2_grpc as vgrpc
from supervisor.gen.containerd.types import platform_pb2

PLUGINS = [
    ("io.containerd.metadata.v1", "sqlite", []),
    ("io.containerd.runtime.v2", "task", ["io.containerd.metadata.v1"]),
    ("io.containerd.grpc.v1", "containers", ["io.containerd.metadata.v1"]),
    ("io.containerd.grpc.v1", "events", []),
    ("io.containerd.grpc.v1", "introspection", []),
    ("io.containerd.grpc.v1", "leases", ["io.containerd.metadata.v1"]),
    ("io.containerd.grpc.v1", "namespaces", ["io.containerd.metadata.v1"]),
    ("io.containerd.grpc.v1", "tasks", ["io.containerd.runtime.v2"]),
    ("io.containerd.grpc.v1", "version", []),
]
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


class Version(vgrpc.VersionServicer):
    @rpc
    async def Version(self, request, context):
        return vpb.VersionResponse(version=version.VERSION, revision=version.revision())


class Introspection(igrpc.IntrospectionServicer):
    def __init__(self, services):
        self.uuid = services.get("uuid")
        self.runtime = services.get("config").runtime
        self.root = services.get("config").root

    @rpc
    async def Server(self, request, context):
        return ipb.ServerResponse(uuid=self.uuid, pid=os.getpid(),
                                  pidns=os.stat("/proc/self/ns/pid").st_ino)

    @rpc
    async def Plugins(self, request, context):
        flt = filters.parse(list(request.filters))
        out = ipb.PluginsResponse()
        for ptype, pid, requires in PLUGINS:
            adapt = filters.mapping_adaptor({"type": ptype, "id": pid})
            if not flt.match(adapt):
                continue
            plugin = out.plugins.add(type=ptype, id=pid, requires=requires)
            if ptype == "io.containerd.metadata.v1":  # clients keep their files under it
                plugin.exports["root"] = self.root
            if ptype == "io.containerd.runtime.v2":
                plugin.platforms.append(platform_pb2.Platform(os="linux", architecture=ARCH))
                plugin.exports["runtime"] = self.runtime
        return out


def register(server, services) -> None:
    vgrpc.add_VersionServicer_to_server(Version(), server)
    igrpc.add_IntrospectionServicer_to_server(Introspection(services), server)
