"""Restart policies, kept by the supervisor: a container comes back after its task exits and
after the supervisor itself restarts, with Docker's back-off, until a user stops it.

A container opts in with containerd's restart-monitor labels (any client can set them):

- ``containerd.io/restart.policy``: ``always``, ``unless-stopped`` or ``on-failure[:N]``
  (N restarts at most; 0 or absent is unlimited);
- ``containerd.io/restart.status``: ``running`` while the user wants it up; a client sets
  ``stopped`` *before* it stops, kills or removes the container, which ends the restarts;
- ``containerd.io/restart.loguri``: where a restarted task's stdout and stderr go (``file://``).

The monitor counts restarts in ``io.pyrunc/restart.count`` (Docker's RestartCount; a client
resets it when the user starts the container again).

Timing is Docker's: the first restart after 100 ms, each consecutive one after twice the delay,
at most a minute; a task that ran 10 s or more resets the delay. Before acting, the labels are
read again, so a stop or removal during the delay wins. At start, containers whose task is gone
or stopped are brought back: ``always`` even if the user had stopped it (as dockerd does at its
start), ``unless-stopped`` and ``on-failure`` only if the user had not.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from supervisor import errors
from supervisor.core.tasks import CreateTask
from supervisor.restartpolicy import COUNT, LOGURI, POLICY, wants_restart

log = logging.getLogger("pyrunc-supervisor")
STDIN = "io.pyrunc/stdin"
MIN_DELAY, MAX_DELAY, RESET_AFTER = 0.1, 60.0, 10.0

class RestartMonitor:
    def __init__(self, store, tasks, events, snapshotters=None):
        self.store, self.tasks, self.events = store, tasks, events
        self.snapshotters = snapshotters or {}
        self.delays: dict[tuple[str, str], float] = {}
        self.started_at: dict[tuple[str, str], float] = {}
        self.pending: set[tuple[str, str]] = set()
        self.stopped = False
        self.background: set[asyncio.Task] = set()

    # -- life ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.events.tap(self._on_event)  # a tap: it must not take held exits from clients
        for ns, _ in self.store.ns_list():
            for data in self.store.container_list(ns):
                c = _container(data)
                if POLICY in c.labels:
                    exit_status = self._exit_of(ns, c.id)
                    if exit_status != "running" and wants_restart(c.labels, exit_status, True):
                        self._schedule(ns, c.id, exit_status, at_start=True)

    async def stop(self) -> None:
        self.stopped = True
        for t in self.background:
            t.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)

    def _exit_of(self, ns: str, cid: str):
        """"running", the init's exit status, or None when there is no task."""
        if not self.tasks.has_task(ns, cid):
            return None
        try:
            task = self.tasks.get(ns, cid)
        except errors.NotFound:
            return None
        return task.init.exit_status if task.init.status == "stopped" else "running"

    # -- exits ------------------------------------------------------------------------------------
    def _on_event(self, env) -> None:
        if self.stopped or env.topic != "/tasks/exit":
            return
        from supervisor.gen.containerd.events import task_pb2
        ev = task_pb2.TaskExit()
        ev.ParseFromString(env.event.value)
        if ev.id and ev.id != ev.container_id:
            return  # an exec process, not the container
        data = self.store.container_get(env.namespace, ev.container_id)
        if data is not None and POLICY in _container(data).labels:
            self._schedule(env.namespace, ev.container_id, ev.exit_status)

    def _schedule(self, ns: str, cid: str, exit_status, at_start: bool = False) -> None:
        key = (ns, cid)
        if key in self.pending:
            return
        ran = time.monotonic() - self.started_at.get(key, 0.0)
        delay = MIN_DELAY if ran >= RESET_AFTER or key not in self.delays else \
            min(self.delays[key] * 2, MAX_DELAY)
        self.delays[key] = delay
        self.pending.add(key)
        t = asyncio.get_running_loop().create_task(
            self._restart_later(ns, cid, exit_status, 0.0 if at_start else delay, at_start))
        self.background.add(t)
        t.add_done_callback(self.background.discard)

    async def _restart_later(self, ns, cid, exit_status, delay, at_start) -> None:
        key = (ns, cid)
        try:
            await asyncio.sleep(delay)
            data = self.store.container_get(ns, cid)  # again: a stop or rm meanwhile wins
            if data is None:
                return
            c = _container(data)
            if self._exit_of(ns, cid) == "running" or \
                    not wants_restart(c.labels, exit_status, at_start):
                return
            await self._restart(ns, c)
            self.started_at[key] = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - logged; the next exit tries again
            log.warning("restart of %s/%s failed: %s", ns, cid, e)
        finally:
            self.pending.discard(key)

    async def _restart(self, ns: str, c) -> None:
        if self.tasks.has_task(ns, c.id):
            await self.tasks.delete(ns, c.id)
        spec = json.loads(c.spec.value)
        binary, root = _runtime_options(c)
        uri = c.labels.get(LOGURI, "")
        stdin = c.labels.get(STDIN, "")  # a FIFO kept for attach (supervisor/ctlstdin.py)
        if stdin and not _is_fifo(stdin):
            stdin = ""
        await self.tasks.create(ns, CreateTask(
            id=c.id, spec=spec, rootfs=self._rootfs(ns, c), stdin=stdin, stdout=uri, stderr=uri,
            terminal=bool((spec.get("process") or {}).get("terminal")), runtime=binary,
            runtime_root=root, labels=dict(c.labels)))
        await self.tasks.start(ns, c.id, "")
        latest = self.store.container_get(ns, c.id)
        if latest is not None:
            cur = _container(latest)
            cur.labels[COUNT] = str(int(cur.labels.get(COUNT) or 0) + 1)
            self.store.container_replace(ns, c.id, cur.SerializeToString())


    def _rootfs(self, ns: str, c) -> list[dict]:
        """The mounts of the container's own snapshot (a container made from an image), as a
        client passes them to Tasks.Create; none for a container with a rootfs in its spec."""
        if not c.snapshot_key:
            return []
        sn = self.snapshotters.get(c.snapshotter or "overlayfs")
        if sn is None:
            raise errors.NotFound(f"snapshotter {c.snapshotter!r} not found")
        return sn.mounts(ns, c.snapshot_key)


def _is_fifo(path: str) -> bool:
    import stat
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _container(data: bytes):
    from supervisor.gen.containerd.services.containers.v1 import containers_pb2
    c = containers_pb2.Container()
    c.ParseFromString(data)
    return c


def _runtime_options(c) -> tuple[str, str]:
    from supervisor.gen.containerd.runc.v1 import options_pb2
    opts = c.runtime.options
    if opts.type_url.rsplit("/", 1)[-1] != "containerd.runc.v1.Options":
        return "", ""
    parsed = options_pb2.Options()
    try:
        parsed.ParseFromString(opts.value)
    except Exception:  # noqa: BLE001 - the Create API would refuse it the same way
        return "", ""
    return parsed.binary_name, parsed.root
