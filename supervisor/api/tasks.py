"""Tasks: the running side of containers, served by supervisor.tasks.TaskManager and the shims."""
from __future__ import annotations

import asyncio

from google.protobuf import empty_pb2

from supervisor import filters, metrics
from supervisor.api.common import namespace, rpc
from supervisor.api.containers import load
from supervisor.errors import SupervisorError, Unimplemented
from supervisor.events import pack, timestamp
from supervisor.gen.containerd.runc.v1 import options_pb2
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as pb, tasks_pb2_grpc as grpc_pb
from supervisor.gen.containerd.types import metrics_pb2
from supervisor.gen.containerd.types.task import task_pb2 as ttypes
from supervisor.tasks import decode_json_any


def _deleted(cid: str, proc) -> pb.DeleteResponse:
    return pb.DeleteResponse(id=proc.exec_id or cid, pid=proc.pid, exit_status=proc.exit_status,
                             exited_at=timestamp(proc.exited_at))


class Tasks(grpc_pb.TasksServicer):
    def __init__(self, daemon):
        self.store = daemon.store
        self.mgr = daemon.tasks

    @rpc
    async def Create(self, request, context):
        ns = namespace(context)
        container = load(self.store, ns, request.container_id)
        task = await self.mgr.create(ns, container, request)
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
        return pb.GetResponse(process=task.process_pb(proc))

    @rpc
    async def List(self, request, context):
        ns = namespace(context)
        flt = filters.parse([request.filter] if request.filter else [])
        out = pb.ListTasksResponse()
        for task in self.mgr.list(ns):
            pbp = task.process_pb(task.init)
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
        await self.mgr.exec(namespace(context), request.container_id, request)
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


def register(server, daemon) -> None:
    grpc_pb.add_TasksServicer_to_server(Tasks(daemon), server)
