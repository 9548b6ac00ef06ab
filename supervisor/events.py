"""The event exchange: publishers put envelopes, subscribers get the ones their filters match.

Events are published in the order the supervisor performs the operations, which is containerd's
order for a container's life: /containers/create, /tasks/create, /tasks/start, (/tasks/exec-added,
/tasks/exec-started, /tasks/exit of execs, /tasks/paused, /tasks/resumed), /tasks/oom, /tasks/exit,
/tasks/delete, /containers/delete.

Payloads are packed into an Any whose type URL is the bare message name (``containerd.events.
TaskExit``), as containerd does. Every subscriber has a bounded queue; one that falls that far
behind is cut off (its stream ends) rather than letting memory grow.

After a restart that found tasks again, the exits the shims report while nobody listens yet
(the daemon publishes them during recovery, before its socket is up, and a client such as dockerd
re-subscribes only after it saw the health service answer) are *held*: for ``HOLD_SECONDS`` an
exit or OOM event no subscriber matched is kept, and the first subscriber whose filter matches it
gets it before anything live.  Each held event is handed out once, so a client that subscribes
twice never sees an exit twice.  containerd gets the same effect from its shims, which retry
publishing an event until containerd takes it.  The daemon's own watchers (the event log) are
*observers*: they see every event but are not subscribers, so they never take a held exit from
the client it is kept for.
"""
from __future__ import annotations

import asyncio
import re
import time

from google.protobuf import any_pb2

from supervisor import filters
from supervisor.errors import InvalidArgument
from supervisor.gen.containerd.events import (container_pb2, content_pb2, image_pb2,
                                              namespace_pb2, snapshot_pb2, task_pb2)
from supervisor.gen.containerd.types import event_pb2

QUEUE_MAX = 4096
HOLD_SECONDS = 60.0
HELD_TOPICS = ("/tasks/exit", "/tasks/oom")
_TOPIC = re.compile(r"^(/[A-Za-z0-9_.\-]+)+$")

# Message classes by type URL, for decoding event fields in filters.
EVENT_TYPES = {}
for _mod in (task_pb2, container_pb2, namespace_pb2, content_pb2, image_pb2, snapshot_pb2):
    for _msg in _mod.DESCRIPTOR.message_types_by_name.values():
        EVENT_TYPES[_msg.full_name] = getattr(_mod, _msg.name)


def pack(msg) -> any_pb2.Any:
    return any_pb2.Any(type_url=msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


def timestamp(seconds: float | None = None):
    from google.protobuf import timestamp_pb2
    ts = timestamp_pb2.Timestamp()
    ns = int((time.time() if seconds is None else seconds) * 1e9)
    ts.seconds, ts.nanos = divmod(ns, 1_000_000_000)
    return ts


def validate_topic(topic: str) -> None:
    if not _TOPIC.match(topic or ""):
        raise InvalidArgument(f"topic {topic!r}: must be a path like /tasks/exit")


def _adaptor(env: event_pb2.Envelope):
    decoded = []

    def event_field(path):
        if not decoded:
            cls = EVENT_TYPES.get(env.event.type_url.rsplit("/", 1)[-1])
            msg = cls() if cls else None
            if msg is not None:
                msg.ParseFromString(env.event.value)
            decoded.append(msg)
        obj = decoded[0]
        for name in path:
            if obj is None or not hasattr(obj, name):
                return None, False
            obj = getattr(obj, name)
        return obj, True

    def adapt(path):
        if path == ("topic",):
            return env.topic, True
        if path == ("namespace",):
            return env.namespace, True
        if path[0] == "event" and len(path) > 1:
            return event_field(path[1:])
        return None, False
    return adapt


class Subscriber:
    def __init__(self, flt: filters.Filter):
        self.filter = flt
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_MAX)
        self.overflowed = False


class Exchange:
    def __init__(self):
        self.subscribers: set[Subscriber] = set()
        self.observers: list = []      # callables seeing every envelope (not subscribers)
        self.held: list[event_pb2.Envelope] = []
        self.hold_until = 0.0          # time.monotonic() until which undelivered exits are held

    def hold_undelivered(self, seconds: float = HOLD_SECONDS) -> None:
        """Keep exits that reach no subscriber for ``seconds`` (see the module's docstring)."""
        self.hold_until = time.monotonic() + seconds

    def _holding(self) -> bool:
        if self.hold_until and time.monotonic() > self.hold_until:
            self.hold_until, self.held = 0.0, []
        return bool(self.hold_until)

    def _hold(self, env: event_pb2.Envelope) -> None:
        if env.topic in HELD_TOPICS and len(self.held) < QUEUE_MAX and self._holding():
            self.held.append(env)

    def _take_held(self, sub: Subscriber) -> None:
        if not self.held or not self._holding():
            return
        keep = []
        for env in self.held:
            if sub.filter.match(_adaptor(env)):
                sub.queue.put_nowait(env)
            else:
                keep.append(env)
        self.held = keep

    def publish(self, ns: str, topic: str, msg) -> None:
        env = event_pb2.Envelope(timestamp=timestamp(), namespace=ns, topic=topic, event=pack(msg))
        self.forward(env)

    def observe(self, fn) -> None:
        """Call ``fn(envelope)`` for every event from now on (it must not block)."""
        self.observers.append(fn)

    def forward(self, env: event_pb2.Envelope) -> None:
        for fn in self.observers:
            fn(env)
        if not self.subscribers:
            self._hold(env)
            return
        adapt = _adaptor(env)
        delivered = False
        for sub in list(self.subscribers):
            if sub.overflowed or not sub.filter.match(adapt):
                continue
            delivered = True
            try:
                sub.queue.put_nowait(env)
            except asyncio.QueueFull:
                sub.overflowed = True
                sub.queue = asyncio.Queue(1)
                sub.queue.put_nowait(None)
        if not delivered:
            self._hold(env)

    async def subscribe(self, flt: filters.Filter):
        """Yield matching envelopes until the subscriber falls too far behind or is cancelled."""
        sub = Subscriber(flt)
        self._take_held(sub)
        self.subscribers.add(sub)
        try:
            while True:
                env = await sub.queue.get()
                if env is None:
                    return
                yield env
        finally:
            self.subscribers.discard(sub)

    # -- typed helpers ------------------------------------------------------------------------
    def task(self, ns: str, topic: str, name: str, /, **fields) -> None:
        self.publish(ns, topic, getattr(task_pb2, name)(**fields))

    def container(self, ns: str, topic: str, name: str, /, **fields) -> None:
        self.publish(ns, topic, getattr(container_pb2, name)(**fields))

    def namespace(self, ns: str, topic: str, name: str, /, **fields) -> None:
        self.publish(ns, topic, getattr(namespace_pb2, name)(**fields))
