"""The network manager: a container's network, from task create to task delete.

What a container gets is asked for with labels on the container record (so ``ctr run --label``
and any containerd client work), read at task create:

    io.pyrunc.network           NAME (a network; ``bridge`` is the default network, made on first
                                use), ``host``, ``none``, or ``container:ID`` (join that
                                container's namespace, the way a pod's containers share one);
                                absent: the spec is used as it is (containerd's behaviour)
    io.pyrunc.network.ports     comma-separated ``-p`` strings: ``[IP:][HOST:]CONTAINER[/proto]``
                                (HOST and CONTAINER: ports or ranges, ``8000-8002:80-82``)
    io.pyrunc.network.dns       comma-separated resolver addresses: for /etc/resolv.conf, or the
                                upstreams of the container's resolver (user-defined networks)
    io.pyrunc.network.aliases   more names peers resolve it by (pyrunc-ctl: the docker name)

Attaching (``attach``, before the runtime creates the container):

1. the record ``<state>/network/attachments/<ns>/<id>.json`` is written (durably) with
   everything DEL needs: the conflist as it is used, the namespace path, the ports;
2. the namespace is created and bind-mounted at ``<state>/network/netns/<ns>/<id>``;
3. CNI ADD runs the chain; its result is added to the record;
4. on a user-defined network, the container's DNS resolver (resolver.py) binds 127.0.0.11:53
   in the namespace;
5. /etc/hosts, resolv.conf and hostname are written and the spec is changed to use them and the
   namespace (``linux.namespaces`` network ``path``).

Any failure undoes what was done (CNI DEL, namespace, files, record) before the error is raised,
so a failed create leaves nothing. Because the record comes first, a ``kill -9`` of the daemon at
any point leaves a record that names everything there is to undo: at start, ``reconcile`` tears
down every attachment whose task did not survive (DEL is idempotent per the CNI spec). A DEL that
fails keeps its record, so a later start retries it.

Detaching (``detach``, after the task is deleted): the resolver closed, CNI DEL with the kept
result, conntrack entries of the container's addresses flushed, namespace unmounted, files and
record removed.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import shutil
import socket
import threading

from supervisor.errors import FailedPrecondition, InvalidArgument, NotFound, SupervisorError
from supervisor.network import cni, dnsmsg, files, netns, ports as portsmod, rules
from supervisor.network.config import DEFAULT_NETWORK, Configs, subnets_of

from supervisor.network.labels import (  # noqa: F401 (the manager's names for them)
    LABEL, LABEL_ALIASES, LABEL_DNS, LABEL_PORTS)
IFNAME = "eth0"

log = logging.getLogger("pyrunc.network")


def cni_container_id(ns: str, cid: str) -> str:
    """Unique over namespaces and unambiguous (the namespace's length first)."""
    return f"{len(ns)}-{ns}-{cid}"


def _write_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def ips_of(result: dict) -> list[str]:
    """The container's addresses (without prefix length) from a CNI result."""
    out = []
    for ip in (result or {}).get("ips") or []:
        addr = str(ip.get("address", "")).split("/")[0]
        if addr:
            out.append(addr)
    return out


def mac_of(result: dict, netns_path: str) -> str:
    for iface in (result or {}).get("interfaces") or []:
        if iface.get("sandbox") == netns_path and iface.get("mac"):
            return iface["mac"]
    return ""


class NetworkManager:
    def __init__(self, state_dir: str, conf_dir: str, plugin_path=cni.DEFAULT_PATH,
                 timeout: float = cni.TIMEOUT):
        base = os.path.join(state_dir, "network")
        self.att_dir = os.path.join(base, "attachments")
        self.netns_dir = os.path.join(base, "netns")
        self.files_dir = os.path.join(base, "files")
        for d in (base, self.att_dir, self.netns_dir, self.files_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.configs = Configs(conf_dir, os.path.join(base, "ipam"))
        self.cni = cni.Runner(plugin_path, timeout)
        self.rules = rules.Rules(timeout)
        self.records: dict[tuple[str, str], dict] = {}
        self.resolvers: dict[tuple[str, str], object] = {}   # resolver.Resolver by container
        self.lock = asyncio.Lock()   # network create/remove against attachments

    # -- records ---------------------------------------------------------------------------------
    def _record_path(self, ns: str, cid: str) -> str:
        return os.path.join(self.att_dir, ns, cid + ".json")

    def _save(self, rec: dict) -> None:
        path = self._record_path(rec["namespace"], rec["id"])
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        _write_json(path, rec)

    def _drop(self, rec: dict) -> None:
        try:
            os.unlink(self._record_path(rec["namespace"], rec["id"]))
        except FileNotFoundError:
            pass
        self.records.pop((rec["namespace"], rec["id"]), None)

    def load(self) -> None:
        for ns in sorted(os.listdir(self.att_dir)):
            d = os.path.join(self.att_dir, ns)
            for name in sorted(os.listdir(d)):
                path = os.path.join(d, name)
                if name.endswith(".tmp"):
                    os.unlink(path)
                    continue
                try:
                    with open(path) as f:
                        rec = json.load(f)
                    self.records[(rec["namespace"], rec["id"])] = rec
                except (OSError, ValueError, KeyError, TypeError):
                    log.warning("network: unreadable attachment record %s (removed)", path)
                    os.unlink(path)

    async def reconcile(self, live) -> None:
        """Tear down every attachment whose task is not in ``live`` ((ns, id) pairs)."""
        self.load()
        if self.records:
            _preload_soon()
        for key, rec in sorted(self.records.items()):
            if key not in live:
                try:
                    await self._teardown(rec)
                except SupervisorError as e:
                    log.warning("network: cleaning up %s/%s: %s", key[0], key[1], e)
            elif rec.get("phase") == "added" and _wants_resolver(rec):
                try:  # the last daemon's sockets died with it
                    await self._start_resolver(rec)
                except (OSError, SupervisorError) as e:
                    log.warning("network: DNS resolver of %s/%s: %s", key[0], key[1], e)

    # -- attach ----------------------------------------------------------------------------------
    async def attach(self, ns: str, cid: str, labels: dict, spec: dict) -> dict:
        """The spec changed to use the container's network (unchanged without the label)."""
        mode = (labels or {}).get(LABEL, "")
        if not mode:
            return spec
        _preload_soon()
        if (ns, cid) in self.records:  # left by an earlier attempt: finish it first
            await self._teardown(self.records[(ns, cid)])
        spec = json.loads(json.dumps(spec))
        wanted = portsmod.parse_list(labels.get(LABEL_PORTS, ""))
        dns = [s.strip() for s in labels.get(LABEL_DNS, "").split(",") if s.strip()]
        for s in dns:
            try:
                ipaddress.ip_address(s)
            except ValueError:
                raise InvalidArgument(f"dns {s!r}: not an IP address") from None
        if mode == "host":
            if wanted:
                raise InvalidArgument("published ports make no sense with --network host")
            _set_netns(spec, None)
            return spec
        hostname = spec.get("hostname") or cid[:12]
        spec["hostname"] = hostname
        rec = {"namespace": ns, "id": cid, "mode": mode, "network": "", "netns": "",
               "owns_netns": False, "conflist": None, "ports": [], "dns": dns,
               "hostname": hostname, "files": os.path.join(self.files_dir, ns, cid),
               "aliases": [n for n in labels.get(LABEL_ALIASES, "").split(",") if n],
               "result": None, "phase": "adding"}
        if mode.startswith("container:"):
            self._join(rec, mode.split(":", 1)[1], wanted)
        elif mode == "none":
            if wanted:
                raise InvalidArgument("published ports make no sense with --network none")
            rec["netns"] = os.path.join(self.netns_dir, ns, cid)
            rec["owns_netns"] = True
        else:
            conflist = await self._network_for(mode)
            self.cni.check_plugins(conflist)
            if wanted and not any((p.get("capabilities") or {}).get("portMappings")
                                  for p in conflist["plugins"]):
                raise InvalidArgument(f"network {mode} has no plugin with the portMappings "
                                      "capability: ports cannot be published on it")
            await self.rules.ensure(conflist)
            rec.update(network=mode, conflist=_chain(self.configs.for_use(conflist), wanted),
                       netns=os.path.join(self.netns_dir, ns, cid), owns_netns=True,
                       ports=portsmod.assign(wanted, self._published()))
        self.records[(ns, cid)] = rec
        try:
            self._save(rec)
            await self._bring_up(rec)
        except BaseException:
            await asyncio.shield(self._undo(rec))
            raise
        _set_netns(spec, rec["netns"])
        spec.setdefault("mounts", []).extend(files.mounts(rec["files"]))
        return spec

    def _join(self, rec: dict, target: str, wanted) -> None:
        other = self.records.get((rec["namespace"], target))
        if other is None or other.get("phase") != "added" or not other.get("netns"):
            raise NotFound(f"container {target}: no network namespace to join (it must be "
                           "running with a network other than host)")
        if wanted:
            raise InvalidArgument("ports are published by the container that owns the "
                                  f"namespace ({target}), not by one that joins it")
        rec.update(netns=other["netns"], files=other["files"], joined=target)

    async def _network_for(self, name: str) -> dict:
        try:
            return self.configs.get(name)
        except NotFound:
            if name != DEFAULT_NETWORK:
                raise NotFound(f"network {name} not found") from None
        routes = await asyncio.to_thread(self.host_routes)
        async with self.lock:
            try:
                return self.configs.get(name)  # made meanwhile by another container
            except NotFound:
                return self.configs.create(DEFAULT_NETWORK, routes=routes)

    def _published(self) -> list[dict]:
        return [m for r in self.records.values() for m in r.get("ports") or []]

    async def _bring_up(self, rec: dict) -> None:
        if rec["owns_netns"]:
            os.makedirs(os.path.dirname(rec["netns"]), mode=0o700, exist_ok=True)
            await asyncio.to_thread(netns.create, rec["netns"])
        if rec["conflist"]:
            rec["result"] = await self.cni.add(rec["conflist"], self._att(rec))
        rec["phase"] = "added"
        self._save(rec)
        if _wants_resolver(rec):
            await self._start_resolver(rec)
        if "joined" not in rec:
            os.makedirs(rec["files"], mode=0o755, exist_ok=True)
            resolv = files.resolv_embedded() if _wants_resolver(rec) \
                else files.resolv_text(rec["dns"])
            files.write_in_place(os.path.join(rec["files"], "resolv.conf"), resolv)
            files.write_in_place(os.path.join(rec["files"], "hostname"), rec["hostname"] + "\n")
            self._write_hosts(rec)

    def _att(self, rec: dict) -> cni.Attachment:
        caps = {"portMappings": [
            {k: m[k] for k in ("hostPort", "containerPort", "protocol")}
            | ({"hostIP": m["hostIP"]} if m["hostIP"] else {}) for m in rec["ports"]]}
        return cni.Attachment(cni_container_id(rec["namespace"], rec["id"]), rec["netns"],
                              IFNAME, capabilities=caps if rec["ports"] else {})

    # -- names: /etc/hosts and the DNS resolver ---------------------------------------------------
    def _peers(self, rec: dict) -> list[dict]:
        """Containers that see each other by name: same namespace, same user-defined network."""
        if not rec.get("network") or rec["network"] == DEFAULT_NETWORK:
            return []
        return [r for r in self.records.values()
                if r is not rec and r["namespace"] == rec["namespace"]
                and r.get("network") == rec["network"] and r.get("phase") == "added"]

    def _names(self, rec: dict) -> list[tuple[str, list[str]]]:
        names = [rec["id"], rec["hostname"], *rec.get("aliases", ())]
        return [(ip, names) for ip in ips_of(rec.get("result"))]

    def _write_hosts(self, rec: dict) -> None:
        """The container's own names; its peers' come from the resolver (as on docker's
        user-defined networks), so they are always current."""
        own = self._names(rec) or [("127.0.1.1", [rec["hostname"]])]
        files.write_in_place(os.path.join(rec["files"], "hosts"), files.hosts_text(own, []))

    def _lookup(self, rec: dict, name: str) -> list[str] | None:
        """The addresses of a container known to ``rec`` by ``name`` (None: not one): its ID,
        short ID (as docker), host name or aliases."""
        for r in [rec, *self._peers(rec)]:
            if name in (n.lower() for n in (r["id"], r["id"][:12], r["hostname"],
                                             *r.get("aliases", ()))):
                return ips_of(r.get("result"))
        return None

    def _pointer(self, rec: dict, name: str) -> list[str] | None:
        for r in [rec, *self._peers(rec)]:
            for ip in ips_of(r.get("result")):
                if dnsmsg.reverse_name(ip) == name:
                    return [(r.get("aliases") or [r["hostname"]])[0]]
        return None

    async def _start_resolver(self, rec: dict) -> None:
        from supervisor.network.resolver import Resolver
        key = (rec["namespace"], rec["id"])
        upstreams = rec["dns"] or files.host_nameservers()
        resolver = Resolver(lambda name: self._lookup(rec, name),
                            lambda name: self._pointer(rec, name), upstreams)
        await resolver.start(rec["netns"])
        self.resolvers[key] = resolver

    def _stop_resolver(self, rec: dict) -> None:
        resolver = self.resolvers.pop((rec["namespace"], rec["id"]), None)
        if resolver is not None:
            resolver.close()

    # -- detach ----------------------------------------------------------------------------------
    async def detach(self, ns: str, cid: str) -> None:
        rec = self.records.get((ns, cid))
        if rec is None:
            return
        try:
            await self._teardown(rec)
        except SupervisorError as e:  # the record stays: the next start retries
            log.warning("network: detaching %s/%s: %s", ns, cid, e)

    async def _undo(self, rec: dict) -> None:
        """Undo a failed attach. A DEL that fails here is most likely the same error ADD met (a
        broken configuration that DEL meets again, forever): it is logged, and the record goes
        with the rest — the attachment never existed for the client."""
        try:
            await self._teardown(rec, keep_on_error=False)
        except Exception as e:  # the original error matters more
            log.warning("network: undoing %s/%s: %s", rec["namespace"], rec["id"], e)

    async def _teardown(self, rec: dict, keep_on_error: bool = True) -> None:
        rec["phase"] = "deleting"
        self._stop_resolver(rec)
        error = None
        if rec.get("conflist"):
            try:
                await self.cni.delete(rec["conflist"], self._att(rec), rec.get("result"))
            except cni.CniError as e:
                error = e
            await asyncio.to_thread(flush_conntrack, ips_of(rec.get("result")))
        if rec.get("owns_netns") and rec.get("netns"):
            await asyncio.to_thread(netns.remove, rec["netns"])
        if "joined" not in rec:
            shutil.rmtree(rec["files"], ignore_errors=True)
        if error is not None and keep_on_error:
            self._save(rec)
            raise error
        self._drop(rec)
        if error is not None:
            raise error

    async def check(self, ns: str, cid: str) -> None:
        rec = self.records.get((ns, cid))
        if rec is None:
            raise NotFound(f"container {cid} has no network attachment")
        if rec.get("conflist") and rec.get("phase") == "added":
            await self.cni.check(rec["conflist"], self._att(rec), rec.get("result") or {})

    # -- queries ---------------------------------------------------------------------------------
    def attachment(self, ns: str, cid: str) -> dict | None:
        rec = self.records.get((ns, cid))
        if rec is None:
            return None
        return {"mode": rec["mode"], "network": rec.get("network", ""),
                "netns": rec.get("netns", ""), "ips": ips_of(rec.get("result")),
                "mac": mac_of(rec.get("result"), rec.get("netns", "")),
                "ports": list(rec.get("ports") or []), "hostname": rec.get("hostname", ""),
                "gateway": _gateway(rec.get("result")),
                "gateway6": _gateway(rec.get("result"), 6)}

    def attached_to(self, name: str) -> list[dict]:
        return [r for r in self.records.values() if r.get("network") == name]

    # -- networks --------------------------------------------------------------------------------
    def host_routes(self) -> list:
        """(Blocking: pyroute2 runs an event loop of its own; call it in a thread.) The routes of the daemon's namespace (a new subnet may not overlap them), except the
        ones of our own bridges (their networks are checked by subnet)."""
        from pyroute2 import IPRoute
        own = {n for _, (_, c) in self.configs.all().items() for n in subnets_of(c)}
        out = []
        with IPRoute() as ipr:
            for family in (socket.AF_INET, socket.AF_INET6):
                for r in ipr.get_routes(family=family, table=254):
                    dst = r.get_attr("RTA_DST")
                    if not dst or r["dst_len"] == 0:
                        continue
                    try:
                        net = ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)
                    except ValueError:
                        continue
                    if net.is_link_local or net in own:
                        continue
                    out.append(net)
        return out

    async def create_network(self, name: str, subnet="", gateway="", options=None,
                             labels=None, ipv6=False, subnet6="", gateway6="") -> dict:
        routes = await asyncio.to_thread(self.host_routes)
        async with self.lock:
            return self.configs.create(name, subnet, gateway, options, labels, routes=routes,
                                       ipv6=ipv6, subnet6=subnet6, gateway6=gateway6)

    def networks(self) -> list[dict]:
        return [conf for _, (_, conf) in sorted(self.configs.all().items())]

    def network(self, name: str) -> dict:
        return self.configs.get(name)

    async def remove_network(self, name: str) -> None:
        async with self.lock:
            conf = self.configs.get(name)
            users = sorted(f"{r['namespace']}/{r['id']}" for r in self.attached_to(name))
            if users:
                raise FailedPrecondition(f"network {name} has active endpoints: "
                                         f"{', '.join(users)}")
            self.configs.remove(name)
            await self.rules.remove(conf)
            await asyncio.to_thread(remove_bridges, conf)


def _wants_resolver(rec: dict) -> bool:
    """A container with a namespace of its own on a user-defined network (docker's rule: the
    default bridge network has no name resolution between containers)."""
    return bool(rec.get("conflist")) and rec.get("network") not in ("", DEFAULT_NETWORK) \
        and rec.get("owns_netns") and "joined" not in rec


_preloading: list = []


def _preload_soon() -> None:
    """Import pyroute2 (~0.1-0.3 s, ~9 MiB of the daemon's memory) in the background once a
    network is first wanted (a container with the network label, or attachments left from the
    last run): a daemon whose containers use no network (ctr, Kubernetes-style clients) never
    pays for it."""
    if not _preloading:
        _preloading.append(threading.Thread(target=_preload, name="network-preload",
                                            daemon=True))
        _preloading[0].start()


def _preload() -> None:
    import pyroute2  # noqa: F401


def _chain(conflist: dict, ports: list) -> dict:
    """The conflist of one attachment: the supervisor's own networks leave out the plugins they
    mark optional when the container asks nothing of their capabilities (portmap without
    published ports: its DEL would otherwise run iptables for nothing). The record keeps this
    very list, so DEL runs the same chain ADD did."""
    optional = (conflist.get("io.pyrunc") or {}).get("optional") or []
    if ports or not optional:
        return conflist
    return dict(conflist, plugins=[p for p in conflist["plugins"]
                                   if p.get("type") not in optional])


def _gateway(result, version: int = 4) -> str:
    for ip in (result or {}).get("ips") or []:
        if ip.get("gateway") and (":" in ip["gateway"]) == (version == 6):
            return ip["gateway"]
    return ""


def _set_netns(spec: dict, path: str | None) -> None:
    linux = spec.setdefault("linux", {})
    nss = [n for n in linux.get("namespaces") or [] if n.get("type") != "network"]
    if path:
        nss.append({"type": "network", "path": path})
    linux["namespaces"] = nss


def remove_bridges(conflist: dict) -> None:
    """The bridge devices a removed network's bridge plugins made (the plugin never removes
    them)."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        for plugin in conflist.get("plugins") or []:
            if plugin.get("type") == "bridge" and plugin.get("bridge"):
                idx = ipr.link_lookup(ifname=plugin["bridge"])
                if idx:
                    ipr.link("del", index=idx[0])


def flush_conntrack(ips: list[str]) -> None:
    """Delete the conntrack entries of the container's addresses (either direction)."""
    if not ips:
        return
    from pyroute2 import Conntrack
    wanted = set(ips)
    try:
        with Conntrack() as ct:
            for entry in list(ct.dump_entries()):
                addrs = {entry.tuple_orig.saddr, entry.tuple_orig.daddr,
                         entry.tuple_reply.saddr, entry.tuple_reply.daddr}
                if addrs & wanted:
                    try:
                        ct.entry("del", tuple_orig=entry.tuple_orig)
                    except Exception:
                        pass
    except OSError as e:  # no nf_conntrack: nothing to flush
        log.debug("conntrack: %s", e)
