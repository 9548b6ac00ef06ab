"""The containers' DNS resolver: docker's embedded DNS, run by the supervisor.

A container on a user-defined network gets ``nameserver 127.0.0.11`` in its /etc/resolv.conf (the
address docker's embedded DNS uses, so images and habits made for docker work unchanged). The
supervisor binds a UDP and a TCP socket on 127.0.0.11:53 *inside the container's network
namespace* (a thread of the daemon enters it, makes the sockets and leaves: netns.run_inside) and
serves them from its event loop; no process runs per container, and no rule is needed (127/8 is
the loopback's, in every namespace). The sockets are made before the container's first process
runs, so nothing in the container can take the address first.

- Names the supervisor knows are answered from its records: the ID, host name and aliases (a
  docker name) of every container of the same containerd namespace on the same network, A and
  AAAA, and PTR for their addresses. A name known without an address of the asked type gets
  NOERROR with no record. Containers of other networks are unknown here.
- Anything else is forwarded to the container's upstreams: its ``--dns`` servers, else the
  host's resolvers (/etc/resolv.conf without loopback ones, which mean nothing but the host's
  own loopback), over the protocol the query came by, from the daemon's namespace, each from a
  fresh socket (a random source port), the upstreams in order, ``TIMEOUT`` seconds each. No
  upstream or none answering: SERVFAIL.

Bounds against a hostile container (each container has its own, so one cannot starve another):
at most ``MAX_FORWARDS`` (64) forwards in flight — a query beyond gets SERVFAIL at once, without
a socket or a task; at most ``MAX_TCP`` (16) TCP clients — a connection beyond is closed at once;
a TCP client idle ``TCP_IDLE`` seconds is closed; a message is at most 64 KiB by its framing.
Local answers cost no state at all.

The resolver lives as long as the container's network: ``close`` (at detach) closes its sockets
and cancels its forwards, so no socket keeps the namespace alive; after a ``kill -9`` of the
daemon the sockets die with it, and the next daemon binds them again for the containers that
survived.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct

from supervisor.network import dnsmsg

ADDRESS = "127.0.0.11"
PORT = 53
MAX_FORWARDS = 64
MAX_TCP = 16
TIMEOUT = 2.0       # per upstream
TCP_IDLE = 10.0
WRITE_LIMIT = 256 * 1024   # replies queued to a TCP client that does not read them

log = logging.getLogger("pyrunc.network.dns")


def _sockets() -> tuple[socket.socket, socket.socket]:
    """(udp, tcp) bound on 127.0.0.11:53 in the calling thread's namespace."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        udp.bind((ADDRESS, PORT))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((ADDRESS, PORT))
        tcp.listen(MAX_TCP)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    udp.setblocking(False)
    tcp.setblocking(False)
    return udp, tcp


class Resolver:
    """One container's resolver. ``names(question_name)`` -> the addresses it knows for the name
    (None: unknown); ``pointer(address)`` -> names for a PTR query (None: unknown)."""

    def __init__(self, names, pointer, upstreams: list[str]):
        self.names, self.pointer = names, pointer
        self.upstreams = list(upstreams)
        self.forwards = 0          # in flight
        self.tcp_clients = 0
        self.tasks: set[asyncio.Task] = set()
        self.udp_transport = None
        self.server = None
        self.closed = False

    async def start(self, netns_path: str) -> None:
        from supervisor.network import netns
        udp, tcp = await asyncio.to_thread(netns.run_inside, netns_path, _sockets)
        loop = asyncio.get_running_loop()
        try:
            self.udp_transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), sock=udp)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        try:
            self.server = await loop.create_server(lambda: _Tcp(self), sock=tcp, backlog=MAX_TCP)
        except BaseException:
            tcp.close()
            self.close()
            raise

    def close(self) -> None:
        self.closed = True
        if self.udp_transport is not None:
            self.udp_transport.close()
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()

    # -- answering --------------------------------------------------------------------------------
    def local(self, data: bytes) -> bytes | None:
        """The reply to a query answered here, or None: to be forwarded."""
        try:
            q = dnsmsg.parse(data)
        except ValueError:
            return dnsmsg.error(data, dnsmsg.FORMERR)
        if q.qtype == dnsmsg.PTR:
            names = self.pointer(q.name)
            return None if names is None else dnsmsg.answer(data, q, [], names)
        addresses = self.names(q.name)
        return None if addresses is None else dnsmsg.answer(data, q, addresses)

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def forward(self, data: bytes, tcp: bool) -> bytes:
        """The upstreams' reply, or SERVFAIL. The caller has counted it in ``forwards``."""
        try:
            qid = struct.unpack_from("!H", data)[0]
            for server in self.upstreams:
                try:
                    reply = await asyncio.wait_for(
                        (_ask_tcp if tcp else _ask_udp)(server, data, qid), TIMEOUT)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                    continue
                if reply:
                    return reply
            return dnsmsg.error(data, dnsmsg.SERVFAIL, _question(data))
        finally:
            self.forwards -= 1

    def admit(self) -> bool:
        """Count one more forward, unless the bound is reached."""
        if self.forwards >= MAX_FORWARDS:
            return False
        self.forwards += 1
        return True


