"""Helpers shared by the services: the request's namespace, and errors as gRPC status codes."""
from __future__ import annotations

import functools

from supervisor.errors import FailedPrecondition, InvalidArgument, SupervisorError
from supervisor.checks import validate_id

NS_KEY = "containerd-namespace"
LEASE_KEY = "containerd-lease"
SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


def namespace(context) -> str:
    """The namespace of the call (``containerd-namespace`` metadata), validated."""
    for key, value in context.invocation_metadata() or ():
        if key == NS_KEY:
            try:
                validate_id(value, "namespace")
            except InvalidArgument as e:
                raise InvalidArgument(str(e)) from None
            return value
    raise FailedPrecondition("namespace is required")


def lease_of(context) -> str:
    """The lease the call works under (``containerd-lease`` metadata), or ''."""
    for key, value in context.invocation_metadata() or ():
        if key == LEASE_KEY:
            return value
    return ""


def rpc(fn):
    """Turn SupervisorError into the matching status code of a unary call."""
    @functools.wraps(fn)
    async def wrapper(self, request, context):
        try:
            return await fn(self, request, context)
        except SupervisorError as e:
            await context.abort(e.code, str(e))
    return wrapper


def rpc_stream(fn):
    """The same for a server-streaming call (an async generator)."""
    @functools.wraps(fn)
    async def wrapper(self, request, context):
        try:
            async for item in fn(self, request, context):
                yield item
        except SupervisorError as e:
            await context.abort(e.code, str(e))
    return wrapper
