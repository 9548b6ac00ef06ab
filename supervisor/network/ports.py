"""Published ports: docker's ``-p`` syntax, conflict checks, random host ports.

``-p [IP:][HOST:]CONTAINER[/tcp|udp]``, where HOST and CONTAINER may be ranges (``8000-8002``)
parsed as docker parses them (go-connections' ``ParsePortSpec``): ranges of equal length map port
by port; a host range with a single container port means "one free host port of that range";
a container range without a host port gets a random host port for each. Without a host port the
port is chosen at random from ``RANDOM_RANGE``, avoiding ports published by other containers and
ports in use in the daemon's network namespace. The mapping reaches the container through the
portmap plugin (capability ``portMappings``: DNAT from any local address, 127.0.0.1 included,
and hairpin SNAT), so no proxy process listens on the host port; a port that *something* listens
on is refused, since the DNAT rule would silently steal its traffic.
"""
from __future__ import annotations

import ipaddress
import random
import socket

from supervisor.errors import FailedPrecondition, InvalidArgument

RANDOM_RANGE = (49153, 60999)


def parse(spec: str) -> list[dict]:
    """One ``-p`` string -> its mappings {hostIP, hostPort (0: free one of hostRange, or random),
    containerPort, protocol, hostRange (only for a host range with one container port)}."""
    text = spec.strip()
    proto = "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
        if proto not in ("tcp", "udp"):
            raise InvalidArgument(f"port {spec!r}: protocol must be tcp or udp")
    host_ip = ""
    if text.startswith("["):  # [v6]:host:container
        end = text.find("]")
        if end < 0:
            raise InvalidArgument(f"port {spec!r}: unclosed '['")
        host_ip, text = text[1:end], text[end + 1:].lstrip(":")
    parts = text.split(":")
    if len(parts) == 3 and not host_ip:
        host_ip = parts.pop(0)
    if len(parts) not in (1, 2):
        raise InvalidArgument(f"port {spec!r}: expected [IP:][HOST:]CONTAINER[/tcp|udp]")
    host = parts[0] if len(parts) == 2 else ""
    c_lo, c_hi = _range(parts[-1], spec, allow_zero=False)
    h_lo, h_hi = _range(host, spec, allow_zero=True) if host else (0, 0)
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise InvalidArgument(f"port {spec!r}: {host_ip!r} is not an IP address") from None
    base = {"hostIP": host_ip, "protocol": proto}
    if host and h_hi - h_lo != c_hi - c_lo:
        if c_lo != c_hi:
            raise InvalidArgument(
                f"port {spec!r}: the host range {host} and the container range {parts[-1]} "
                "differ in length")
        if h_lo == 0:
            raise InvalidArgument(f"port {spec!r}: a host range cannot start at 0")
        return [dict(base, hostPort=0, containerPort=c_lo, hostRange=[h_lo, h_hi])]
    return [dict(base, hostPort=h_lo + i if host else 0, containerPort=c_lo + i)
            for i in range(c_hi - c_lo + 1)]


def _range(text: str, spec: str, allow_zero: bool) -> tuple[int, int]:
    """``N`` or ``LO-HI`` (LO <= HI)."""
    lo, sep, hi = text.partition("-")
    first = _port(lo, spec, allow_zero)
    if not sep:
        return first, first
    last = _port(hi, spec, allow_zero)
    if last < first:
        raise InvalidArgument(f"port {spec!r}: range {text}: the end is below the start")
    if first == 0 and last:
        raise InvalidArgument(f"port {spec!r}: range {text} starts at 0")
    return first, last


def _port(text: str, spec: str, allow_zero: bool) -> int:
    if not text.isdigit():
        raise InvalidArgument(f"port {spec!r}: {text!r} is not a port number")
    n = int(text)
    if n > 65535 or (n == 0 and not allow_zero):
        raise InvalidArgument(f"port {spec!r}: {n} is out of range")
    return n


def parse_list(value: str) -> list[dict]:
    """A comma-separated label value (or a list of -p strings)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [m for p in items if p.strip() for m in parse(p)]


def _overlap(a: dict, b: dict) -> bool:
    return (a["protocol"] == b["protocol"] and a["hostPort"] == b["hostPort"]
            and (not a["hostIP"] or not b["hostIP"] or a["hostIP"] == b["hostIP"]))


def in_use(mapping: dict) -> bool:
    """Whether binding the host address/port fails in the daemon's namespace (a listener or a
    bound socket is there). Without a host IP the mapping covers both families (portmap DNATs
    IPv6 too for a dual-stack container): 0.0.0.0 and [::] (IPv6 only) are both tried."""
    ips = [mapping["hostIP"]] if mapping["hostIP"] else ["0.0.0.0", "::"]
    return any(_bind_fails(ip, mapping) for ip in ips)


def _bind_fails(ip: str, mapping: dict) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    kind = socket.SOCK_STREAM if mapping["protocol"] == "tcp" else socket.SOCK_DGRAM
    try:
        s = socket.socket(family, kind)
    except OSError:  # no IPv6 in this kernel: nothing can listen there
        return False
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((ip, mapping["hostPort"]))
        return False
    except OSError:
        return True
    finally:
        s.close()


def assign(wanted: list[dict], published: list[dict]) -> list[dict]:
    """The mappings with random host ports filled in, after the conflict checks; ``published``
    are the mappings of every other container."""
    out: list[dict] = []
    for m in wanted:
        m = dict(m)
        span = m.pop("hostRange", None)
        if span:
            m["hostPort"] = _free_in(m, span, published + out)
        elif m["hostPort"]:
            for other in published + out:
                if _overlap(m, other):
                    raise FailedPrecondition(
                        f"port {_show(m)} is already published by another container")
            if in_use(m):
                raise FailedPrecondition(f"port {_show(m)} is already in use on the host")
        else:
            m["hostPort"] = _random_port(m, published + out)
        out.append(m)
    return out


def _free_in(m: dict, span, taken: list[dict]) -> int:
    """The first port of ``span`` neither published nor in use (docker's allocation from a host
    range given for one container port)."""
    for port in range(span[0], span[1] + 1):
        trial = dict(m, hostPort=port)
        if not any(_overlap(trial, t) for t in taken) and not in_use(trial):
            return port
    raise FailedPrecondition(f"no free host port in {span[0]}-{span[1]} for "
                             f"{m['containerPort']}/{m['protocol']}")


def _random_port(m: dict, taken: list[dict]) -> int:
    lo, hi = RANDOM_RANGE
    for _ in range(200):
        trial = dict(m, hostPort=random.randint(lo, hi))
        if not any(_overlap(trial, t) for t in taken) and not in_use(trial):
            return trial["hostPort"]
    raise FailedPrecondition(f"no free host port for {m['containerPort']}/{m['protocol']}")


def _show(m: dict) -> str:
    ip = m["hostIP"]
    ip = f"[{ip}]" if ":" in ip else ip
    return f"{ip + ':' if ip else ''}{m['hostPort']}/{m['protocol']}"


def docker_string(m: dict) -> str:
    """``80/tcp -> 0.0.0.0:8080`` as ``docker port`` prints it."""
    return f"{m['containerPort']}/{m['protocol']} -> {m['hostIP'] or '0.0.0.0'}:{m['hostPort']}"