def _question(data: bytes):
    try:
        return dnsmsg.parse(data)
    except ValueError:
        return None


def _family(server: str) -> int:
    return socket.AF_INET6 if ":" in server else socket.AF_INET


async def _ask_udp(server: str, data: bytes, qid: int) -> bytes:
    loop = asyncio.get_running_loop()
    s = socket.socket(_family(server), socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        s.setblocking(False)
        await loop.sock_connect(s, (server, PORT))
        await loop.sock_sendall(s, data)
        while True:
            reply = await loop.sock_recv(s, 65535)
            if dnsmsg.matches(reply, qid):
                return reply
    finally:
        s.close()


async def _ask_tcp(server: str, data: bytes, qid: int) -> bytes:
    reader, writer = await asyncio.open_connection(server, PORT)
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        reply = await reader.readexactly(size)
        return reply if dnsmsg.matches(reply, qid) else b""
    finally:
        writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver):
        self.r = resolver

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = self.r.local(data)
        if reply is not None:
            self.transport.sendto(reply, addr)
        elif not self.r.admit():
            self.transport.sendto(dnsmsg.error(data, dnsmsg.SERVFAIL, _question(data)), addr)
        else:
            self.r.spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, addr) -> None:
        reply = await self.r.forward(data, tcp=False)
        if not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc) -> None:  # an ICMP error for a reply: nothing to do
        pass


class _Tcp(asyncio.Protocol):
    """One TCP client: length-prefixed queries, answered in order."""

    def __init__(self, resolver: Resolver):
        self.r = resolver
        self.counted = False
        self.buffer = b""
        self.busy = False
        self.idle = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.r.tcp_clients >= MAX_TCP or self.r.closed:
            transport.abort()
            return
        self.r.tcp_clients += 1
        self.counted = True
        self._arm()

    def _arm(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(TCP_IDLE, self.transport.abort)

    def connection_lost(self, exc) -> None:
        if self.counted:
            self.r.tcp_clients -= 1
            self.counted = False
        if self.idle is not None:
            self.idle.cancel()

    def data_received(self, data: bytes) -> None:
        if not self.counted:
            return
        self.buffer += data
        self._arm()
        self._next()

    def _next(self) -> None:
        """Answer the complete queries buffered, in order, up to one that is forwarded (the
        connection stops reading until its reply is sent)."""
        while not self.busy and len(self.buffer) >= 2:
            size = struct.unpack_from("!H", self.buffer)[0]
            if len(self.buffer) < 2 + size:
                return
            query, self.buffer = self.buffer[2:2 + size], self.buffer[2 + size:]
            reply = self.r.local(query)
            if reply is None and not self.r.admit():
                reply = dnsmsg.error(query, dnsmsg.SERVFAIL, _question(query))
            if reply is not None:
                self._send(reply)
                continue
            self.busy = True
            self.transport.pause_reading()
            self.r.spawn(self._forward(query))

    async def _forward(self, query: bytes) -> None:
        reply = await self.r.forward(query, tcp=True)
        self.busy = False
        if not self.transport.is_closing():
            self._send(reply)
            self.transport.resume_reading()
            self._next()

    def _send(self, reply: bytes) -> None:
        """A client that does not read its replies is dropped (its queued replies bounded)."""
        self.transport.write(struct.pack("!H", len(reply)) + reply)
        if self.transport.get_write_buffer_size() > WRITE_LIMIT:
            self.transport.abort()
