"""pyrunc.network.v1.Networks: the supervisor's CNI networks and containers' attachments
(proto/pyrunc/network/v1/network.proto), served by supervisor.network.manager.NetworkManager.

Translation only: conflists become ``Network`` messages (subnets and gateways read from their IPAM
sections, the supervisor's own metadata from the conflist's ``io.pyrunc`` key), attachment
records become ``AttachmentResponse``."""
from __future__ import annotations

import json

from google.protobuf import empty_pb2

from supervisor.api.common import namespace, rpc
from supervisor.errors import NotFound
from supervisor.gen.pyrunc.network.v1 import network_pb2 as pb, network_pb2_grpc as grpc_pb
from supervisor.network import config
from supervisor.network.manager import ips_of, mac_of


def network_pb(conf: dict, attached: list[dict]) -> pb.Network:
    meta = conf.get("io.pyrunc") or {}
    plugins = conf.get("plugins") or [{}]
    msg = pb.Network(
        name=conf["name"], id=meta.get("id") or config.network_id(conf["name"]),
        driver=meta.get("driver") or plugins[0].get("type", ""),
        subnets=[str(s) for s in config.subnets_of(conf)], gateways=config.gateways_of(conf),
        options={k: str(v) for k, v in (meta.get("options") or {}).items()},
        labels={k: str(v) for k, v in (meta.get("labels") or {}).items()},
        conflist=json.dumps(conf), ipv6=bool(meta.get("ipv6")))
    for rec in sorted(attached, key=lambda r: (r["namespace"], r["id"])):
        msg.endpoints.append(pb.Endpoint(
            namespace=rec["namespace"], container_id=rec["id"], ips=ips_of(rec.get("result")),
            mac=mac_of(rec.get("result"), rec.get("netns", ""))))
    return msg


class Networks(grpc_pb.NetworksServicer):
    def __init__(self, services):
        self.mgr = services.get("networks")

    def _pb(self, conf: dict) -> pb.Network:
        return network_pb(conf, self.mgr.attached_to(conf["name"]))

    @rpc
    async def Create(self, request, context):
        conf = await self.mgr.create_network(request.name, request.subnet, request.gateway,
                                              dict(request.options), dict(request.labels),
                                              request.ipv6, request.subnet6, request.gateway6)
        return pb.CreateNetworkResponse(network=self._pb(conf))

    @rpc
    async def Get(self, request, context):
        return pb.GetNetworkResponse(network=self._pb(self.mgr.network(request.name)))

    @rpc
    async def List(self, request, context):
        return pb.ListNetworksResponse(networks=[self._pb(c) for c in self.mgr.networks()])

    @rpc
    async def Delete(self, request, context):
        await self.mgr.remove_network(request.name)
        return empty_pb2.Empty()

    @rpc
    async def Attachment(self, request, context):
        info = self.mgr.attachment(namespace(context), request.container_id)
        if info is None:
            raise NotFound(f"container {request.container_id} has no network attachment")
        return pb.AttachmentResponse(
            container_id=request.container_id, mode=info["mode"], network=info["network"],
            netns=info["netns"], ips=info["ips"], mac=info["mac"], gateway=info["gateway"],
            hostname=info["hostname"], gateway6=info["gateway6"],
            ports=[pb.PortMapping(host_ip=m["hostIP"], host_port=m["hostPort"],
                                  container_port=m["containerPort"], protocol=m["protocol"])
                   for m in info["ports"]])

    @rpc
    async def Check(self, request, context):
        await self.mgr.check(namespace(context), request.container_id)
        return empty_pb2.Empty()


def register(server, services) -> None:
    grpc_pb.add_NetworksServicer_to_server(Networks(services), server)
