"""Networks as CNI conflists in the supervisor's configuration directory.

Every ``*.conflist`` (and single-plugin ``*.conf``) file there is a network, named by its
``name`` field; an administrator may drop any conflist there and containers can use it. The ones
the supervisor writes itself (``network create``, and the default ``bridge`` network, made on
first use) are bridge networks:

    bridge (isGateway, hairpin) with host-local IPAM  ->  portmap (portMappings)

with the network's masquerading, isolation from other networks and forwarding done by rules the
supervisor installs once per network (rules.py) rather than per container by ``ipMasq`` and the
firewall plugin. The conflist's ``io.pyrunc`` key holds the supervisor's own data (id, driver,
options, labels, and ``optional``: plugins left out of a container's chain when it asks nothing
of their capabilities, i.e. portmap for a container that publishes no port).

host-local keeps its allocations in the supervisor's state directory: ``ipam_dir`` is put into an
IPAM section of type host-local that names no ``dataDir`` when a conflist is loaded for use, so
the host's /var/lib/cni is never touched and a test's daemon has a store of its own.

Subnets: a new network's subnet may not overlap another network's or a route of the daemon's
network namespace (``routes`` is passed in: the caller reads it with netlink).

Dual stack (``network create --ipv6``): an IPv4 subnet (given, or the first free 10.89.x.0/24)
and an IPv6 one (given, or a /64 of a unique local prefix derived from the network's id,
fdXX:XXXX:XXXX::/64 as RFC 4193 makes them) as two host-local ranges, so every container gets one
address of each, with a default route of each family; rules.py keeps the IPv6 rules with
ip6tables. The default ``bridge`` network is IPv4 only, as docker's.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re

from supervisor.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

DEFAULT_NETWORK = "bridge"
DEFAULT_SUBNET = "10.88.0.0/16"
AUTO_SUBNETS = ("10.89.%d.0/24", 256)    # user networks without --subnet
RESERVED = ("host", "none")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
CNI_VERSION = "1.0.0"


def network_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def bridge_name(name: str) -> str:
    """Interface names are at most 15 bytes: the default is pyrunc0, others pyr-<id>."""
    return "pyrunc0" if name == DEFAULT_NETWORK else "pyr-" + network_id(name)[:10]


def bridge_conflist(name: str, subnet: str, gateway: str = "", options: dict | None = None,
                    labels: dict | None = None, subnet6: str = "", gateway6: str = "") -> dict:
    ranges, routes = [], []
    for net, gw in ((subnet, gateway), (subnet6, gateway6)):
        if not net:
            continue
        rng = {"subnet": str(ipaddress.ip_network(net))}
        if gw:
            rng["gateway"] = gw
        ranges.append([rng])
        routes.append({"dst": "0.0.0.0/0" if ipaddress.ip_network(net).version == 4
                       else "::/0"})
    bridge = {"type": "bridge", "bridge": (options or {}).get("bridge") or bridge_name(name),
              "isGateway": True, "ipMasq": False, "hairpinMode": True,
              "ipam": {"type": "host-local", "ranges": ranges, "routes": routes}}
    if (options or {}).get("mtu"):
        bridge["mtu"] = int(options["mtu"])
    conf = {"cniVersion": CNI_VERSION, "name": name, "plugins": [
        bridge, {"type": "portmap", "capabilities": {"portMappings": True}}]}
    # masquerading, isolation and forwarding are the supervisor's per-network rules (rules.py);
    # portmap runs only for containers that publish ports
    meta = {"id": network_id(name), "driver": "bridge", "optional": ["portmap"]}
    if subnet6:
        meta["ipv6"] = True
    if options:
        meta["options"] = dict(options)
    if labels:
        meta["labels"] = dict(labels)
    conf["io.pyrunc"] = meta
    return conf


def subnets_of(conflist: dict) -> list[ipaddress._BaseNetwork]:
    """The subnets a conflist's IPAM sections name (host-local ``ranges`` or ``subnet``)."""
    out = []
    for plugin in conflist.get("plugins") or []:
        ipam = plugin.get("ipam") or {}
        ranges = [r for rs in ipam.get("ranges") or [] for r in rs]
        if ipam.get("subnet"):
            ranges.append({"subnet": ipam["subnet"]})
        for r in ranges:
            try:
                out.append(ipaddress.ip_network(r.get("subnet", ""), strict=False))
            except ValueError:
                pass
    return out


def gateways_of(conflist: dict) -> list[str]:
    out = []
    for plugin in conflist.get("plugins") or []:
        for rs in (plugin.get("ipam") or {}).get("ranges") or []:
            for r in rs:
                if r.get("gateway"):
                    out.append(r["gateway"])
                else:
                    try:
                        out.append(str(next(ipaddress.ip_network(r["subnet"]).hosts())))
                    except (ValueError, KeyError, StopIteration):
                        pass
    return out


def check_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise InvalidArgument(f"network name {name!r}: letters, digits, '_', '.', '-' "
                              "(starting with a letter or digit, at most 64)")
    if name in RESERVED:
        raise InvalidArgument(f"network name {name!r} is reserved")


def ula_subnet(name: str) -> str:
    """A /64 of the unique local prefix fdXX:XXXX:XXXX::/48 derived from the network's name."""
    g = bytes.fromhex(hashlib.sha256(b"pyrunc-ula " + name.encode()).hexdigest()[:10])
    return str(ipaddress.IPv6Network((b"\xfd" + g + bytes(10), 64)))


