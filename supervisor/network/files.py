"""A container's /etc/hosts, /etc/resolv.conf and /etc/hostname.

The files live in the state directory (``<state>/network/files/<ns>/<id>/``) and are bind-mounted
over the container's own. /etc/hosts names the container itself, not its peers: on a
user-defined network they are found through the supervisor's resolver (resolver.py), whose
address is the container's one ``nameserver`` (127.0.0.11). Elsewhere
/etc/resolv.conf is the host's without loopback resolvers (they mean nothing inside the
container's namespace), or the ``--dns`` servers; with no resolver left, the container gets none
rather than someone else's.
"""
from __future__ import annotations

import ipaddress
import os

HOST_RESOLV = "/etc/resolv.conf"
LOCAL = ("127.0.0.1\tlocalhost\n"
         "::1\tlocalhost ip6-localhost ip6-loopback\n"
         "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
         "ff02::2\tip6-allrouters\n")


def hosts_text(own: list[tuple[str, list[str]]], peers: list[tuple[str, list[str]]]) -> str:
    """``own`` and ``peers``: (ip, names)."""
    lines = [LOCAL]
    for ip, names in own + peers:
        if ip and names:
            lines.append(f"{ip}\t{' '.join(dict.fromkeys(names))}\n")
    return "".join(lines)


def resolv_text(dns: list[str], host_file: str = HOST_RESOLV) -> str:
    if dns:
        return "".join(f"nameserver {s}\n" for s in dns)
    try:
        with open(host_file) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    out = []
    for line in lines:
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1 and _loopback(words[1]):
            continue
        out.append(line)
    return "\n".join(out) + "\n" if out else ""


def host_nameservers(host_file: str = HOST_RESOLV) -> list[str]:
    """The host's resolvers without loopback ones: the containers' resolver's upstreams."""
    try:
        with open(host_file) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1 and not _loopback(words[1]):
            out.append(words[1].split("%")[0])
    return out


def resolv_embedded(host_file: str = HOST_RESOLV) -> str:
    """resolv.conf of a container served by the supervisor's resolver (resolver.py): its address
    alone, the host's search and options kept, and ``ndots:0`` as docker writes it."""
    try:
        with open(host_file) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    out = ["nameserver 127.0.0.11"]
    out += [line for line in lines if line.split()[:1] in (["search"], ["domain"])]
    opts = [w for line in lines if line.split()[:1] == ["options"] for w in line.split()[1:]
            if not w.startswith("ndots:")]
    out.append("options " + " ".join(["ndots:0", *opts]))
    return "\n".join(out) + "\n"


def _loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def write_in_place(path: str, text: str) -> None:
    """Rewrite keeping the inode (a bind mount of the file keeps showing it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        data = text.encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def mounts(directory: str) -> list[dict]:
    """The spec mounts binding the three files over the container's."""
    return [{"destination": f"/etc/{name}", "type": "bind", "source": os.path.join(directory,
                                                                                  name),
             "options": ["rbind", "rprivate"]}
            for name in ("hosts", "resolv.conf", "hostname")]
