"""pyrunc-ctl's client for the supervisor's local API (protocol: supervisor/localapi/__init__.py).

It stands in for supervisor.client.Client in the common commands so they never import grpcio
or generated protobuf code (start-up time: grpc alone costs more than ``docker ps``). It offers
what ctl's code uses of the gRPC client: stubs (``client.containers.Get(request)``), request
factories (``MESSAGES.GetContainerRequest(id=...)``, in place of the ``_pb2`` modules), the
conveniences (``create_container``, ``wait``, ``spec_of``), and errors that behave as
``grpc.RpcError`` (``code()``, ``details()``; ctlbase.grpc catches both). Replies are ``Msg``
objects holding every field of the protobuf message, so code reading ``c.labels`` or
``task.exited_at.seconds`` works on either client. Services the local API does not carry
(images, snapshots, events...) go over gRPC through ``channel``, opened on first use.
"""
from __future__ import annotations

import _socket  # the C module: socket.py's wrappers cost ~2 ms of start-up
import binascii
import json
import os
import sys

from supervisor.localapi import BYTES, MAP, local_address

SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
RUNTIME_NAME = "io.containerd.runc.v2"
SERVICES = ("containers", "tasks", "introspection", "version", "networks")


class Code:
    """A gRPC status code by name; equal to grpc.StatusCode's member of the same name."""

    def __init__(self, name: str):
        self.name = name

    def __eq__(self, other):
        return getattr(other, "name", other) == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"StatusCode.{self.name}"


class StatusCodes:
    """``grpc.StatusCode`` for code that compares against it without importing grpc."""

    def __getattr__(self, name: str) -> Code:
        if not name.isupper():
            raise AttributeError(name)
        return Code(name)


class LocalRpcError(Exception):
    """A failed local call, read as grpc.RpcError is: ``code()`` and ``details()``."""

    def __init__(self, code: str, details: str):
        super().__init__(details)
        self._code, self._details = Code(code), details

    def code(self) -> Code:
        return self._code

    def details(self) -> str:
        return self._details