def parse_subnet(subnet: str, gateway: str, version: int | None = None):
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as e:
        raise InvalidArgument(f"subnet {subnet!r}: {e}") from None
    if version and net.version != version:
        raise InvalidArgument(f"subnet {subnet}: not an IPv{version} subnet")
    if net.num_addresses < 4:
        raise InvalidArgument(f"subnet {subnet}: too small (at least a /30 or /126)")
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError as e:
            raise InvalidArgument(f"gateway {gateway!r}: {e}") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidArgument(f"gateway {gateway}: not a host address of {subnet}")
    return net


def _check_free(net, text: str, taken) -> None:
    for owner, other in taken:
        if net.version == other.version and net.overlaps(other):
            raise InvalidArgument(f"subnet {text} overlaps {other} of {owner}")


class Configs:
    """The configuration directory: load, write and remove conflists by network name."""

    def __init__(self, conf_dir: str, ipam_dir: str):
        self.dir = conf_dir
        self.ipam_dir = ipam_dir
        os.makedirs(conf_dir, mode=0o755, exist_ok=True)
        os.makedirs(ipam_dir, mode=0o700, exist_ok=True)

    def _files(self) -> list[str]:
        return sorted(f for f in os.listdir(self.dir)
                      if f.endswith((".conflist", ".conf", ".json")) and not f.startswith("."))

    def all(self) -> dict[str, tuple[str, dict]]:
        """name -> (file, conflist) for every readable network file (the first file of a
        name wins, in file-name order, as libcni does)."""
        out: dict[str, tuple[str, dict]] = {}
        for fname in self._files():
            path = os.path.join(self.dir, fname)
            try:
                with open(path) as f:
                    conf = json.load(f)
            except (OSError, ValueError):
                continue
            if not isinstance(conf, dict) or not isinstance(conf.get("name"), str):
                continue
            if "plugins" not in conf and "type" in conf:  # a single-plugin .conf
                conf = {"cniVersion": conf.get("cniVersion", CNI_VERSION),
                        "name": conf["name"], "plugins": [conf]}
            if not isinstance(conf.get("plugins"), list) or not conf["plugins"]:
                continue
            out.setdefault(conf["name"], (path, conf))
        return out

    def get(self, name: str) -> dict:
        found = self.all().get(name)
        if found is None:
            raise NotFound(f"network {name} not found")
        return found[1]

    def for_use(self, conflist: dict) -> dict:
        """The conflist as the plugins get it: host-local stores under the daemon's state."""
        conf = json.loads(json.dumps(conflist))
        for plugin in conf["plugins"]:
            ipam = plugin.get("ipam")
            if isinstance(ipam, dict) and ipam.get("type") == "host-local" \
                    and not ipam.get("dataDir"):
                ipam["dataDir"] = self.ipam_dir
        return conf

    def create(self, name: str, subnet: str = "", gateway: str = "", options=None,
               labels=None, routes=(), ipv6: bool = False, subnet6: str = "",
               gateway6: str = "") -> dict:
        """A bridge network: IPv4 ``subnet`` (or a free one); with ``ipv6``, dual stack with
        ``subnet6`` (or a unique local /64)."""
        if name != DEFAULT_NETWORK:
            check_name(name)
        if subnet and ":" in subnet and not subnet6:  # given as --subnet: an IPv6 one
            subnet, gateway, subnet6, gateway6 = "", "", subnet, gateway6 or gateway
        if (subnet6 or gateway6) and not ipv6:
            raise InvalidArgument("an IPv6 subnet or gateway needs --ipv6")
        existing = self.all()
        if name in existing:
            raise AlreadyExists(f"network with name {name} already exists")
        taken = [(n, s) for n, (_, c) in existing.items() for s in subnets_of(c)]
        taken += [("a route of the host", r) for r in routes]
        if subnet:
            net = parse_subnet(subnet, gateway, 4)
            _check_free(net, subnet, taken)
        else:
            if gateway:
                raise InvalidArgument("--gateway needs --subnet")
            net = self._free_subnet(name, taken)
        net6 = None
        if ipv6:
            if gateway6 and not subnet6:
                raise InvalidArgument("an IPv6 --gateway needs an IPv6 --subnet")
            net6 = parse_subnet(subnet6 or ula_subnet(name), gateway6, 6)
            _check_free(net6, str(net6), taken)
        conf = bridge_conflist(name, str(net), gateway, options, labels,
                               str(net6) if net6 else "", gateway6)
        path = os.path.join(self.dir, f"{name}.conflist")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(conf, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        return conf

    def _free_subnet(self, name: str, taken):
        candidates = [DEFAULT_SUBNET] if name == DEFAULT_NETWORK else []
        candidates += [AUTO_SUBNETS[0] % i for i in range(AUTO_SUBNETS[1])]
        for c in candidates:
            net = ipaddress.ip_network(c)
            if not any(net.version == o.version and net.overlaps(o) for _, o in taken):
                return net
        raise FailedPrecondition("no free subnet left among 10.89.0.0/16's: give --subnet")

    def remove(self, name: str) -> dict:
        found = self.all().get(name)
        if found is None:
            raise NotFound(f"network {name} not found")
        os.unlink(found[0])
        return found[1]
