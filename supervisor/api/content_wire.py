"""Content.Write's requests without copying their data: the daemon's memory while ctr pulls.

``ctr images pull`` writes every layer through Content.Write in 1 MiB messages, three layers at
once. The generated deserializer copies each message's ``data`` twice more (into the protobuf
message, then out of it as a new ``bytes``), so a pull held ~4 MiB per stream where 1 MiB is
enough. Here the request is split by hand on the protobuf wire format: ``data`` (field 6) stays
a memoryview into the received bytes, and only the small remaining fields go through the
generated parser. :class:`WriteRequest` looks like the message to the servicer (``req.data`` is
the memoryview, which ``pwrite`` and ``hashlib`` take as they are).

:func:`register` installs the servicer through the generated ``add_..._to_server`` with the
Write handler's deserializer swapped for this one.
"""
from __future__ import annotations

DATA_FIELD = 6


class WireError(ValueError):
    pass


class WriteRequest:
    """A WriteContentRequest whose ``data`` is a memoryview (everything else: the message)."""
    __slots__ = ("_msg", "data")

    def __init__(self, msg, data):
        self._msg, self.data = msg, data

    def __getattr__(self, name):
        return getattr(self._msg, name)


def _varint(buf, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def split_data(raw: bytes) -> tuple[bytes, memoryview]:
    """(the message without field 6, field 6's bytes as a view into ``raw``)."""
    view = memoryview(raw)
    rest, data, pos = [], view[0:0], 0
    while pos < len(raw):
        start = pos
        key, pos = _varint(raw, pos)
        kind = key & 7
        if kind == 0:
            _, pos = _varint(raw, pos)
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        elif kind == 2:
            size, pos = _varint(raw, pos)
            pos += size
        else:
            raise WireError(f"wire type {kind}")
        if pos > len(raw):
            raise WireError("truncated field")
        if kind == 2 and key >> 3 == DATA_FIELD:
            data = view[pos - size:pos]
        else:
            rest.append(view[start:pos])
    return b"".join(rest), data


def deserializer(message_class):
    def parse(raw: bytes) -> WriteRequest:
        rest, data = split_data(raw)
        return WriteRequest(message_class.FromString(rest), data)
    return parse


class _Swapping:
    """The server as the generated registration sees it, with one method's deserializer
    replaced in what it registers."""

    def __init__(self, server, method: str, parse):
        self.server, self.method, self.parse = server, method, parse

    def _swap(self, handlers: dict) -> dict:
        out = dict(handlers)
        out[self.method] = out[self.method]._replace(request_deserializer=self.parse)
        return out

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass  # the registered handlers below serve every method

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        import grpc
        swapped = self._swap(handlers)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service,
                                                                                    swapped),))
        self.server.add_registered_method_handlers(service, swapped)


def register(add_to_server, servicer, server, message_class) -> None:
    add_to_server(servicer, _Swapping(server, "Write", deserializer(message_class)))
