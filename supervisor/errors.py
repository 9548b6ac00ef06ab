"""Errors of the supervisor, each bound to the gRPC status code clients rely on.

Services raise these; ``api.common.rpc`` turns them into ``context.abort(code, message)``. Messages
follow containerd's wording where clients may match on it (e.g. ``container "x" in namespace "y":
not found``) and are always one line.
"""
from __future__ import annotations

import grpc


class SupervisorError(Exception):
    code = grpc.StatusCode.UNKNOWN


class NotFound(SupervisorError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(SupervisorError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(SupervisorError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class InvalidArgument(SupervisorError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unavailable(SupervisorError):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(SupervisorError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Unauthenticated(SupervisorError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(SupervisorError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(SupervisorError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfRange(SupervisorError):
    code = grpc.StatusCode.OUT_OF_RANGE


BY_NAME = {
    "NotFound": NotFound,
    "AlreadyExists": AlreadyExists,
    "FailedPrecondition": FailedPrecondition,
    "InvalidArgument": InvalidArgument,
    "Unavailable": Unavailable,
    "Unimplemented": Unimplemented,
}


def from_shim(code: str, message: str) -> SupervisorError:
    """The exception for an error the shim reported by status name."""
    return BY_NAME.get(code, SupervisorError)(message)
