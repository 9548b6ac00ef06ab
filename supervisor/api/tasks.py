"""Tasks: the running side of containers, served by supervisor.core.tasks.TaskManager.

This servicer only translates: protobuf requests become the core's records (``CreateTask``,
``ExecProcess``), the core's processes become ``containerd.v1.types.Process`` messages."""
from __future__ import annotations

import asyncio

from google.protobuf import empty_pb2

from supervisor import filters, metrics
from supervisor.api.common import SPEC_URL, namespace, rpc
from supervisor.api.containers import load
from supervisor.checks import decode_json_any
from supervisor.core.tasks import CreateTask, ExecProcess
from supervisor.errors import InvalidArgument, SupervisorError, Unimplemented
from supervisor.events import pack, timestamp
from supervisor.gen.containerd.runc.v1 import options_pb2
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as pb, tasks_pb2_grpc as grpc_pb
from supervisor.gen.containerd.types import metrics_pb2
from supervisor.gen.containerd.types.task import task_pb2 as ttypes

STATUS = {"created": ttypes.CREATED, "running": ttypes.RUNNING, "stopped": ttypes.STOPPED,
          "paused": ttypes.PAUSED}


def process_pb(task, proc) -> ttypes.Process:
    pb_ = ttypes.Process(container_id=task.id, id=proc.exec_id or task.id, pid=proc.pid,
                         status=STATUS[task.status_of(proc)], stdin=proc.stdin,
                         stdout=proc.stdout, stderr=proc.stderr, terminal=proc.terminal,
                         exit_status=proc.exit_status)
    if proc.status == "stopped":
        pb_.exited_at.CopyFrom(timestamp(proc.exited_at))
    return pb_


def runtime_of(container) -> tuple[str, str]:
    """The runtime binary and root a container's runc options name ("" for the defaults)."""
    opts = container.runtime.options
    if opts.type_url.rsplit("/", 1)[-1] != "containerd.runc.v1.Options":
        return "", ""
    parsed = options_pb2.Options()
    try:
        parsed.ParseFromString(opts.value)
    except Exception:
        raise InvalidArgument("runtime options: not a valid containerd.runc.v1.Options") from None
    return parsed.binary_name, parsed.root


def create_record(container, request) -> CreateTask:
    if request.checkpoint.digest:
        raise Unimplemented("restoring from a checkpoint is not supported")
    binary, root = runtime_of(container)
    if container.spec.type_url and container.spec.type_url != SPEC_URL:
        raise InvalidArgument(f"spec: unsupported type {container.spec.type_url!r}")
    return CreateTask(
        id=request.container_id, spec=decode_json_any(container.spec.value, "spec"),
        rootfs=[{"type": m.type, "source": m.source, "target": m.target,
                 "options": list(m.options)} for m in request.rootfs],
        stdin=request.stdin, stdout=request.stdout, stderr=request.stderr,
        terminal=request.terminal, runtime=request.runtime_path or binary, runtime_root=root,
        labels=dict(container.labels))


def _deleted(cid: str, proc) -> pb.DeleteResponse:
    return pb.DeleteResponse(id=proc.exec_id or cid, pid=proc.pid, exit_status=proc.exit_status,
                             exited_at=timestamp(proc.exited_at))


