"""The local API's calls: ``service.Method`` -> the gRPC servicer's own method.

The servicers are the ones gRPC serves (supervisor/api/), built on the same ``services``
registry, so a call does exactly what the same gRPC call does: same checks, events, errors. Only
unary methods are offered (streams stay gRPC's). A servicer reads two things from its gRPC
context, the call's metadata (the namespace) and ``abort``; ``Context`` provides both. Each
finished call goes to the same observers as a gRPC call (supervisor/grpcobserve.py: the request
log and the Prometheus counters), under the same service and method names.
"""
from __future__ import annotations

import asyncio
import importlib
import time

from google.protobuf import message_factory

from supervisor.localapi import codec

_GEN = "supervisor.gen."
# name -> (servicer module, class, takes services?, generated module, service name)
SERVICES = {
    "containers": ("supervisor.api.containers", "Containers", True,
                   "containerd.services.containers.v1.containers_pb2", "Containers"),
    "tasks": ("supervisor.api.tasks", "Tasks", True,
              "containerd.services.tasks.v1.tasks_pb2", "Tasks"),
    "introspection": ("supervisor.api.meta", "Introspection", True,
                      "containerd.services.introspection.v1.introspection_pb2", "Introspection"),
    "version": ("supervisor.api.meta", "Version", False,
                "containerd.services.version.v1.version_pb2", "Version"),
    "networks": ("supervisor.api.networks", "Networks", True,
                 "pyrunc.network.v1.network_pb2", "Networks"),
}


class CallError(Exception):
    """A call's failure as gRPC would report it: a status code name and its details."""

    def __init__(self, code: str, details: str):
        super().__init__(details)
        self.code, self.details = code, details


class Context:
    """The part of grpc.aio.ServicerContext the servicers use."""

    def __init__(self, namespace: str):
        self._md = (("containerd-namespace", namespace),) if namespace else ()

    def invocation_metadata(self):
        return self._md

    async def abort(self, code, details: str = ""):
        raise CallError(getattr(code, "name", str(code)), details)


class Dispatcher:
    def __init__(self, services, observers=()):
        self.observers = list(observers)
        self.methods: dict[str, tuple] = {}
        for name, (mod, cls, takes, gen, svc) in SERVICES.items():
            servicer_cls = getattr(importlib.import_module(mod), cls)
            servicer = servicer_cls(services) if takes else servicer_cls()
            desc = importlib.import_module(_GEN + gen).DESCRIPTOR.services_by_name[svc]
            for m in desc.methods:
                if m.client_streaming or m.server_streaming:
                    continue
                self.methods[f"{name}.{m.name}"] = (
                    getattr(servicer, m.name), message_factory.GetMessageClass(m.input_type),
                    desc.full_name, m.name)

    async def call(self, method: str, namespace: str, request: dict,
                   timeout: float | None = None) -> dict:
        """Run one call; its reply as JSON, or CallError."""
        try:
            fn, request_cls, service, name = self.methods[method]
        except KeyError:
            raise CallError("UNIMPLEMENTED", f"unknown method {method}") from None
        try:
            req = codec.from_json(request_cls(), request or {})
        except codec.DecodeError as e:
            raise CallError("INVALID_ARGUMENT", f"{method}: {e}") from None
        started, code = time.monotonic(), "OK"
        try:
            return await self._call(fn, req, namespace, timeout, method)
        except CallError as e:
            code = e.code
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            self._observe(service, name, namespace, req, code, time.monotonic() - started)

    async def _call(self, fn, req, namespace: str, timeout, method: str) -> dict:
        try:
            reply = await asyncio.wait_for(fn(req, Context(namespace)), timeout)
        except asyncio.TimeoutError:
            raise CallError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None
        except CallError:
            raise
        except Exception as e:  # as grpc reports a servicer's unexpected exception
            from supervisor import log
            log.log("error", "local API call", exc_info=True, method=method)
            raise CallError("UNKNOWN", f"Unexpected {type(e)}: {e}") from None
        return codec.to_json(reply)

    def _observe(self, service, method, namespace, req, code: str, seconds: float) -> None:
        if not self.observers:
            return
        import grpc

        from supervisor import grpcobserve
        call = grpcobserve.Call(service, method, "unary", namespace,
                                grpcobserve._container_id(service, req),
                                grpcobserve.code_name(grpc.StatusCode.__members__.get(code, grpc.StatusCode.UNKNOWN)),
                                max(seconds, 1e-9))
        for observer in self.observers:
            try:
                observer(call)
            except Exception:  # an observer's bug must not fail the call
                from supervisor import log
                log.error("request observer failed", method=method, exc_info=True)
