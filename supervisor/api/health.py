"""grpc.health.v1.Health on the supervisor's socket, as containerd serves it.

dockerd polls ``Health/Check`` (empty service name) to learn that containerd is up, before it
dials anything else and again after it lost the connection; without the service it spins on
``Unimplemented`` and never re-subscribes to events.  The servicer is grpcio-health-checking's
own.  Its overall status (the empty name) is SERVING from the start, which is right here: the
server is started only after every servicer is registered and the task manager has reconnected
to its shims, so nothing answers a call before every service is up.
"""
from __future__ import annotations

from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio


def register(server, services) -> None:
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
