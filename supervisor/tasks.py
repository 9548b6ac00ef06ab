"""Tasks: running containers, each owned by one shim process.

State on disk, per task, in ``<state>/tasks/<namespace>/<id>/`` (the OCI bundle):
- ``config.json``   the container's spec as the runtime gets it;
- ``task.json``     what the daemon needs to find the task again: the shim's socket and pid, the
                    runtime binary and root, stdio, rootfs mounts;
- ``exits/*.json``  exit records the shim writes (durably) before reporting an exit;
- ``rootfs/``       mount point when the request carried rootfs mounts.

The daemon keeps a cache of every process's state (pid, status, exit) fed by the shim's replies and
events, so Get/List/Wait never need a round trip. After a restart (``recover``) it reconnects to
every shim and asks for its state; unacknowledged exit events are redelivered by the shims.

A shim that dies (``kill -9``) is noticed when its connection drops. Its container is then killed
and deleted through the runtime, its rootfs unmounted, and each process still running is reported
stopped with the exit status recorded by the shim if there is one, else ``KILLED_STATUS`` (137,
i.e. SIGKILL, which is what the container got). The task stays STOPPED until deleted, after which
the ID is free again.

Shims are forked by a zygote (a pre-initialised shim process, see shim/server.py), so they start
in a few milliseconds and share the zygote's memory copy-on-write; if there is no zygote, a shim
starts from a fresh interpreter. One idle shim is kept ready ("spare") all the same, which takes
even the fork off the ``run`` path.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import time

from supervisor import errors, shimclient
from supervisor.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from supervisor.events import timestamp
from supervisor.gen.containerd.runc.v1 import options_pb2
from supervisor.gen.containerd.types.task import task_pb2 as ttypes
from supervisor.shim.stdio import StdioError, check_dest

SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
KILLED_STATUS = 137
ID_RE = re.compile(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")
ID_MAX = 76
STATUS = {"created": ttypes.CREATED, "running": ttypes.RUNNING, "stopped": ttypes.STOPPED,
          "paused": ttypes.PAUSED}


def validate_id(value: str, what: str) -> None:
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > ID_MAX:
        raise InvalidArgument(f"{what} {value!r}: longer than {ID_MAX} characters")
    if not ID_RE.match(value):
        raise InvalidArgument(f"{what} {value!r} must match {ID_RE.pattern}")


def decode_json_any(value: bytes, what: str) -> dict:
    try:
        obj = json.loads(value or b"null")
    except ValueError as e:
        raise InvalidArgument(f"{what}: invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: must be a JSON object")
    return obj


class Proc:
    """The daemon's view of one process: the init process (exec_id "") or an exec."""

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
            self.status = "running" if status == "paused" else status


class Task:
    def __init__(self, ns: str, cid: str, path: str):
        self.ns, self.id, self.path = ns, cid, path
        self.info: dict = {}
        self.procs: dict[str, Proc] = {}
        self.shim: shimclient.ShimClient | None = None
        self.paused = False
        self.ready = False      # create finished
        self.deleting = False   # the shim is expected to go away
        self.dead = False       # the shim died; container cleaned up

    @property
    def init(self) -> Proc:
        return self.procs[""]

    def status_of(self, proc: Proc) -> str:
        if proc.exec_id == "" and proc.status == "running" and self.paused:
            return "paused"
        return proc.status

    def process_pb(self, proc: Proc) -> ttypes.Process:
        pb = ttypes.Process(container_id=self.id, id=proc.exec_id or self.id, pid=proc.pid,
                            status=STATUS[self.status_of(proc)], stdin=proc.stdin,
                            stdout=proc.stdout, stderr=proc.stderr, terminal=proc.terminal,
                            exit_status=proc.exit_status)
        if proc.status == "stopped":
            pb.exited_at.CopyFrom(timestamp(proc.exited_at))
        return pb

    def shim_or_fail(self) -> shimclient.ShimClient:
        if self.shim is None or self.dead:
            raise NotFound("process already finished")
        return self.shim


