"""pyrunc-ctl's network commands and ``run`` options, with docker's flag names and output shapes.

    pyrunc-ctl network create [--ipv6] [--subnet CIDR]... [--gateway IP]... [-o KEY=VALUE]
                              [--label K=V] NAME
    pyrunc-ctl network ls | network inspect NAME... | network rm NAME...
    pyrunc-ctl run --network NAME|host|none|container:ID -p [IP:][HOST:]CONTAINER[/proto]
                   --dns IP --hostname NAME ...
    pyrunc-ctl port CONTAINER

``run`` turns its options into the container's labels (``io.pyrunc.network``...), which the
supervisor reads at task create (docs/network.md). Unlike docker, a container gets a network only
when it asks for one (``--network``, or ``-p``, which means the ``bridge`` network): a
``pyrunc-ctl run`` on a host never makes a bridge or firewall rules there unasked. Network
management goes through pyrunc's own gRPC service (pyrunc.network.v1.Networks).
"""
from __future__ import annotations

import json
import os


def add_run_options(p) -> None:
    p.add_argument("--network", "--net", default=os.environ.get("PYRUNC_CTL_NETWORK", ""),
                   help="NAME (bridge: the default network), host, none or container:ID; "
                   "without it a container has a namespace of its own with loopback only, "
                   "unless -p asks for the bridge network ($PYRUNC_CTL_NETWORK sets a default)")
    p.add_argument("-p", "--publish", action="append", default=[],
                   help="publish a port: [IP:][HOST:]CONTAINER[/tcp|udp]; HOST and "
                   "CONTAINER may be ranges (8000-8002:80-82)")
    p.add_argument("--dns", action="append", default=[], help="a resolver for /etc/resolv.conf")


def add_commands(table: dict) -> None:
    """ctl's command table: ``network`` and its subcommands (``port`` is ctlcmds's)."""
    table["network"] = ("manage networks", _setup_network, "supervisor.ctlnet:cmd_network")


def _setup_network(p) -> None:
    nsub = p.add_subparsers(dest="net_cmd", required=True)
    c = nsub.add_parser("create", help="create a bridge network")
    c.add_argument("--subnet", action="append", default=[],
                   help="an IPv4 and/or (with --ipv6) an IPv6 subnet")
    c.add_argument("--gateway", action="append", default=[])
    c.add_argument("--ipv6", action="store_true", help="dual stack: IPv6 besides IPv4")
    c.add_argument("-d", "--driver", default="bridge", choices=["bridge"])
    c.add_argument("-o", "--opt", action="append", default=[], help="bridge=NAME, mtu=N")
    c.add_argument("--label", action="append", default=[])
    c.add_argument("name")
    nsub.add_parser("ls", help="list networks")
    nsub.add_parser("inspect", help="networks as JSON").add_argument("names", nargs="+")
    nsub.add_parser("rm", help="remove networks").add_argument("names", nargs="+")


def run_labels(a, name: str = "") -> dict:
    """The labels ``run``'s network options become (read by the supervisor at task create)."""
    from supervisor.network.labels import LABEL, LABEL_ALIASES, LABEL_DNS, LABEL_PORTS
    network = a.network or ("bridge" if a.publish else "")
    if not network:
        if a.dns:
            from supervisor.ctlbase import CtlError
            raise CtlError("--dns needs a network (--network)")
        return {}
    labels = {LABEL: network}
    if a.publish:
        labels[LABEL_PORTS] = ",".join(a.publish)
    if a.dns:
        labels[LABEL_DNS] = ",".join(a.dns)
    if name:
        labels[LABEL_ALIASES] = name   # peers on the network find it by its docker name
    return labels


