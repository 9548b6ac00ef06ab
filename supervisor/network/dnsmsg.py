"""DNS messages (RFC 1035), just what the containers' resolver needs: read a query's one
question, build an answer of A/AAAA/PTR records for names the supervisor knows, or an error reply.

Queries with anything but one question, or with opcode other than QUERY, are not answered
locally: ``parse`` raises ``ValueError`` and the resolver replies FORMERR (or forwards nothing).
The question section of a reply is the query's own bytes (names in questions are never
compressed by clients that matter, and copying keeps the reply byte-exact with the question);
answers point at it (``0xC00C``).
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

A, PTR, AAAA = 1, 12, 28
IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, REFUSED = 0, 1, 2, 3, 5
TTL = 600          # docker's embedded DNS answers with 600 s
_HEADER = struct.Struct("!HHHHHH")


@dataclass
class Question:
    id: int
    flags: int
    name: str      # lower case, no trailing dot
    qtype: int
    qclass: int
    end: int       # offset just past the question in the query


def parse(data: bytes) -> Question:
    if len(data) < _HEADER.size:
        raise ValueError("short message")
    qid, flags, qd, _, _, _ = _HEADER.unpack_from(data)
    if flags & 0x8000 or (flags >> 11) & 0xF or qd != 1:
        raise ValueError("not a standard query with one question")
    labels, pos = [], _HEADER.size
    while True:
        if pos >= len(data):
            raise ValueError("truncated name")
        n = data[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0 or pos + n > len(data):
            raise ValueError("bad label")
        labels.append(data[pos:pos + n].decode("ascii", "replace").lower())
        pos += n
    if pos + 4 > len(data):
        raise ValueError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    return Question(qid, flags, ".".join(labels), qtype, qclass, pos + 4)


def _name(text: str) -> bytes:
    out = b""
    for label in text.strip(".").split("."):
        raw = label.encode("idna") if label else b""
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _reply(data: bytes, q: Question, rcode: int, answers: list[bytes]) -> bytes:
    flags = 0x8000 | 0x0400 | (q.flags & 0x0100) | 0x0080 | rcode   # QR AA RD(copied) RA
    header = _HEADER.pack(q.id, flags, 1, len(answers), 0, 0)
    return header + data[_HEADER.size:q.end] + b"".join(answers)


def answer(data: bytes, q: Question, addresses: list[str], names: list[str] = ()) -> bytes:
    """An authoritative answer: the ``addresses`` of the question's type (A or AAAA), or the
    ``names`` (PTR); none: NOERROR with no record (the name exists, not this type)."""
    records = []
    if q.qtype in (A, AAAA) and q.qclass == IN:
        for addr in addresses:
            ip = ipaddress.ip_address(addr)
            if (ip.version == 4) == (q.qtype == A):
                records.append(struct.pack("!HHHIH", 0xC00C, q.qtype, IN, TTL,
                                           len(ip.packed)) + ip.packed)
    elif q.qtype == PTR and q.qclass == IN:
        for name in names:
            raw = _name(name)
            records.append(struct.pack("!HHHIH", 0xC00C, PTR, IN, TTL, len(raw)) + raw)
    return _reply(data, q, NOERROR, records)


def error(data: bytes, rcode: int, q: Question | None = None) -> bytes:
    """An error reply; without a parsed question, the bare header (id and RD of the query)."""
    if q is not None:
        return _reply(data, q, rcode, [])
    qid, flags = struct.unpack_from("!HH", data) if len(data) >= 4 else (0, 0)
    return _HEADER.pack(qid, 0x8000 | (flags & 0x0100) | 0x0080 | rcode, 0, 0, 0, 0)


def reverse_name(addr: str) -> str:
    """The PTR name of an address (``4.3.2.1.in-addr.arpa``)."""
    return ipaddress.ip_address(addr).reverse_pointer


def matches(reply: bytes, query_id: int) -> bool:
    return len(reply) >= _HEADER.size and struct.unpack_from("!H", reply)[0] == query_id
