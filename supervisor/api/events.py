"""Events: Publish, Forward, Subscribe (with containerd filters)."""
from __future__ import annotations

from google.protobuf import empty_pb2

from supervisor import filters
from supervisor.api.common import namespace, rpc, rpc_stream
from supervisor.checks import validate_id
from supervisor.errors import InvalidArgument
from supervisor.events import timestamp, validate_topic
from supervisor.gen.containerd.services.events.v1 import events_pb2_grpc as grpc_pb
from supervisor.gen.containerd.types import event_pb2


class Events(grpc_pb.EventsServicer):
    def __init__(self, services):
        self.exchange = services.get("events")

    @rpc
    async def Publish(self, request, context):
        ns = namespace(context)
        validate_topic(request.topic)
        if not request.event.type_url:
            raise InvalidArgument("event is required")
        self.exchange.forward(event_pb2.Envelope(timestamp=timestamp(), namespace=ns,
                                                 topic=request.topic, event=request.event))
        return empty_pb2.Empty()

    @rpc
    async def Forward(self, request, context):
        env = request.envelope
        validate_topic(env.topic)
        validate_id(env.namespace, "namespace")
        self.exchange.forward(env)
        return empty_pb2.Empty()

    @rpc_stream
    async def Subscribe(self, request, context):
        flt = filters.parse(list(request.filters))
        async for env in self.exchange.subscribe(flt):
            yield env


def register(server, services) -> None:
    grpc_pb.add_EventsServicer_to_server(Events(services), server)