class TaskManager:
    def __init__(self, state_dir: str, runtime: str, runtime_root: str, exchange):
        self.state_dir = state_dir
        self.tasks_dir = os.path.join(state_dir, "tasks")
        self.sock_dir = os.path.join(state_dir, "s")
        self.shim_log = os.path.join(state_dir, "shim.log")
        self.runtime = runtime
        self.runtime_root = runtime_root
        self.events = exchange
        self.tasks: dict[tuple[str, str], Task] = {}
        self.spare: asyncio.Task | None = None
        self.zygote: shimclient.ShimClient | None = None
        self.zygote_starting: asyncio.Task | None = None
        self.background: set[asyncio.Task] = set()
        for d in (self.tasks_dir, self.sock_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)

    # -- lifecycle of the manager ----------------------------------------------------------
    async def open(self) -> None:
        shimclient.precompile_shim()
        try:
            await self._start_zygote()
        except (errors.SupervisorError, OSError):
            self.zygote = None  # shims then start from a fresh interpreter each
        await self.recover()
        self._refill_spare()

    async def close(self) -> None:
        """Daemon shutdown: drop connections; containers and their shims keep running."""
        if self.spare is not None:
            self.spare.cancel()
            if self.spare.done() and not self.spare.cancelled() and not self.spare.exception():
                self.spare.result().close()  # an idle shim exits when its daemon goes away
        for task in self.tasks.values():
            if task.shim is not None:
                task.shim.close()
        if self.zygote is not None:
            self.zygote.close()  # the zygote exits when its daemon goes away
        for bg in list(self.background):
            bg.cancel()

    def _bg(self, coro) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self.background.add(t)
        t.add_done_callback(self.background.discard)

    # -- shims -----------------------------------------------------------------------------------
    async def _start_zygote(self) -> None:
        path = os.path.join(self.sock_dir, "zygote-" + secrets.token_hex(4) + ".sock")
        await shimclient.spawn_shim(path, self.shim_log, zygote=True)
        client = shimclient.ShimClient(path, on_lost=lambda c: self._zygote_lost(c))
        await client.connect()
        self.zygote = client

    def _zygote_lost(self, client) -> None:
        if self.zygote is client:
            self.zygote = None

    async def _fork_shim(self, path: str) -> bool:
        """Have the zygote fork a shim at path; False if there is no working zygote."""
        if self.zygote is None:
            if self.zygote_starting is None or self.zygote_starting.done():
                self.zygote_starting = asyncio.get_running_loop().create_task(
                    self._start_zygote())
                self.zygote_starting.add_done_callback(lambda t: t.cancelled() or t.exception())
            return False
        try:
            await self.zygote.call("spawn", socket=path, log=self.shim_log)
            return True
        except errors.SupervisorError:
            return False

    async def _new_shim(self) -> shimclient.ShimClient:
        path = os.path.join(self.sock_dir, secrets.token_hex(8) + ".sock")
        if not await self._fork_shim(path):
            await shimclient.spawn_shim(path, self.shim_log)
        client = shimclient.ShimClient(path)
        await client.connect()
        await client.call("subscribe")
        return client

    def _refill_spare(self) -> None:
        self.spare = asyncio.get_running_loop().create_task(self._new_shim())
        self.spare.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _take_shim(self) -> shimclient.ShimClient:
        spare, self.spare = self.spare, None
        self._refill_spare()
        if spare is not None:
            try:
                client = await spare
                if not client.closed:
                    return client
            except (errors.SupervisorError, OSError):
                pass
        return await self._new_shim()

    def _bind(self, task: Task, client: shimclient.ShimClient) -> None:
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
        if proc.exec_id == "":
            task.paused = False
        self._publish_exit(task, proc)

    def _publish_exit(self, task: Task, proc: Proc) -> None:
        self.events.task(task.ns, "/tasks/exit", "TaskExit", container_id=task.id,
                         id=proc.exec_id or task.id, pid=proc.pid, exit_status=proc.exit_status,
                         exited_at=timestamp(proc.exited_at))

    def _on_lost(self, task: Task, client) -> None:
        if task.deleting or task.shim is not client:
            return
        self._bg(self._shim_died(task))

    async def _shim_died(self, task: Task) -> None:
        """Kill and clean up a container whose shim is gone; report it stopped."""
        task.dead = True
        task.shim = None
        info = task.info
        rt = [info["runtime"]] + (["--root", info["runtime_root"]] if info.get("runtime_root")
                                  else [])
        await shimclient.run_command(rt + ["kill", "--all", task.id, "9"])
        await shimclient.run_command(rt + ["delete", "--force", task.id])
        await self._unmount(task)
        for proc in task.procs.values():
            if proc.status == "stopped":
                continue
            rec = _read_exit_record(task.path, proc.exec_id)
            status, at = (rec["exit_status"], rec["exited_at"]) if rec else (KILLED_STATUS, None)
            if proc.mark_exited(status, at if at is not None else time.time()):
                self._publish_exit(task, proc)
            if not rec and proc.exec_id == "":
                _write_exit_record(task.path, proc)
        _unlink(info.get("socket", ""))

    async def _unmount(self, task: Task) -> None:
        rootfs = os.path.join(task.path, "rootfs")
        for _ in range(len(task.info.get("rootfs") or [])):
            if await shimclient.run_command(["umount", rootfs]) != 0:
                break

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
    def _runtime_for(self, ns: str, container, runtime_path: str) -> tuple[str, str]:
        binary, root = self.runtime, ""
        opts = container.runtime.options
        if opts.type_url.rsplit("/", 1)[-1] == "containerd.runc.v1.Options":
            parsed = options_pb2.Options()
            try:
                parsed.ParseFromString(opts.value)
            except Exception:
                raise InvalidArgument("runtime options: not a valid containerd.runc.v1.Options") \
                    from None
            binary = parsed.binary_name or binary
            root = parsed.root
        if runtime_path:
            binary = runtime_path
        return binary, root or os.path.join(self.runtime_root, ns)

    def _prepare_spec(self, path: str, container, mounts) -> dict:
        if container.spec.type_url and container.spec.type_url != SPEC_URL:
            raise InvalidArgument(f"spec: unsupported type {container.spec.type_url!r}")
        spec = decode_json_any(container.spec.value, "spec")
        if not isinstance(spec.get("process"), dict):
            raise InvalidArgument("spec: process is missing")
        root = spec.get("root")
        if mounts:
            spec["root"] = dict(root or {}, path="rootfs")
            return spec
        if not isinstance(root, dict) or not root.get("path"):
            raise InvalidArgument("spec: root.path is missing and the request has no rootfs mounts")
        rootfs = os.path.join(path, root["path"])
        if not os.path.isdir(rootfs):
            raise InvalidArgument(f"rootfs {root['path']!r}: no such directory")
        return spec

    async def create(self, ns: str, container, req) -> Task:
        key = (ns, req.container_id)
        if key in self.tasks:
            raise AlreadyExists(f"task {req.container_id}: already exists")
        for what, value in (("stdin", req.stdin), ("stdout", req.stdout), ("stderr", req.stderr)):
            try:
                check_dest(value, what)
            except StdioError as e:
                raise InvalidArgument(str(e)) from None
        if req.checkpoint.digest:
            raise errors.Unimplemented("restoring from a checkpoint is not supported")
        path = os.path.join(self.tasks_dir, ns, req.container_id)
        task = Task(ns, req.container_id, path)
        self.tasks[key] = task
        try:
            await self._create(task, container, req)
        except BaseException:
            del self.tasks[key]
            await self._discard(task)
            raise
        task.ready = True
        init = task.init
        self.events.task(ns, "/tasks/create", "TaskCreate", container_id=task.id, bundle=path,
                         rootfs=list(req.rootfs),
                         io=dict(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                                 terminal=req.terminal),
                         pid=init.pid)
        return task

    async def _create(self, task: Task, container, req) -> None:
        runtime, root = self._runtime_for(task.ns, container, req.runtime_path)
        shutil.rmtree(task.path, ignore_errors=True)  # leftover of an interrupted attempt
        os.makedirs(task.path, mode=0o700)
        if req.rootfs:
            os.mkdir(os.path.join(task.path, "rootfs"), 0o755)
        spec = self._prepare_spec(task.path, container, req.rootfs)
        with open(os.path.join(task.path, "config.json"), "w") as f:
            json.dump(spec, f)
        client = await self._take_shim()
        self._bind(task, client)
        mounts = [{"type": m.type, "source": m.source, "options": list(m.options)}
                  for m in req.rootfs]
        task.info = {"namespace": task.ns, "id": task.id, "socket": client.path,
                     "shim_pid": client.pid, "runtime": runtime, "runtime_root": root,
                     "rootfs": mounts}
        _write_json(os.path.join(task.path, "task.json"), task.info)
        init = Proc("", req.stdin, req.stdout, req.stderr, req.terminal)
        task.procs[""] = init
        reply = await client.call("create", id=task.id, bundle=task.path, runtime=runtime,
                                  runtime_root=root, stdin=req.stdin, stdout=req.stdout,
                                  stderr=req.stderr, terminal=req.terminal, rootfs=mounts)
        init.pid = reply["pid"]

    async def _discard(self, task: Task) -> None:
        """Undo a failed create: release the shim (it exits: it owns nothing) and the bundle."""
        client, task.shim = task.shim, None
        task.deleting = True
        if client is not None and not client.closed:
            try:
                await client.call("shutdown")
            except errors.SupervisorError:
                pass
            client.close()
        shutil.rmtree(task.path, ignore_errors=True)

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

    async def exec(self, ns: str, cid: str, req) -> None:
        task = self.get(ns, cid)
        validate_id(req.exec_id, "exec id")
        if req.exec_id in task.procs:
            raise AlreadyExists(f"id {req.exec_id}: already exists")
        spec = decode_json_any(req.spec.value, "process spec")
        if not spec.get("args") or not isinstance(spec.get("args"), list):
            raise InvalidArgument("process spec: args must be a non-empty list")
        for what, value in (("stdin", req.stdin), ("stdout", req.stdout), ("stderr", req.stderr)):
            try:
                check_dest(value, what)
            except StdioError as e:
                raise InvalidArgument(str(e)) from None
        spec_path = os.path.join(task.path, f"exec-{req.exec_id}.json")
        _write_json(spec_path, spec)
        try:
            await task.shim_or_fail().call("exec", exec_id=req.exec_id, spec_path=spec_path,
                                           stdin=req.stdin, stdout=req.stdout,
                                           stderr=req.stderr, terminal=req.terminal)
        except BaseException:
            _unlink(spec_path)
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
            status = task.status_of(init)
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
        shutil.rmtree(task.path, ignore_errors=True)
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
        task.paused = True
        self.events.task(ns, "/tasks/paused", "TaskPaused", container_id=cid)

    async def resume(self, ns: str, cid: str) -> None:
        task = self.get(ns, cid)
        await task.shim_or_fail().call("resume")
        task.paused = False
        self.events.task(ns, "/tasks/resumed", "TaskResumed", container_id=cid)

    async def update(self, ns: str, cid: str, resources: dict) -> None:
        task = self.get(ns, cid)
        path = os.path.join(task.path, "resources.json")
        _write_json(path, resources)
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

    # -- recovery ----------------------------------------------------------------------------------
    async def recover(self) -> None:
        """Find every task left by a previous daemon and reconnect to its shim."""
        found = []
        for ns in sorted(os.listdir(self.tasks_dir)):
            nsdir = os.path.join(self.tasks_dir, ns)
            for cid in sorted(os.listdir(nsdir)):
                found.append((ns, cid, os.path.join(nsdir, cid)))
        await asyncio.gather(*(self._recover_one(*f) for f in found))

    async def _recover_one(self, ns: str, cid: str, path: str) -> None:
        try:
            with open(os.path.join(path, "task.json")) as f:
                info = json.load(f)
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)  # create never got as far as a shim
            return
        task = Task(ns, cid, path)
        task.info = info
        self.tasks[(ns, cid)] = task
        client = shimclient.ShimClient(info["socket"])
        try:
            await client.connect()
            state = await client.call("state")
        except (OSError, errors.SupervisorError) as e:
            client.close()
            if isinstance(e, NotFound):  # the shim had deleted the container: finish the job
                self.tasks.pop((ns, cid), None)
                shutil.rmtree(path, ignore_errors=True)
                return
            self._load_from_records(task)
            task.ready = True
            await self._shim_died(task)
            return
        for d in state["procs"]:
            proc = Proc(d["exec_id"])
            proc.load(d)
            task.procs[proc.exec_id] = proc
        task.paused = bool(state.get("paused"))
        task.ready = True
        self._bind(task, client)
        await client.call("subscribe")

    def _load_from_records(self, task: Task) -> None:
        """What a dead shim left on disk: the init process and its exit record, if any."""
        init = Proc("")
        try:
            with open(os.path.join(task.path, "init.pid")) as f:
                init.pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            pass
        init.status = "running"
        task.procs[""] = init


def _read_exit_record(path: str, exec_id: str) -> dict | None:
    name = "init" if exec_id == "" else "exec-" + exec_id
    try:
        with open(os.path.join(path, "exits", name + ".json")) as f:
            rec = json.load(f)
        return {"exit_status": int(rec["exit_status"]), "exited_at": float(rec["exited_at"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_exit_record(path: str, proc: Proc) -> None:
    os.makedirs(os.path.join(path, "exits"), mode=0o700, exist_ok=True)
    _write_json(os.path.join(path, "exits", "init.json"),
                {"pid": proc.pid, "exit_status": proc.exit_status, "exited_at": proc.exited_at,
                 "shim_died": True})


def _write_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def _unlink(path: str) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