class Msg:
    """A message without a schema: fields as attributes (a reply has all of them)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __repr__(self):
        return f"Msg({self.__dict__!r})"


class _Messages:
    """Request factories: ``MESSAGES.KillRequest(container_id=..., signal=9)``."""

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return Msg


MESSAGES = _Messages()


def encode(value):
    if isinstance(value, Msg):
        return {k: encode(v) for k, v in value.__dict__.items()}
    if isinstance(value, dict):
        return {MAP: {k: encode(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {BYTES: binascii.b2a_base64(value, newline=False).decode()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "ListFields"):
        return _encode_protobuf(value)
    raise TypeError(f"local API: cannot send {type(value).__name__}")


def _encode_protobuf(msg) -> dict:
    """A protobuf message some code built (run IMAGE's mounts, which came over gRPC): its set
    fields, as a Msg would give them."""
    out = {}
    for field, value in msg.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = {MAP: {k: encode(v) for k, v in value.items()}}
        elif field.is_repeated:
            out[field.name] = [encode(v) for v in value]
        else:
            out[field.name] = encode(value)
    return out


def decode(value):
    if isinstance(value, dict):
        if BYTES in value:
            return binascii.a2b_base64(value[BYTES])
        if MAP in value:
            return {k: decode(v) for k, v in value[MAP].items()}
        return Msg(**{k: decode(v) for k, v in value.items()})
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def _read_line(sock) -> bytes:
    """The reply: bytes up to and including the newline (short if the server hung up)."""
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


class _Stub:
    def __init__(self, client: "LocalClient", service: str):
        self._client, self._service = client, service

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)

        def call(request, timeout: float | None = None, metadata=None):
            return self._client.call(f"{self._service}.{method}", request, timeout)
        return call


class LocalClient:
    local = True

    def __init__(self, path: str, address: str, namespace: str = "default"):
        self.path, self.address, self.namespace = path, address, namespace
        for name in SERVICES:
            setattr(self, name, _Stub(self, name))

    def call(self, method: str, request, timeout: float | None = None):
        msg = {"m": method, "ns": self.namespace, "req": encode(request)}
        if timeout is not None:
            msg["timeout"] = timeout
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            try:
                sock.connect(self.path)
            except OSError as e:
                raise LocalRpcError("UNAVAILABLE", f"connect {self.path}: {e.strerror}") from None
            sock.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
            line = _read_line(sock)
        finally:
            sock.close()
        if not line.endswith(b"\n"):
            raise LocalRpcError("UNAVAILABLE", "the supervisor closed the connection")
        reply = json.loads(line)
        if "err" in reply:
            raise LocalRpcError(reply["err"].get("code", "UNKNOWN"), reply["err"].get("details",
                                                                                     ""))
        return decode(reply["ok"])

    # -- what the local API does not carry: gRPC, opened on first use -----------------------------
    def grpc_client(self):
        if "_grpc" not in self.__dict__:
            from supervisor.client import Client
            self._grpc = Client(self.address, self.namespace)
        return self._grpc

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.grpc_client(), name)

    def close(self) -> None:
        if "_grpc" in self.__dict__:
            self._grpc.close()

    # -- supervisor.client.Client's conveniences ----------------------------------------------
    def create_container(self, cid: str, spec: dict, labels: dict | None = None,
                         runtime_binary: str = "") -> Msg:
        runtime = Msg(name=RUNTIME_NAME)
        if runtime_binary:
            runtime.options = Msg(type_url="containerd.runc.v1.Options",
                                  value=runc_options(runtime_binary))
        c = Msg(id=cid, labels=labels or {}, runtime=runtime,
                spec=Msg(type_url=SPEC_URL, value=json.dumps(spec).encode()))
        return self.containers.Create(Msg(container=c)).container

    def spec_of(self, cid: str) -> dict:
        return json.loads(self.containers.Get(Msg(id=cid)).container.spec.value)

    def wait(self, cid: str, exec_id: str = "", timeout: float | None = None) -> int:
        return self.tasks.Wait(Msg(container_id=cid, exec_id=exec_id),
                               timeout=timeout).exit_status


def runc_options(binary_name: str) -> bytes:
    """containerd.runc.v1.Options with only binary_name (field 6, a string) set, encoded as
    protobuf does: the field's key byte, its length as a varint, the UTF-8 bytes."""
    data = binary_name.encode()
    n, length = len(data), bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([6 << 3 | 2]) + bytes(length) + data


def connect(address: str, namespace: str) -> LocalClient | None:
    """A local API client if the supervisor at ``address`` offers one, else None (use gRPC).
    With ``$PYRUNC_CTL_FORBID_IMPORTS`` set (tests), importing any module it lists from here on
    fails: the rule that these commands never load grpc, enforced."""
    path = local_address(address)
    if not os.path.exists(path):
        return None
    forbid = os.environ.get("PYRUNC_CTL_FORBID_IMPORTS")
    if forbid:
        _forbid_imports(tuple(filter(None, forbid.split(","))))
    return LocalClient(path, address, namespace)


class ForbiddenImport(ImportError):
    pass


class _Forbid:
    """A sys.meta_path finder that refuses the modules named (and their submodules)."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def _hit(self, name: str) -> bool:
        return any(name == n or name.startswith(n + ".") for n in self.names)

    def find_spec(self, name, path=None, target=None):
        if self._hit(name):
            raise ForbiddenImport(f"pyrunc-ctl on the local API imported {name} "
                                  "($PYRUNC_CTL_FORBID_IMPORTS)")
        return None


def _forbid_imports(names: tuple[str, ...]) -> None:
    finder = _Forbid(names)
    loaded = sorted(m for m in sys.modules if finder._hit(m))
    if loaded:
        raise ForbiddenImport(f"pyrunc-ctl: {', '.join(loaded)} already imported "
                              "($PYRUNC_CTL_FORBID_IMPORTS)")
    sys.meta_path.insert(0, finder)
