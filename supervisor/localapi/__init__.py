"""The supervisor's local API: a small protocol for pyrunc-ctl on a second unix socket.

Why: pyrunc-ctl's common commands (ps, inspect, logs, run, stop, rm...) are short-lived
processes whose time is mostly start-up, and importing grpcio and the generated protobuf code
costs more than the whole of ``docker ps``. The local API carries the same calls as the gRPC
API (containerd's Containers, Tasks, Introspection, Version and pyrunc's Networks, unary methods
only) to the very servicers that answer gRPC, so there is one implementation of the logic; only
the transport differs. Everyone else keeps using gRPC: it stays the supervisor's API.

Where: next to the gRPC socket, named after it (``local_address``): ``supervisor.sock`` ->
``supervisor.ctl.sock``, so a client that knows ``--address`` needs no lookup (the gRPC socket's
directory is the daemon's private 0700 one). Mode 0600, root only, like the gRPC socket. A live
daemon's socket is never taken over: a second daemon refuses to start, and only a stale socket
(nothing answers) is replaced. A client that finds no local socket (containerd, an older daemon)
uses gRPC.

Protocol: one call per connection, each message one line of JSON (UTF-8, ``\\n``-terminated)::

    client                                     supervisor (supervisor/localapi/server.py)
      | connect(<address>.ctl.sock)               |
      | {"m": "tasks.Wait", "ns": "default",       |
      |  "req": {...}, "timeout": 10.0}\\n  ------> | decode req with the method's input type,
      |                                            | await servicer.Wait(req, context)
      |   <------  {"ok": {...}}\\n                 | (or {"err": {"code": "NOT_FOUND",
      | close                                      |        "details": "..."}}\\n), close

``m`` is ``service.Method`` (``containers``, ``tasks``, ``introspection``, ``version``,
``networks``); ``ns`` the namespace (gRPC's ``containerd-namespace`` metadata); ``timeout``
optional, seconds (past it: ``DEADLINE_EXCEEDED``, as gRPC's deadline). A client that hangs up
mid-call cancels it. Messages are JSON objects with protobuf's field names; the reply holds every
field (defaults too, so a client reads fields as it would a protobuf message); two values need a
tag since JSON cannot tell them from a message: bytes are ``{"$b": BASE64}`` and map fields
``{"$m": {key: value}}``. Error codes are gRPC's status code names.
"""
from __future__ import annotations

import os

BYTES, MAP = "$b", "$m"
MAX_LINE = 64 << 20   # one message; a List of many containers with their specs fits easily


def local_address(address: str) -> str:
    """The local API's socket for the gRPC socket ``address`` (``x.sock`` -> ``x.ctl.sock``)."""
    base, ext = os.path.splitext(address)
    return base + ".ctl" + (ext or ".sock")
