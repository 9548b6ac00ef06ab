"""The task manager: running containers, each owned by one shim, on plain records.

Requests come in as the dataclasses below (``CreateTask``, ``ExecProcess``), not protobuf: the
gRPC servicers in supervisor/api/ translate, so a second API (CRI) can drive the same core. The
bundle on disk is described in bundles.py, the shim pool in shims.py, reconnecting after a restart
and handling a dead shim in recovery.py.

The manager keeps a cache of every process's state (pid, status, exit) fed by the shim's replies
and events, so Get/List/Wait never need a round trip. After a restart it reconnects to every shim
and asks for its state; unacknowledged exit events are redelivered by the shims.
"""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field

from supervisor import errors, shimclient
from supervisor.checks import LOG_LABEL, check_log, check_stdio, validate_id
from supervisor.core import recovery
from supervisor.core.bundles import Bundle
from supervisor.core.shims import ShimPool
from supervisor.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from supervisor.events import timestamp


@dataclass
class CreateTask:
    """A task to create for container ``id``; ``rootfs`` are containerd Mounts as dicts
    (type, source, target, options); ``runtime``/``runtime_root`` default to the daemon's."""
    id: str
    spec: dict
    rootfs: list[dict] = field(default_factory=list)
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    runtime: str = ""
    runtime_root: str = ""
    labels: dict = field(default_factory=dict)  # the container's (network requests, see network/)


@dataclass
class ExecProcess:
    exec_id: str
    spec: dict
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


class Proc:
    """The daemon's view of one process: the init process (exec_id "") or an exec. ``status``
    mirrors the shim's state (shim/states.py): created, running, paused (the init only), stopped."""

    def __init__(self, exec_id: str, stdin="", stdout="", stderr="", terminal=False):
        self.exec_id = exec_id
        self.stdin, self.stdout, self.stderr, self.terminal = stdin, stdout, stderr, terminal
        self.pid = 0
        self.status = "created"
        self.exit_status = 0
        self.exited_at = 0.0
        self.exited = asyncio.Event()

    def mark_exited(self, status: int, at: float) -> bool:
        """Record an exit; False if it was already known."""
        if self.status == "stopped" and self.exited.is_set():
            return False
        self.status, self.exit_status, self.exited_at = "stopped", status, at
        self.exited.set()
        return True

    def load(self, d: dict) -> None:
        self.pid = d.get("pid", 0)
        self.stdin, self.stdout, self.stderr = d.get("stdin", ""), d.get("stdout", ""), d.get(
            "stderr", "")
        self.terminal = bool(d.get("terminal"))
        status = d.get("status", "created")
        if status == "stopped":
            self.mark_exited(d.get("exit_status", 0), d.get("exited_at", 0.0))
        else:
            self.status = status  # the shim's state name (shim/states.py), "paused" included


class Task:
    def __init__(self, ns: str, cid: str, bundle: Bundle):
        self.ns, self.id, self.bundle = ns, cid, bundle
        self.path = bundle.path
        self.info: dict = {}
        self.procs: dict[str, Proc] = {}
        self.shim: shimclient.ShimClient | None = None
        self.ready = False      # create finished
        self.deleting = False   # the shim is expected to go away
        self.dead = False       # the shim died; container cleaned up

    @property
    def init(self) -> Proc:
        return self.procs[""]

    def shim_or_fail(self) -> shimclient.ShimClient:
        if self.shim is None or self.dead:
            raise NotFound("process already finished")
        return self.shim


