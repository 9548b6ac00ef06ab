"""Per-network firewall rules of the supervisor's own bridge networks: masquerading, isolation
between networks, and forwarding accepted even where the FORWARD policy is DROP (docker's hosts).

The standard chain would do this per container (the bridge plugin's ``ipMasq`` makes a NAT chain
per container, the firewall plugin adds rules per address and checks its chains on every ADD):
a dozen iptables processes per container start and as many again at removal. These rules depend
only on the network (its bridge and subnet), so the supervisor installs them once, when a network
is first used by this daemon, and removes them with the network; a container's start and removal
run no iptables at all unless it publishes ports (portmap). Administrators' conflists are run as
they are, with whatever plugins they name.

    nat     POSTROUTING  -s SUBNET ! -o BRIDGE -j MASQUERADE
    filter  FORWARD -> PYRUNC-FORWARD (inserted first):
              -j PYRUNC-ISOLATION-1                       (once)
              -o BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
              -i BRIDGE -j ACCEPT
            PYRUNC-ISOLATION-1:  -i BRIDGE ! -o BRIDGE -j PYRUNC-ISOLATION-2
            PYRUNC-ISOLATION-2:  -o BRIDGE -j DROP
            (a packet from one network's bridge to another's is dropped; to anything else it
            returns and is accepted)

A dual-stack network (``--ipv6``) gets the same rules for its IPv6 subnet from ip6tables (the
same chain names in the IPv6 tables): masquerading of its IPv6 subnet, isolation and forwarding.

Every rule carries the comment ``pyrunc network NAME``; adding checks first (``-C``), so it is
idempotent after a restart, and removal ignores rules already gone. The host's own rules and
chains are never flushed: only ours are created, and only our rules are deleted.
"""
from __future__ import annotations

import asyncio
import shutil

from supervisor.network import cni

IPTABLES = "iptables"
IP6TABLES = "ip6tables"
FORWARD = "PYRUNC-FORWARD"
ISO1, ISO2 = "PYRUNC-ISOLATION-1", "PYRUNC-ISOLATION-2"


class RuleError(cni.CniError):
    pass


def _bridge_and_subnets(conflist: dict) -> tuple[str, dict]:
    """The bridge device and {IP version: its first subnet} of the network's bridge plugin."""
    for plugin in conflist.get("plugins") or []:
        if plugin.get("type") == "bridge" and plugin.get("bridge"):
            from supervisor.network.config import subnets_of
            nets: dict = {}
            for n in subnets_of({"plugins": [plugin]}):
                nets.setdefault(n.version, str(n))
            return plugin["bridge"], nets
    return "", {}


def managed(conflist: dict) -> bool:
    """Whether the supervisor keeps this network's rules (its own bridge networks)."""
    return (conflist.get("io.pyrunc") or {}).get("driver") == "bridge" \
        and bool(_bridge_and_subnets(conflist)[0])


def _rules(conflist: dict) -> list[tuple[str, str, str, list[str]]]:
    """(iptables binary, table, chain, rule) in the order they are added: IPv4 always (the
    network's IPv4 subnet, or none), IPv6 for a network with an IPv6 subnet."""
    bridge, subnets = _bridge_and_subnets(conflist)
    tag = ["-m", "comment", "--comment", f"pyrunc network {conflist['name']}"]
    out = []
    for binary, version in ((IPTABLES, 4), (IP6TABLES, 6)):
        subnet = subnets.get(version)
        if version == 6 and not subnet:
            continue
        if subnet:
            out.append((binary, "nat", "POSTROUTING", ["-s", subnet, "!", "-o", bridge] + tag
                        + ["-j", "MASQUERADE"]))
        out += [(binary, "filter", ISO1, ["-i", bridge, "!", "-o", bridge] + tag
                 + ["-j", ISO2]),
                (binary, "filter", ISO2, ["-o", bridge] + tag + ["-j", "DROP"]),
                (binary, "filter", FORWARD, ["-o", bridge, "-m", "conntrack", "--ctstate",
                                             "RELATED,ESTABLISHED"] + tag + ["-j", "ACCEPT"]),
                (binary, "filter", FORWARD, ["-i", bridge] + tag + ["-j", "ACCEPT"])]
    return out


class Rules:
    def __init__(self, timeout: float = cni.TIMEOUT):
        self.timeout = timeout
        self.ensured: set[str] = set()
        self.lock = asyncio.Lock()

    async def _ipt(self, name: str, *args: str) -> tuple[int, str]:
        binary = shutil.which(name, path=cni.PLUGIN_PATH_ENV)
        if binary is None:
            raise RuleError(f"{name} is not installed (the network's rules need it)")
        code, _, err = await cni.execute(binary, {"PATH": cni.PLUGIN_PATH_ENV}, b"",
                                         self.timeout, name, argv=[name, "-w", *args])
        return code, err.decode(errors="replace").strip()

    async def _must(self, name: str, *args: str) -> None:
        code, err = await self._ipt(name, *args)
        if code != 0:
            raise RuleError(f"{name} {' '.join(args)}: {err or f'exit status {code}'}")

    async def _chains(self, name: str) -> None:
        """Our chains, and FORWARD's jump to PYRUNC-FORWARD first, PYRUNC-FORWARD's jump to the
        isolation chain first."""
        for chain in (FORWARD, ISO1, ISO2):
            if (await self._ipt(name, "-t", "filter", "-n", "-L", chain))[0] != 0:
                await self._must(name, "-t", "filter", "-N", chain)
        for chain, target in (("FORWARD", FORWARD), (FORWARD, ISO1)):
            if (await self._ipt(name, "-t", "filter", "-C", chain, "-j", target))[0] != 0:
                await self._must(name, "-t", "filter", "-I", chain, "1", "-j", target)

    async def ensure(self, conflist: dict) -> None:
        """The network's rules exist (checked once per network per daemon)."""
        if not managed(conflist) or conflist["name"] in self.ensured:
            return
        async with self.lock:
            if conflist["name"] in self.ensured:
                return
            rules = _rules(conflist)
            for name in dict.fromkeys(r[0] for r in rules):
                await self._chains(name)
            for name, table, chain, rule in rules:
                if (await self._ipt(name, "-t", table, "-C", chain, *rule))[0] != 0:
                    await self._must(name, "-t", table, "-A", chain, *rule)
            self.ensured.add(conflist["name"])

    async def remove(self, conflist: dict) -> None:
        """Delete the network's rules (every copy; missing ones are fine). Our chains stay, as
        the plugins' shared chains do."""
        if not managed(conflist):
            return
        async with self.lock:
            self.ensured.discard(conflist["name"])
            for name, table, chain, rule in _rules(conflist):
                while (await self._ipt(name, "-t", table, "-D", chain, *rule))[0] == 0:
                    pass