def _pairs(items, what: str) -> dict:
    from supervisor.ctlbase import CtlError
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CtlError(f"{what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


class Networks:
    def __init__(self, ctl):
        from supervisor.ctlbase import grpc
        self.grpc, self.ctl = grpc, ctl
        self.md = [("containerd-namespace", ctl.client.namespace)]
        if getattr(ctl.client, "local", False):  # the supervisor's local API (ctllocal)
            self.pb, self.stub = ctl.messages, ctl.client.networks
            return
        from supervisor.gen.pyrunc.network.v1 import network_pb2, network_pb2_grpc
        self.pb = network_pb2
        self.stub = network_pb2_grpc.NetworksStub(ctl.client.channel)

    def attachment(self, cid: str):
        try:
            return self.stub.Attachment(self.pb.AttachmentRequest(container_id=cid),
                                        metadata=self.md)
        except self.grpc.RpcError as e:
            if e.code() == self.grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def get(self, name: str):
        from supervisor.ctlbase import CtlError
        try:
            return self.stub.Get(self.pb.GetNetworkRequest(name=name)).network
        except self.grpc.RpcError as e:
            if e.code() == self.grpc.StatusCode.NOT_FOUND:
                raise CtlError(f"network {name} not found") from None
            raise


def cmd_network(ctl, a) -> int:
    nets = Networks(ctl)
    if a.net_cmd == "create":
        (subnet, subnet6), (gateway, gateway6) = _by_family(a.subnet, "--subnet"), \
            _by_family(a.gateway, "--gateway")
        req = nets.pb.CreateNetworkRequest(name=a.name, subnet=subnet, gateway=gateway,
                                           options=_pairs(a.opt, "option"),
                                           labels=_pairs(a.label, "label"), ipv6=a.ipv6,
                                           subnet6=subnet6, gateway6=gateway6)
        print(nets.stub.Create(req).network.id)
    elif a.net_cmd == "ls":
        from supervisor.ctlbase import print_table
        rows = [(n.id, n.name, n.driver, "local")
                for n in nets.stub.List(nets.pb.ListNetworksRequest()).networks]
        print_table(("NETWORK ID", "NAME", "DRIVER", "SCOPE"), rows)
    elif a.net_cmd == "inspect":
        names = {r.id: r.name for r in ctl.records()}
        print(json.dumps([docker_network(nets.get(n), names) for n in a.names], indent=2))
    elif a.net_cmd == "rm":
        for name in a.names:
            nets.get(name)
            nets.stub.Delete(nets.pb.DeleteNetworkRequest(name=name))
            print(name)
    return 0


def _by_family(values: list[str], flag: str) -> tuple[str, str]:
    """(the IPv4 value, the IPv6 value) of a repeated flag: at most one of each."""
    from supervisor.ctlbase import CtlError
    v4 = [v for v in values if ":" not in v]
    v6 = [v for v in values if ":" in v]
    if len(v4) > 1 or len(v6) > 1:
        raise CtlError(f"{flag}: at most one IPv4 and one IPv6 value")
    return (v4[0] if v4 else ""), (v6[0] if v6 else "")


def docker_network(n, names: dict | None = None) -> dict:
    """``docker network inspect``'s shape."""
    return {
        "Name": n.name, "Id": n.id, "Scope": "local", "Driver": n.driver, "EnableIPv6": n.ipv6,
        "IPAM": {"Driver": "host-local", "Config": [
            {"Subnet": s, **({"Gateway": g} if g else {})}
            for s, g in zip(n.subnets, list(n.gateways) + [""] * len(n.subnets))]},
        "Containers": {e.container_id: {
            "Name": (names or {}).get(e.container_id, e.container_id), "Namespace": e.namespace, "MacAddress": e.mac,
            "IPv4Address": ", ".join(ip for ip in e.ips if ":" not in ip),
            "IPv6Address": ", ".join(ip for ip in e.ips if ":" in ip)} for e in n.endpoints},
        "Options": dict(n.options), "Labels": dict(n.labels),
        "ConfigList": json.loads(n.conflist or "{}"),
    }


def network_settings(ctl, cid: str) -> dict | None:
    """``docker inspect``'s NetworkSettings for a container (None without an attachment)."""
    att = Networks(ctl).attachment(cid)
    if att is None:
        return None
    ports: dict = {}
    for m in att.ports:
        ports.setdefault(f"{m.container_port}/{m.protocol}", []).append(
            {"HostIp": m.host_ip or "0.0.0.0", "HostPort": str(m.host_port)})
    ip = next((i for i in att.ips if ":" not in i), "")
    ip6 = next((i for i in att.ips if ":" in i), "")
    return {"NetworkMode": att.mode, "SandboxKey": att.netns, "IPAddress": ip,
            "Gateway": att.gateway, "GlobalIPv6Address": ip6, "IPv6Gateway": att.gateway6,
            "MacAddress": att.mac, "Ports": ports,
            "Networks": {att.network: {"IPAddress": ip, "Gateway": att.gateway,
                                       "GlobalIPv6Address": ip6, "IPv6Gateway": att.gateway6,
                                       "MacAddress": att.mac, "IPAddresses": list(att.ips)}}
            if att.network else {}}


def published(ctl, cid: str) -> list[dict]:
    """A container's published ports (``pyrunc-ctl port``), from its network attachment."""
    att = Networks(ctl).attachment(cid)
    return [{"container_port": m.container_port, "proto": m.protocol, "host_ip": m.host_ip,
             "host_port": m.host_port} for m in (att.ports if att is not None else ())]
