"""The daemon <-> shim wire format: length-prefixed frames over a unix stream socket.

Each frame is a 4-byte big-endian length followed by one ``marshal``-encoded dict holding only
str, int, float, bool, None, list and dict. The daemon sends requests ``{"rid": N, "op": NAME,
...}``; the shim answers each with ``{"rid": N, "ok": True, ...result}`` or ``{"rid": N, "ok":
False, "code": CODE, "error": MSG}`` where CODE is a gRPC status name (NotFound,
FailedPrecondition, ...). After a ``subscribe`` request the shim also pushes ``{"event": {...},
"seq": S}`` frames, which the daemon acknowledges with ``{"op": "ack", "seq": S}``: events stay
queued in the shim until acknowledged, so an exit is never lost when the daemon dies mid-delivery.

Why marshal and not JSON: the shim must stay small, and ``json`` (with ``re``) is among the
largest things a shim would import, while marshal is built into the interpreter. Both ends run
the same interpreter (the daemon starts shims with its own ``sys.executable``), and marshal
format 4, used here, is stable since Python 3.4, so a shim that outlives an interpreter upgrade
still understands a newer daemon. Only root can reach a shim's socket (0600 in a 0700
directory); nothing else ever feeds it frames.

This module is imported by the shim: stdlib built-ins only, cheap to import.
"""
from __future__ import annotations

import marshal

MAX_FRAME = 16 << 20
VERSION = 4


class WireError(Exception):
    """A malformed frame or a peer that went away mid-frame."""


def encode(obj: dict) -> bytes:
    try:
        data = marshal.dumps(obj, VERSION)
    except ValueError as e:
        raise WireError(f"cannot encode frame: {e}") from None
    if len(data) > MAX_FRAME:
        raise WireError(f"frame of {len(data)} bytes exceeds {MAX_FRAME}")
    return len(data).to_bytes(4, "big") + data


def decode_frames(buf: bytearray) -> list[dict]:
    """Remove and return every complete frame at the front of buf."""
    out = []
    while len(buf) >= 4:
        size = int.from_bytes(buf[:4], "big")
        if size > MAX_FRAME:
            raise WireError(f"frame of {size} bytes exceeds {MAX_FRAME}")
        if len(buf) < 4 + size:
            break
        payload = bytes(buf[4:4 + size])
        del buf[:4 + size]
        try:
            obj = marshal.loads(payload)
        except (ValueError, EOFError, TypeError) as e:
            raise WireError(f"bad frame: {e}") from None
        if not isinstance(obj, dict):
            raise WireError("bad frame: not a dict")
        out.append(obj)
    return out
