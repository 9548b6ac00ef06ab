"""A small synchronous gRPC client for the supervisor (used by pyrunc-ctl, tests and benchmarks).

Every stub call carries the namespace as ``containerd-namespace`` metadata, like containerd's own
clients, so this client works against containerd as well.
"""
from __future__ import annotations

import json

import grpc
from google.protobuf import any_pb2

import importlib

from supervisor.gen.containerd.services.containers.v1 import containers_pb2
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2

SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
RUNTIME_NAME = "io.containerd.runc.v2"


def json_any(url: str, obj) -> any_pb2.Any:
    return any_pb2.Any(type_url=url, value=json.dumps(obj).encode())


class _Bound:
    """A stub whose every method call adds the namespace metadata."""

    def __init__(self, stub, metadata):
        self._stub, self._md = stub, metadata

    def __getattr__(self, name):
        method = getattr(self._stub, name)

        def call(request, **kw):
            kw.setdefault("metadata", self._md)
            return method(request, **kw)
        return call


_SERVICES = "supervisor.gen.containerd.services."
# attribute -> (stub module, stub class, bound to the namespace?). Stubs are made on first use,
# so a command imports the generated code of the services it calls only (start-up time).
STUBS = {
    "containers": ("containers.v1.containers_pb2_grpc", "ContainersStub", True),
    "tasks": ("tasks.v1.tasks_pb2_grpc", "TasksStub", True),
    "events": ("events.v1.events_pb2_grpc", "EventsStub", True),
    "leases": ("leases.v1.leases_pb2_grpc", "LeasesStub", True),
    "namespaces": ("namespaces.v1.namespace_pb2_grpc", "NamespacesStub", True),
    "version": ("version.v1.version_pb2_grpc", "VersionStub", False),
    "introspection": ("introspection.v1.introspection_pb2_grpc", "IntrospectionStub", False),
}


class Client:
    def __init__(self, address: str, namespace: str = "default"):
        self.address = address
        self.namespace = namespace
        self.channel = grpc.insecure_channel("unix://" + address)
        self._md = [("containerd-namespace", namespace)]

    def __getattr__(self, name):
        if name not in STUBS:
            raise AttributeError(name)
        module, cls, bound = STUBS[name]
        stub = getattr(importlib.import_module(_SERVICES + module), cls)(self.channel)
        value = _Bound(stub, self._md) if bound else stub
        setattr(self, name, value)
        return value

    def close(self) -> None:
        self.channel.close()

    # -- conveniences -------------------------------------------------------------------------
    def create_container(self, cid: str, spec: dict, labels: dict | None = None,
                         runtime_binary: str = "") -> containers_pb2.Container:
        c = containers_pb2.Container(id=cid, labels=labels or {}, spec=json_any(SPEC_URL, spec))
        c.runtime.name = RUNTIME_NAME
        if runtime_binary:
            from supervisor.gen.containerd.runc.v1 import options_pb2
            opts = options_pb2.Options(binary_name=runtime_binary)
            c.runtime.options.CopyFrom(any_pb2.Any(type_url="containerd.runc.v1.Options",
                                                   value=opts.SerializeToString()))
        return self.containers.Create(containers_pb2.CreateContainerRequest(container=c)).container

    def spec_of(self, cid: str) -> dict:
        c = self.containers.Get(containers_pb2.GetContainerRequest(id=cid)).container
        return json.loads(c.spec.value)

    def subscribe(self, *filters: str):
        from supervisor.gen.containerd.services.events.v1 import events_pb2
        return self.events.Subscribe(events_pb2.SubscribeRequest(filters=list(filters)))

    def wait(self, cid: str, exec_id: str = "", timeout: float | None = None) -> int:
        return self.tasks.Wait(tasks_pb2.WaitRequest(container_id=cid, exec_id=exec_id),
                               timeout=timeout).exit_status
