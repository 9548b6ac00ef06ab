"""What dockerd needs of the supervisor beyond ctr (issue 11): the standard gRPC health service,
and exits that happened while no client was subscribed reaching the first subscriber after a
restart, once.  (Namespaces.Get of an unknown namespace is in test_sv_api.py; the whole of
Docker on the supervisor is in conformance/engines/test_docker.py.)
"""
from __future__ import annotations

import asyncio
import os

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supervisor import events, filters
from supervisor.gen.containerd.events import task_pb2 as evpb
from supervisor.gen.containerd.services.events.v1 import events_pb2 as epb
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb

from sv_harness import create, destroy, pid_alive, wait_for


def test_health_service_answers_serving(sv):
    stub = health_pb2_grpc.HealthStub(sv.client().channel)
    got = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert got.status == health_pb2.HealthCheckResponse.SERVING
    try:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        raise AssertionError("an unknown service name answered")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND


def _exit_filters(sv) -> list[str]:
    return [f'topic=="/tasks/exit",namespace=={sv.ns}']


def _first_exit(stream) -> evpb.TaskExit:
    env = next(stream)
    msg = evpb.TaskExit()
    msg.ParseFromString(env.event.value)
    return msg


def test_exit_while_daemon_down_reaches_first_subscriber_once(sv_own, sv_rootfs):
    sv = sv_own
    client = sv.client()
    cid = sv.id("quit")
    trigger = os.path.join(sv_rootfs, "tmp", "go-" + cid)
    create(sv, client, sv_rootfs, ["/bin/sh", "-c", f"while [ ! -e /tmp/go-{cid} ]; do "
                                   "sleep 0.02; done; exit 42"], cid=cid)
    pid = client.tasks.Start(tpb.StartRequest(container_id=cid)).pid
    sv.kill9()
    try:
        open(trigger, "w").close()
        wait_for(lambda: not pid_alive(pid), 60, what="the exit while the daemon is down")
    finally:
        os.unlink(trigger)
    sv.start()
    client = sv.client()

    first = client.events.Subscribe(epb.SubscribeRequest(filters=_exit_filters(sv)),
                                    timeout=60)
    got = _first_exit(first)
    assert (got.container_id, got.exit_status, got.pid) == (cid, 42, pid)
    first.cancel()

    # a second subscriber gets no second copy: its first exit is one published after it came
    second = client.events.Subscribe(epb.SubscribeRequest(filters=_exit_filters(sv)),
                                     timeout=60)
    marker = sv.id("marker")

    def publish_marker():
        client.events.Publish(epb.PublishRequest(
            topic="/tasks/exit", event=events.pack(evpb.TaskExit(container_id=marker))))
    # the subscription is made on the first read: publish from the side until it is read
    import threading
    stop = threading.Event()

    def keep_publishing():
        while not stop.wait(0.2):
            publish_marker()
    t = threading.Thread(target=keep_publishing, daemon=True)
    t.start()
    try:
        assert _first_exit(second).container_id == marker
    finally:
        stop.set()
        t.join(10)
        second.cancel()
    destroy(sv, client, cid)


def test_fresh_daemon_holds_nothing_and_holds_only_exits():
    """The exchange's rule on its own: without a restart window nothing is held; within one,
    an undelivered exit goes to the first matching subscriber, other topics are not kept."""
    async def scenario():
        ex = events.Exchange()
        ex.task("ns1", "/tasks/exit", "TaskExit", container_id="early")
        assert ex.held == []
        ex.hold_undelivered(60)
        ex.task("ns1", "/tasks/start", "TaskStart", container_id="a")
        ex.task("ns1", "/tasks/exit", "TaskExit", container_id="a", exit_status=3)
        ex.task("ns2", "/tasks/exit", "TaskExit", container_id="b", exit_status=4)
        assert [e.topic for e in ex.held] == ["/tasks/exit", "/tasks/exit"]

        got = []

        async def take(flt, n):
            async for env in ex.subscribe(filters.parse(flt)):
                msg = evpb.TaskExit()
                msg.ParseFromString(env.event.value)
                got.append((env.namespace, msg.container_id, msg.exit_status))
                if len(got) >= n:
                    return
        await asyncio.wait_for(take(["namespace==ns2"], 1), 10)
        assert got == [("ns2", "b", 4)]
        await asyncio.wait_for(take(["namespace==ns1"], 2), 10)
        assert got[1] == ("ns1", "a", 3)
        assert ex.held == []
        ex.hold_until = 1.0         # the window is over: what is left goes, nothing more is kept
        ex.task("ns1", "/tasks/exit", "TaskExit", container_id="late")
        assert ex.held == [] and ex.hold_until == 0.0
    asyncio.run(scenario())