class Tasks(grpc_pb.TasksServicer):
    def __init__(self, services):
        self.store = services.get("store")
        self.mgr = services.get("tasks")

    @rpc
    async def Create(self, request, context):
        ns = namespace(context)
        container = load(self.store, ns, request.container_id)
        task = await self.mgr.create(ns, create_record(container, request))
        return pb.CreateTaskResponse(container_id=task.id, pid=task.init.pid)

    @rpc
    async def Start(self, request, context):
        proc = await self.mgr.start(namespace(context), request.container_id, request.exec_id)
        return pb.StartResponse(pid=proc.pid)

    @rpc
    async def Delete(self, request, context):
        proc = await self.mgr.delete(namespace(context), request.container_id)
        return _deleted(request.container_id, proc)

    @rpc
    async def DeleteProcess(self, request, context):
        proc = await self.mgr.delete_process(namespace(context), request.container_id,
                                             request.exec_id)
        return _deleted(request.container_id, proc)

    @rpc
    async def Get(self, request, context):
        task = self.mgr.get(namespace(context), request.container_id)
        proc = self.mgr.proc(task, request.exec_id)
        return pb.GetResponse(process=process_pb(task, proc))

    @rpc
    async def List(self, request, context):
        ns = namespace(context)
        flt = filters.parse([request.filter] if request.filter else [])
        out = pb.ListTasksResponse()
        for task in self.mgr.list(ns):
            pbp = process_pb(task, task.init)
            fields = {"id": task.id, "pid": str(pbp.pid),
                      "status": ttypes.Status.Name(pbp.status).lower()}
            if flt.match(filters.mapping_adaptor(fields)):
                out.tasks.append(pbp)
        return out

    @rpc
    async def Kill(self, request, context):
        await self.mgr.kill(namespace(context), request.container_id, request.exec_id,
                            request.signal, request.all)
        return empty_pb2.Empty()

    @rpc
    async def Exec(self, request, context):
        spec = decode_json_any(request.spec.value, "process spec")
        await self.mgr.exec(namespace(context), request.container_id, ExecProcess(
            request.exec_id, spec, request.stdin, request.stdout, request.stderr,
            request.terminal))
        return empty_pb2.Empty()

    @rpc
    async def ResizePty(self, request, context):
        await self.mgr.call(namespace(context), request.container_id, "resize",
                            exec_id=request.exec_id, width=request.width, height=request.height)
        return empty_pb2.Empty()

    @rpc
    async def CloseIO(self, request, context):
        if request.stdin:
            await self.mgr.call(namespace(context), request.container_id, "closeio",
                                exec_id=request.exec_id)
        return empty_pb2.Empty()

    @rpc
    async def Pause(self, request, context):
        await self.mgr.pause(namespace(context), request.container_id)
        return empty_pb2.Empty()

    @rpc
    async def Resume(self, request, context):
        await self.mgr.resume(namespace(context), request.container_id)
        return empty_pb2.Empty()

    @rpc
    async def ListPids(self, request, context):
        reply = await self.mgr.call(namespace(context), request.container_id, "pids")
        out = pb.ListPidsResponse()
        for p in reply["pids"]:
            info = out.processes.add(pid=p["pid"])
            if p.get("exec_id"):
                info.info.CopyFrom(pack(options_pb2.ProcessDetails(exec_id=p["exec_id"])))
        return out

    @rpc
    async def Checkpoint(self, request, context):
        raise Unimplemented("checkpoint is not supported by pyrunc-supervisor")

    @rpc
    async def Update(self, request, context):
        resources = decode_json_any(request.resources.value, "resources")
        await self.mgr.update(namespace(context), request.container_id, resources)
        return empty_pb2.Empty()

    @rpc
    async def Metrics(self, request, context):
        ns = namespace(context)
        flt = filters.parse(list(request.filters))
        tasks = [t for t in self.mgr.list(ns)
                 if flt.match(filters.mapping_adaptor({"id": t.id, "namespace": ns}))
                 and t.status_of(t.init) in ("running", "paused")]
        replies = await asyncio.gather(*(self._stats(ns, t.id) for t in tasks))
        out = pb.MetricsResponse()
        for task, data in zip(tasks, replies):
            if data is None:
                continue
            out.metrics.append(metrics_pb2.Metric(timestamp=timestamp(), id=task.id,
                                                  data=pack(metrics.from_runtime_stats(data))))
        return out

    async def _stats(self, ns: str, cid: str):
        try:
            return await self.mgr.stats(ns, cid)
        except SupervisorError:
            return None  # it stopped meanwhile

    @rpc
    async def Wait(self, request, context):
        proc = await self.mgr.wait(namespace(context), request.container_id, request.exec_id)
        return pb.WaitResponse(exit_status=proc.exit_status, exited_at=timestamp(proc.exited_at))


def register(server, services) -> None:
    grpc_pb.add_TasksServicer_to_server(Tasks(services), server)
