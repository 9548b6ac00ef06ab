"""Watching every gRPC call: a server interceptor that times each call and tells observers.

One interceptor feeds both the request log (debug level: one line per call with the method,
namespace, container, status code and duration) and, when the metrics endpoint is on, the
Prometheus request counters and latency histogram (exporter.py). Observers are plain callables,
``observer(call: Call)``, run when a call ends (a streaming call such as Events.Subscribe when its
stream ends).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from supervisor import log
from supervisor.api.common import NS_KEY


@dataclass
class Call:
    service: str            # containerd.services.tasks.v1.Tasks
    method: str             # Create
    kind: str               # unary | server_stream (go-grpc-prometheus's grpc_type)
    namespace: str
    container_id: str = ""
    code: str = "OK"        # the status code, as gRPC-Go names it (code_name)
    seconds: float = 0.0


def _namespace(details) -> str:
    for item in details.invocation_metadata or ():
        key, value = item
        if key == NS_KEY:
            return value
    return ""


def _container_id(service: str, request) -> str:
    """The container a request is about, where it names one."""
    cid = getattr(request, "container_id", "")
    if not cid and service.endswith(".Containers"):
        cid = getattr(request, "id", "") or getattr(getattr(request, "container", None), "id", "")
    return cid if isinstance(cid, str) else ""


_GO_NAMES = {"OK": "OK", "CANCELLED": "Canceled"}


def code_name(code: grpc.StatusCode) -> str:
    """A status code as gRPC-Go spells it (NotFound, Canceled), as containerd's logs and
    metrics (go-grpc-prometheus's grpc_code label) do."""
    return _GO_NAMES.get(code.name) or "".join(p.capitalize() for p in code.name.split("_"))


def _code(context, default: str) -> str:
    try:
        code = context.code()
    except Exception:  # an older grpcio without ServicerContext.code()
        return default
    if code is None:
        return default
    return code_name(code) if isinstance(code, grpc.StatusCode) else str(code)


class _Context:
    """The call's context as the servicer sees it: ``abort`` records the call first, since
    grpc sends the status to the client inside ``abort`` (a client that scrapes the metrics
    right after an error reply must find it counted)."""

    def __init__(self, context, on_abort):
        self._context = context
        self._on_abort = on_abort

    def __getattr__(self, name):
        return getattr(self._context, name)

    async def abort(self, code, details="", trailing_metadata=()):
        self._on_abort(code_name(code) if isinstance(code, grpc.StatusCode) else "Unknown")
        await self._context.abort(code, details, trailing_metadata)


class Interceptor(grpc.aio.ServerInterceptor):
    def __init__(self, observers):
        self.observers = list(observers)

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        service, _, method = details.method.lstrip("/").rpartition("/")
        ns = _namespace(details)
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, service,
                                                            method, ns))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, service,
                                                              method, ns))
        return handler

    def _done(self, call: Call, started: float, code: str | None = None) -> None:
        if call.seconds:
            return  # already recorded (at abort)
        if code is not None:
            call.code = code
        call.seconds = max(time.monotonic() - started, 1e-9)
        for observer in self.observers:
            try:
                observer(call)
            except Exception:  # an observer's bug must not fail the call
                log.error("request observer failed", method=call.method, exc_info=True)

    def _unary(self, inner, service, method, ns):
        async def behaviour(request, context):
            call = Call(service, method, "unary", ns, _container_id(service, request))
            started = time.monotonic()
            proxy = _Context(context, lambda code: self._done(call, started, code))
            try:
                reply = await inner(request, proxy)
                call.code = _code(context, "OK")
                return reply
            except asyncio.CancelledError:
                call.code = "Canceled"
                raise
            except Exception:
                call.code = _code(context, "Unknown")
                raise
            finally:
                self._done(call, started)
        return behaviour

    def _stream(self, inner, service, method, ns):
        async def behaviour(request, context):
            call = Call(service, method, "server_stream", ns, _container_id(service, request))
            started = time.monotonic()
            proxy = _Context(context, lambda code: self._done(call, started, code))
            try:
                async for item in inner(request, proxy):
                    yield item
                call.code = _code(context, "OK")
            except (asyncio.CancelledError, GeneratorExit):
                call.code = "Canceled"
                raise
            except Exception:
                call.code = _code(context, "Unknown")
                raise
            finally:
                self._done(call, started)
        return behaviour


def log_call(call: Call) -> None:
    """The request log: debug, or warn for the codes that mean a bug (Unknown, Internal)."""
    level = "warn" if call.code in ("Unknown", "Internal") else "debug"
    log.log(level, "request", method=f"/{call.service}/{call.method}", ns=call.namespace or None,
            id=call.container_id or None, code=call.code, ms=round(call.seconds * 1e3, 3))