class TaskManager:
    def __init__(self, state_dir: str, runtime: str, runtime_root: str, exchange):
        self.state_dir = state_dir
        self.tasks_dir = os.path.join(state_dir, "tasks")
        self.runtime = runtime
        self.runtime_root = runtime_root
        self.events = exchange
        self.shims = ShimPool(os.path.join(state_dir, "s"), os.path.join(state_dir, "shim.log"))
        self.tasks: dict[tuple[str, str], Task] = {}
        self.network = None  # a network.manager.NetworkManager, set by the daemon
        self.background: set[asyncio.Task] = set()
        os.makedirs(self.tasks_dir, mode=0o700, exist_ok=True)
        os.chmod(self.tasks_dir, 0o700)

    # -- lifecycle of the manager ----------------------------------------------------------
    async def open(self) -> None:
        await self.shims.open()
        await recovery.recover(self)
        if self.network is not None:
            await self.network.reconcile(set(self.tasks))
        self.shims.refill()

    async def close(self) -> None:
        """Daemon shutdown: drop connections; containers and their shims keep running."""
        await self.shims.close()
        for task in self.tasks.values():
            if task.shim is not None:
                task.shim.close()
        for bg in list(self.background):
            bg.cancel()

    def _bg(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self.background.add(t)
        t.add_done_callback(self.background.discard)

    def bundle(self, ns: str, cid: str) -> Bundle:
        return Bundle(self.tasks_dir, ns, cid)

    # -- a task's shim -----------------------------------------------------------------------
    def bind(self, task: Task, client: shimclient.ShimClient) -> None:
        task.shim = client
        client.on_event = lambda ev: self._on_event(task, ev)
        client.on_lost = lambda c: self._on_lost(task, c)

    def _on_event(self, task: Task, ev: dict) -> None:
        kind = ev.get("type")
        if kind == "oom":
            self.events.task(task.ns, "/tasks/oom", "TaskOOM", container_id=task.id)
            return
        if kind != "exit":
            return
        proc = task.procs.get(ev.get("exec_id", ""))
        if proc is None:
            return
        proc.pid = proc.pid or ev.get("pid", 0)
        proc.mark_exited(ev.get("exit_status", 0), ev.get("exited_at", 0.0))
        self.publish_exit(task, proc)

    def publish_exit(self, task: Task, proc: Proc) -> None:
        self.events.task(task.ns, "/tasks/exit", "TaskExit", container_id=task.id,
                         id=proc.exec_id or task.id, pid=proc.pid, exit_status=proc.exit_status,
                         exited_at=timestamp(proc.exited_at))

    def _on_lost(self, task: Task, client) -> None:
        if task.deleting or task.shim is not client:
            return
        self._bg(recovery.shim_died(self, task))

    # -- lookup ---------------------------------------------------------------------------------
    def get(self, ns: str, cid: str) -> Task:
        task = self.tasks.get((ns, cid))
        if task is None or not task.ready:
            raise NotFound(f"task {cid} not found")
        return task

    def has_task(self, ns: str, cid: str) -> bool:
        return (ns, cid) in self.tasks

    def list(self, ns: str) -> list[Task]:
        return [t for (tns, _), t in sorted(self.tasks.items()) if tns == ns and t.ready]

    def proc(self, task: Task, exec_id: str) -> Proc:
        proc = task.procs.get(exec_id)
        if proc is None:
            raise NotFound(f"process {exec_id} not found" if exec_id else f"task {task.id} not found")
        return proc

    # -- create ---------------------------------------------------------------------------------
    async def create(self, ns: str, req: CreateTask) -> Task:
        key = (ns, req.id)
        if key in self.tasks:
            raise AlreadyExists(f"task {req.id}: already exists")
        check_stdio(req.stdin, req.stdout, req.stderr)
        check_log(req.labels.get(LOG_LABEL, ""))
        task = Task(ns, req.id, self.bundle(ns, req.id))
        self.tasks[key] = task
        try:
            await self._create(task, req)
        except BaseException:
            del self.tasks[key]
            await self._discard(task)
            raise
        task.ready = True
        self.events.task(ns, "/tasks/create", "TaskCreate", container_id=task.id,
                         bundle=task.path, rootfs=req.rootfs,
                         io=dict(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                                 terminal=req.terminal),
                         pid=task.init.pid)
        return task

    async def _create(self, task: Task, req: CreateTask) -> None:
        runtime = req.runtime or self.runtime
        root = req.runtime_root or os.path.join(self.runtime_root, task.ns)
        spec = req.spec
        if self.network is not None:
            spec = await self.network.attach(task.ns, task.id, req.labels, spec)
        task.bundle.create(spec, bool(req.rootfs))
        client = await self.shims.take()
        self.bind(task, client)
        task.info = {"namespace": task.ns, "id": task.id, "socket": client.path,
                     "shim_pid": client.pid, "runtime": runtime, "runtime_root": root,
                     "rootfs": req.rootfs}
        task.bundle.write("task.json", task.info)
        init = Proc("", req.stdin, req.stdout, req.stderr, req.terminal)
        task.procs[""] = init
        reply = await client.call("create", id=task.id, namespace=task.ns, bundle=task.path,
                                  runtime=runtime, runtime_root=root, stdin=req.stdin,
                                  stdout=req.stdout, stderr=req.stderr, terminal=req.terminal,
                                  rootfs=req.rootfs, log=req.labels.get(LOG_LABEL, ""))
        init.pid = reply["pid"]

    async def _discard(self, task: Task) -> None:
        """Undo a failed create: release the shim (it exits: it owns nothing) and the bundle."""
        client, task.shim = task.shim, None
        task.deleting = True
        await self.shims.release(client)
        task.bundle.remove()
        if self.network is not None:
            await self.network.detach(task.ns, task.id)

    # -- process operations ------------------------------------------------------------------------
    async def start(self, ns: str, cid: str, exec_id: str) -> Proc:
        task = self.get(ns, cid)
        proc = self.proc(task, exec_id)
        reply = await task.shim_or_fail().call("start", exec_id=exec_id)
        proc.pid = reply["pid"]
        if proc.status == "created":
            proc.status = "running"
        if exec_id:
            self.events.task(ns, "/tasks/exec-started", "TaskExecStarted", container_id=cid,
                             exec_id=exec_id, pid=proc.pid)
        else:
            self.events.task(ns, "/tasks/start", "TaskStart", container_id=cid, pid=proc.pid)
        return proc

    async def exec(self, ns: str, cid: str, req: ExecProcess) -> None:
        task = self.get(ns, cid)
        validate_id(req.exec_id, "exec id")
        if req.exec_id in task.procs:
            raise AlreadyExists(f"id {req.exec_id}: already exists")
        if not req.spec.get("args") or not isinstance(req.spec.get("args"), list):
            raise InvalidArgument("process spec: args must be a non-empty list")
        check_stdio(req.stdin, req.stdout, req.stderr)
        spec_path = task.bundle.write(f"exec-{req.exec_id}.json", req.spec)
        try:
            await task.shim_or_fail().call("exec", exec_id=req.exec_id, spec_path=spec_path,
                                           stdin=req.stdin, stdout=req.stdout,
                                           stderr=req.stderr, terminal=req.terminal)
        except BaseException:
            task.bundle.unlink(f"exec-{req.exec_id}.json")
            raise
        task.procs[req.exec_id] = Proc(req.exec_id, req.stdin, req.stdout, req.stderr,
                                       req.terminal)
        self.events.task(ns, "/tasks/exec-added", "TaskExecAdded", container_id=cid,
                         exec_id=req.exec_id)

    async def kill(self, ns: str, cid: str, exec_id: str, sig: int, all_: bool) -> None:
        task = self.get(ns, cid)
        proc = self.proc(task, exec_id)
        if proc.status == "stopped":
            raise NotFound("process already finished")
        await task.shim_or_fail().call("kill", exec_id=exec_id, signal=sig, all=all_)

    async def wait(self, ns: str, cid: str, exec_id: str) -> Proc:
        task = self.get(ns, cid)
        proc = self.proc(task, exec_id)
        await proc.exited.wait()
        return proc

    async def delete(self, ns: str, cid: str) -> Proc:
        task = self.get(ns, cid)
        init = task.init
        if not task.dead:
            status = init.status
            if status not in ("stopped", "created"):
                raise FailedPrecondition(f"task must be stopped before deletion: {status}")
            task.deleting = True
            try:
                reply = await task.shim_or_fail().call("delete", exec_id="")
            except BaseException:
                task.deleting = False
                raise
            init.mark_exited(reply["exit_status"], reply["exited_at"])
            task.shim.close()
        task.shim = None
        self.tasks.pop((ns, cid), None)
        task.bundle.remove()
        if self.network is not None:
            await self.network.detach(ns, cid)
        self.events.task(ns, "/tasks/delete", "TaskDelete", container_id=cid, pid=init.pid,
                         exit_status=init.exit_status, exited_at=timestamp(init.exited_at))
        return init

    async def delete_process(self, ns: str, cid: str, exec_id: str) -> Proc:
        if not exec_id:
            raise InvalidArgument("exec id is required (use Delete for the task itself)")
        task = self.get(ns, cid)
        proc = self.proc(task, exec_id)
        if not task.dead:
            await task.shim_or_fail().call("delete", exec_id=exec_id)
        task.procs.pop(exec_id, None)
        return proc

    async def pause(self, ns: str, cid: str) -> None:
        task = self.get(ns, cid)
        await task.shim_or_fail().call("pause")
        if task.init.status == "running":  # (not if its exit was seen meanwhile)
            task.init.status = "paused"
        self.events.task(ns, "/tasks/paused", "TaskPaused", container_id=cid)

    async def resume(self, ns: str, cid: str) -> None:
        task = self.get(ns, cid)
        await task.shim_or_fail().call("resume")
        if task.init.status == "paused":
            task.init.status = "running"
        self.events.task(ns, "/tasks/resumed", "TaskResumed", container_id=cid)

    async def update(self, ns: str, cid: str, resources: dict) -> None:
        task = self.get(ns, cid)
        path = task.bundle.write("resources.json", resources)
        await task.shim_or_fail().call("update", resources_path=path)

    async def stats(self, ns: str, cid: str) -> dict:
        """The runtime's statistics (``events --stats`` data) of a running task."""
        text = (await self.call(ns, cid, "stats"))["stats"]
        try:
            return json.loads(text).get("data") or {}
        except (ValueError, AttributeError):
            raise errors.SupervisorError("runtime events --stats: invalid JSON") from None

    async def call(self, ns: str, cid: str, op: str, **args) -> dict:
        """A pass-through operation on the task's shim (pids, stats, update, resize, closeio)."""
        return await self.get(ns, cid).shim_or_fail().call(op, **args)
