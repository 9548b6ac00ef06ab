"""The gRPC API directly: status codes for bad input (and nothing left behind), the services ctr
does not exercise (namespaces, leases, publish, update, list filters), stdio variants and flow
control.
"""
from __future__ import annotations

import json
import os
import threading
import time

import grpc
from google.protobuf import any_pb2, field_mask_pb2

from supervisor.client import PROCESS_URL, RUNTIME_NAME, SPEC_URL, json_any
from supervisor.gen.containerd.events import task_pb2 as evpb
from supervisor.gen.containerd.services.containers.v1 import containers_pb2 as cpb
from supervisor.gen.containerd.services.events.v1 import events_pb2 as epb
from supervisor.gen.containerd.services.introspection.v1 import introspection_pb2 as ipb
from supervisor.gen.containerd.services.leases.v1 import leases_pb2 as lpb
from supervisor.gen.containerd.services.namespaces.v1 import namespace_pb2 as npb
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb
from supervisor.gen.containerd.types import mount_pb2
from supervisor.gen.containerd.types.task import task_pb2 as ttypes
from google.protobuf import empty_pb2

from sv_harness import (Fifos, assert_no_task_left, cgroup_dirs, code_of, create, destroy,
                        make_spec, mounts_under, pid_alive, wait_for)


# -- namespaces and metadata --------------------------------------------------------------------

def test_namespace_metadata_required(sv):
    from supervisor.gen.containerd.services.containers.v1 import containers_pb2_grpc
    stub = containers_pb2_grpc.ContainersStub(sv.client().channel)
    code, msg = code_of(stub.List, cpb.ListContainersRequest())
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "namespace is required" in msg
    code, _ = code_of(stub.List, cpb.ListContainersRequest(),
                      metadata=[("containerd-namespace", "bad namespace!")])
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_container_bad_inputs(sv, sv_rootfs):
    client = sv.client()
    spec = make_spec(sv, sv_rootfs, "x", ["/bin/true"])
    code, _ = code_of(client.create_container, "bad id!", spec)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(client.create_container, "a" * 77, spec)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    c = cpb.Container(id=sv.id(), spec=json_any(SPEC_URL, spec))
    code, msg = code_of(client.containers.Create, cpb.CreateContainerRequest(container=c))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Runtime.Name" in msg
    c.runtime.name = RUNTIME_NAME
    c.spec.CopyFrom(any_pb2.Any(type_url=SPEC_URL, value=b"{not json"))
    code, msg = code_of(client.containers.Create, cpb.CreateContainerRequest(container=c))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "invalid JSON" in msg
    c.spec.CopyFrom(any_pb2.Any(type_url=SPEC_URL, value=b"[1, 2]"))
    code, _ = code_of(client.containers.Create, cpb.CreateContainerRequest(container=c))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    c.spec.CopyFrom(any_pb2.Any(type_url="example.com/other", value=b"{}"))
    code, _ = code_of(client.containers.Create, cpb.CreateContainerRequest(container=c))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sv.db_count("containers") == len(client.containers.List(
        cpb.ListContainersRequest()).containers)


def test_container_duplicate_unknown_update_list(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    client.create_container(cid, make_spec(sv, sv_rootfs, cid, ["/bin/true"]), {"a": "1"})
    code, msg = code_of(client.create_container, cid, make_spec(sv, sv_rootfs, cid, ["/bin/true"]))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "already exists" in msg
    code, msg = code_of(client.containers.Get, cpb.GetContainerRequest(id="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "not found" in msg
    code, _ = code_of(client.containers.Delete, cpb.DeleteContainerRequest(id="nope"))
    assert code == grpc.StatusCode.NOT_FOUND

    upd = cpb.Container(id=cid, labels={"b": "2"})
    mask = field_mask_pb2.FieldMask(paths=["labels.b"])
    got = client.containers.Update(cpb.UpdateContainerRequest(container=upd, update_mask=mask))
    assert dict(got.container.labels) == {"a": "1", "b": "2"}
    mask = field_mask_pb2.FieldMask(paths=["id"])
    code, _ = code_of(client.containers.Update,
                      cpb.UpdateContainerRequest(container=upd, update_mask=mask))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    listed = client.containers.List(cpb.ListContainersRequest(filters=["labels.b==2"]))
    assert [c.id for c in listed.containers] == [cid]
    streamed = list(client.containers.ListStream(cpb.ListContainersRequest(filters=[f"id=={cid}"])))
    assert [m.container.id for m in streamed] == [cid]
    code, _ = code_of(client.containers.List, cpb.ListContainersRequest(filters=["labels.b=="]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    client.containers.Delete(cpb.DeleteContainerRequest(id=cid))


def test_namespaces_service(sv):
    client = sv.client()
    name = sv.ns + "n"
    client.namespaces.Create(npb.CreateNamespaceRequest(
        namespace=npb.Namespace(name=name, labels={"k": "v"})))
    code, _ = code_of(client.namespaces.Create,
                      npb.CreateNamespaceRequest(namespace=npb.Namespace(name=name)))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    got = client.namespaces.Get(npb.GetNamespaceRequest(name=name)).namespace
    assert dict(got.labels) == {"k": "v"}
    client.namespaces.Update(npb.UpdateNamespaceRequest(
        namespace=npb.Namespace(name=name, labels={"z": "1"}),
        update_mask=field_mask_pb2.FieldMask(paths=["labels.z"])))
    got = client.namespaces.Get(npb.GetNamespaceRequest(name=name)).namespace
    assert dict(got.labels) == {"k": "v", "z": "1"}
    names = [n.name for n in client.namespaces.List(npb.ListNamespacesRequest()).namespaces]
    assert name in names
    client.namespaces.Delete(npb.DeleteNamespaceRequest(name=name))
    # containerd's Get of a namespace it does not hold: an empty namespace, not NotFound
    got = client.namespaces.Get(npb.GetNamespaceRequest(name=name)).namespace
    assert got.name == name and not got.labels
    names = [n.name for n in client.namespaces.List(npb.ListNamespacesRequest()).namespaces]
    assert name not in names
    # ... and an Update of one creates it
    client.namespaces.Update(npb.UpdateNamespaceRequest(
        namespace=npb.Namespace(name=name, labels={"a": "b"}),
        update_mask=field_mask_pb2.FieldMask(paths=["labels.a"])))
    got = client.namespaces.Get(npb.GetNamespaceRequest(name=name)).namespace
    assert dict(got.labels) == {"a": "b"}
    client.namespaces.Delete(npb.DeleteNamespaceRequest(name=name))
    code, _ = code_of(client.namespaces.Create,
                      npb.CreateNamespaceRequest(namespace=npb.Namespace(name="-bad")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_leases_service(sv):
    client = sv.client()
    lease = client.leases.Create(lpb.CreateRequest(id="l1", labels={"x": "y"})).lease
    assert lease.id == "l1" and lease.created_at.seconds > 0
    code, _ = code_of(client.leases.Create, lpb.CreateRequest(id="l1"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    anon = client.leases.Create(lpb.CreateRequest()).lease
    assert anon.id
    res = lpb.Resource(id="sha256:abc", type="content")
    client.leases.AddResource(lpb.AddResourceRequest(id="l1", resource=res))
    listed = client.leases.ListResources(lpb.ListResourcesRequest(id="l1")).resources
    assert [(r.id, r.type) for r in listed] == [("sha256:abc", "content")]
    client.leases.DeleteResource(lpb.DeleteResourceRequest(id="l1", resource=res))
    assert not client.leases.ListResources(lpb.ListResourcesRequest(id="l1")).resources
    ids = [le.id for le in client.leases.List(lpb.ListRequest(filters=["labels.x==y"])).leases]
    assert ids == ["l1"]
    for lid in ("l1", anon.id):
        client.leases.Delete(lpb.DeleteRequest(id=lid))
    code, _ = code_of(client.leases.Delete, lpb.DeleteRequest(id="l1"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert sv.db_count("leases") == 0


def test_introspection_and_version(sv):
    client = sv.client()
    server = client.introspection.Server(empty_pb2.Empty())
    assert server.pid == sv.proc.pid and len(server.uuid) == 36
    plugins = client.introspection.Plugins(
        ipb.PluginsRequest(filters=['type=="io.containerd.grpc.v1"'])).plugins
    assert {"tasks", "containers", "events", "namespaces", "leases"} <= {p.id for p in plugins}
    assert client.version.Version(empty_pb2.Empty()).version


def test_publish_and_subscribe_with_filters(sv):
    client = sv.client()
    stream = client.subscribe(f'namespace=={sv.ns},topic~="^/custom/"')
    got = []
    reader = threading.Thread(target=lambda: got.append(next(iter(stream))), daemon=True)
    reader.start()
    time.sleep(0.3)
    ev = evpb.TaskOOM(container_id="zz")
    payload = any_pb2.Any(type_url="containerd.events.TaskOOM", value=ev.SerializeToString())
    client.events.Publish(epb.PublishRequest(topic="/other/thing", event=payload))
    client.events.Publish(epb.PublishRequest(topic="/custom/thing", event=payload))
    reader.join(10)
    stream.cancel()
    assert got and got[0].topic == "/custom/thing" and got[0].namespace == sv.ns
    code, _ = code_of(client.events.Publish, epb.PublishRequest(topic="no-slash", event=payload))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(client.subscribe('topic=="unterminated').__next__)
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# -- tasks: bad inputs -------------------------------------------------------------------------------

def test_task_for_unknown_container(sv):
    client = sv.client()
    code, _ = code_of(client.tasks.Create, tpb.CreateTaskRequest(container_id="nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    for call, req in ((client.tasks.Get, tpb.GetRequest(container_id="nope")),
                      (client.tasks.Start, tpb.StartRequest(container_id="nope")),
                      (client.tasks.Kill, tpb.KillRequest(container_id="nope", signal=9)),
                      (client.tasks.Delete, tpb.DeleteTaskRequest(container_id="nope")),
                      (client.tasks.Wait, tpb.WaitRequest(container_id="nope")),
                      (client.tasks.Pause, tpb.PauseTaskRequest(container_id="nope"))):
        assert code_of(call, req)[0] == grpc.StatusCode.NOT_FOUND


def test_missing_rootfs_leaves_nothing(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    spec = make_spec(sv, "/nonexistent/rootfs", cid, ["/bin/true"])
    client.create_container(cid, spec)
    shims_before = len(sv.shim_pids())
    code, msg = code_of(client.tasks.Create, tpb.CreateTaskRequest(container_id=cid))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "rootfs" in msg
    assert_no_task_left(sv, cid)
    wait_for(lambda: len(sv.shim_pids()) <= shims_before, what="no shim kept for it")
    client.containers.Delete(cpb.DeleteContainerRequest(id=cid))


def test_bad_fifo_paths(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    client.create_container(cid, make_spec(sv, sv_rootfs, cid, ["/bin/true"]))
    regular = os.path.join(sv.base, "regular-file")
    open(regular, "w").close()
    for stdio in ({"stdout": "/nonexistent/fifo"}, {"stdout": regular},
                  {"stderr": "relative/path"}, {"stdin": "ftp://x"},
                  {"stdout": "file:///nonexistent-dir/log"}):
        code, msg = code_of(client.tasks.Create, tpb.CreateTaskRequest(container_id=cid, **stdio))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (stdio, msg)
        assert_no_task_left(sv, cid)
    client.containers.Delete(cpb.DeleteContainerRequest(id=cid))


def test_failing_process_reports_runtime_error_and_leaves_nothing(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    client.create_container(cid, make_spec(sv, sv_rootfs, cid, ["/no/such/binary"]))
    shims_before = len(sv.shim_pids())
    code, msg = code_of(client.tasks.Create, tpb.CreateTaskRequest(container_id=cid))
    assert code == grpc.StatusCode.UNKNOWN and "/no/such/binary" in msg
    assert "\n" not in msg
    assert_no_task_left(sv, cid)
    wait_for(lambda: len(sv.shim_pids()) <= shims_before, what="shim of the failed create exits")
    client.containers.Delete(cpb.DeleteContainerRequest(id=cid))


def test_duplicate_task_exec_clash_and_preconditions(sv, sv_rootfs):
    client = sv.client()
    cid = create(sv, client, sv_rootfs, ["/bin/sleep", "300"])
    try:
        code, _ = code_of(client.tasks.Create, tpb.CreateTaskRequest(container_id=cid))
        assert code == grpc.StatusCode.ALREADY_EXISTS
        client.tasks.Start(tpb.StartRequest(container_id=cid))
        code, _ = code_of(client.tasks.Start, tpb.StartRequest(container_id=cid))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        code, msg = code_of(client.tasks.Delete, tpb.DeleteTaskRequest(container_id=cid))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "running" in msg
        code, _ = code_of(client.containers.Delete, cpb.DeleteContainerRequest(id=cid))
        assert code == grpc.StatusCode.FAILED_PRECONDITION

        proc = json_any(PROCESS_URL, {"args": ["/bin/sleep", "100"], "cwd": "/",
                                      "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}})
        client.tasks.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id="e1", spec=proc))
        code, msg = code_of(client.tasks.Exec,
                            tpb.ExecProcessRequest(container_id=cid, exec_id="e1", spec=proc))
        assert code == grpc.StatusCode.ALREADY_EXISTS and "already exists" in msg
        code, _ = code_of(client.tasks.Exec,
                          tpb.ExecProcessRequest(container_id=cid, exec_id="bad id", spec=proc))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = code_of(client.tasks.Exec, tpb.ExecProcessRequest(
            container_id=cid, exec_id="e2", spec=any_pb2.Any(type_url=PROCESS_URL, value=b"[")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = code_of(client.tasks.Exec, tpb.ExecProcessRequest(
            container_id=cid, exec_id="e3", spec=proc, stdout="/nonexistent"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = code_of(client.tasks.Get, tpb.GetRequest(container_id=cid, exec_id="nope"))
        assert code == grpc.StatusCode.NOT_FOUND
        pid = client.tasks.Start(tpb.StartRequest(container_id=cid, exec_id="e1")).pid
        assert pid_alive(pid)
        code, _ = code_of(client.tasks.DeleteProcess,
                          tpb.DeleteProcessRequest(container_id=cid, exec_id="e1"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        client.tasks.Kill(tpb.KillRequest(container_id=cid, exec_id="e1", signal=9))
        assert client.wait(cid, "e1", timeout=20) == 137
        deleted = client.tasks.DeleteProcess(
            tpb.DeleteProcessRequest(container_id=cid, exec_id="e1"))
        assert deleted.exit_status == 137 and deleted.pid == pid
        code, _ = code_of(client.tasks.Kill, tpb.KillRequest(container_id=cid, exec_id="e1",
                                                             signal=9))
        assert code == grpc.StatusCode.NOT_FOUND
        client.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9))
        client.wait(cid, timeout=20)
        code, msg = code_of(client.tasks.Kill, tpb.KillRequest(container_id=cid, signal=9))
        assert code == grpc.StatusCode.NOT_FOUND and "already finished" in msg
        code, _ = code_of(client.tasks.Pause, tpb.PauseTaskRequest(container_id=cid))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        destroy(sv, client, cid)
    assert_no_task_left(sv, cid)


def test_delete_created_task(sv, sv_rootfs):
    client = sv.client()
    cid = create(sv, client, sv_rootfs, ["/bin/sleep", "300"])
    got = client.tasks.Get(tpb.GetRequest(container_id=cid)).process
    assert got.status == ttypes.CREATED and pid_alive(got.pid)
    client.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    assert not pid_alive(got.pid)
    assert_no_task_left(sv, cid)
    client.containers.Delete(cpb.DeleteContainerRequest(id=cid))


# -- tasks: stdio ------------------------------------------------------------------------------------

def test_log_file_stdio(sv, sv_rootfs):
    client = sv.client()
    log = os.path.join(sv.base, "app.log")
    cid = create(sv, client, sv_rootfs, ["/bin/sh", "-c", "echo out; echo err >&2; exit 4"],
                 stdout="file://" + log, stderr="file://" + log)
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    assert client.wait(cid, timeout=20) == 4
    with open(log) as f:
        assert sorted(f.read().split()) == ["err", "out"]
    destroy(sv, client, cid)


def test_stdin_closeio(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    fifos = Fifos(sv.base, cid, stdin=True)
    cid = create(sv, client, sv_rootfs, ["/bin/sh", "-c", "cat; echo done"], cid=cid,
                 **fifos.paths)
    fifos.start()
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    with open(fifos.paths["stdin"], "wb") as w:
        w.write(b"some input\n")
    time.sleep(0.2)
    client.tasks.CloseIO(tpb.CloseIORequest(container_id=cid, stdin=True))
    assert client.wait(cid, timeout=20) == 0
    fifos.join()
    assert fifos.data["stdout"] == b"some input\ndone\n"
    destroy(sv, client, cid)


def test_output_complete_with_slow_reader(sv, sv_rootfs):
    """Back-pressure, not loss, while a reader keeps reading (slowly)."""
    client = sv.client()
    cid = sv.id()
    fifos = Fifos(sv.base, cid)
    size = 3 * 1024 * 1024
    cid = create(sv, client, sv_rootfs, ["/bin/sh", "-c", f"head -c {size} /dev/zero | tr '\\0' x"],
                 cid=cid, **fifos.paths)
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    time.sleep(0.5)  # nobody reads yet: the shim's bounded buffer fills and the writer waits
    fifos.start()
    assert client.wait(cid, timeout=60) == 0
    fifos.join()
    assert len(fifos.data["stdout"]) == size and set(fifos.data["stdout"]) == {ord("x")}
    destroy(sv, client, cid)


def test_flood_without_reader_neither_blocks_nor_grows(sv, sv_rootfs):
    """A reader that goes away: the container keeps running; the shim discards, bounded."""
    client = sv.client()
    cid = sv.id()
    fifos = Fifos(sv.base, cid)
    cid = create(sv, client, sv_rootfs, ["/bin/sh", "-c",
                                         "head -c 200000000 /dev/zero; echo finished >&2"],
                 cid=cid, **fifos.paths)
    for fd in fifos.fds.values():
        os.close(fd)  # the client goes away before the output starts
    shim = json.load(open(os.path.join(sv.state, "tasks", sv.ns, cid, "task.json")))["shim_pid"]
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    assert client.wait(cid, timeout=120) == 0
    with open(f"/proc/{shim}/status") as f:
        hwm_kb = int(next(line for line in f if line.startswith("VmHWM")).split()[1])
    assert hwm_kb < 64 * 1024, f"shim peaked at {hwm_kb} KiB"
    destroy(sv, client, cid)


def test_terminal_resize_over_api(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    fifos = Fifos(sv.base, cid, stdin=True, outputs=("stdout",))
    spec = make_spec(sv, sv_rootfs, cid, ["/bin/sh", "-c",
                                          "read x; stty -F /dev/tty size"], terminal=True)
    client.create_container(cid, spec)
    client.tasks.Create(tpb.CreateTaskRequest(container_id=cid, terminal=True, **fifos.paths))
    fifos.start()
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    client.tasks.ResizePty(tpb.ResizePtyRequest(container_id=cid, width=123, height=45))
    with open(fifos.paths["stdin"], "wb") as w:
        w.write(b"go\n")
    assert client.wait(cid, timeout=20) == 0
    fifos.join()
    assert b"45 123" in fifos.data["stdout"]
    destroy(sv, client, cid)


def test_rootfs_from_request_mounts(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    spec = make_spec(sv, sv_rootfs, cid, ["/bin/sh", "-c", "test -x /bin/busybox"])
    spec["root"] = {"path": "rootfs"}
    client.create_container(cid, spec)
    bind = mount_pb2.Mount(type="bind", source=sv_rootfs, options=["rbind", "rw"])
    client.tasks.Create(tpb.CreateTaskRequest(container_id=cid, rootfs=[bind]))
    bundle = os.path.join(sv.state, "tasks", sv.ns, cid)
    assert mounts_under(os.path.join(bundle, "rootfs"))
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    assert client.wait(cid, timeout=20) == 0
    client.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid))
    assert not mounts_under(bundle)
    assert_no_task_left(sv, cid)
    client.containers.Delete(cpb.DeleteContainerRequest(id=cid))


def test_update_resources_and_list_pids(sv, sv_rootfs):
    client = sv.client()
    cid = create(sv, client, sv_rootfs, ["/bin/sleep", "300"])
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    pids = client.tasks.ListPids(tpb.ListPidsRequest(container_id=cid)).processes
    assert [p.pid for p in pids] == [client.tasks.Get(tpb.GetRequest(container_id=cid)).process.pid]
    res = json_any("types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                   {"pids": {"limit": 42}})
    client.tasks.Update(tpb.UpdateTaskRequest(container_id=cid, resources=res))
    pid_dirs = [d for d in cgroup_dirs(sv.ns, cid) if "/pids/" in d]
    if pid_dirs:
        with open(os.path.join(pid_dirs[0], "pids.max")) as f:
            assert f.read().strip() == "42"
    code, _ = code_of(client.tasks.Update, tpb.UpdateTaskRequest(
        container_id=cid, resources=any_pb2.Any(type_url="x", value=b"nope")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    destroy(sv, client, cid)


def test_per_container_runtime_binary(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    client.create_container(cid, make_spec(sv, sv_rootfs, cid, ["/bin/true"]),
                            runtime_binary="/nonexistent/runtime")
    code, msg = code_of(client.tasks.Create, tpb.CreateTaskRequest(container_id=cid))
    assert code == grpc.StatusCode.UNKNOWN and "/nonexistent/runtime" in msg
    assert_no_task_left(sv, cid)
    client.containers.Delete(cpb.DeleteContainerRequest(id=cid))


def test_container_sees_only_its_stdio_fds(sv, sv_rootfs):
    """Nothing of the shim or the runtime (sockets, pipes, log files) leaks into the container."""
    client = sv.client()
    cid = sv.id()
    fifos = Fifos(sv.base, cid)
    cid = create(sv, client, sv_rootfs, ["/bin/sh", "-c", "ls /proc/self/fd; exec sleep 300"],
                 cid=cid, **fifos.paths)
    fifos.start()
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    exec_fifos = Fifos(sv.base, cid + "-exec")
    proc = json_any(PROCESS_URL, {"args": ["/bin/ls", "/proc/self/fd"], "cwd": "/",
                                  "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}})
    client.tasks.Exec(tpb.ExecProcessRequest(container_id=cid, exec_id="ls", spec=proc,
                                             **exec_fifos.paths))
    exec_fifos.start()
    client.tasks.Start(tpb.StartRequest(container_id=cid, exec_id="ls"))
    assert client.wait(cid, "ls", timeout=20) == 0
    exec_fifos.join()
    client.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9))
    client.wait(cid, timeout=20)
    fifos.join()
    assert fifos.data["stdout"].split() == [b"0", b"1", b"2", b"3"]  # 3: ls's own directory fd
    assert exec_fifos.data["stdout"].split() == [b"0", b"1", b"2", b"3"]
    destroy(sv, client, cid)


def test_sockets_are_private(sv, sv_rootfs):
    import stat as st
    mode = os.stat(sv.sock).st_mode
    assert st.S_ISSOCK(mode) and st.S_IMODE(mode) == 0o600
    assert st.S_IMODE(os.stat(os.path.dirname(sv.sock)).st_mode) == 0o700
    sockdir = os.path.join(sv.state, "s")
    assert st.S_IMODE(os.stat(sockdir).st_mode) == 0o700
    socks = [f for f in os.listdir(sockdir) if f.endswith(".sock")]
    assert socks
    for name in socks:
        assert st.S_IMODE(os.stat(os.path.join(sockdir, name)).st_mode) == 0o600
    assert st.S_IMODE(os.stat(os.path.join(sv.state, "tasks")).st_mode) == 0o700


def test_oom_event(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    spec = make_spec(sv, sv_rootfs, cid, ["/bin/sh", "-c", "tail /dev/zero"])
    spec["linux"]["resources"]["memory"] = {"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024}
    client.create_container(cid, spec)
    stream = client.subscribe(f'topic~="^/tasks/(oom|exit)$",event.container_id=={cid}')
    got = []
    reader = threading.Thread(target=lambda: got.extend(e.topic for _, e in zip(range(2), stream)),
                              daemon=True)
    reader.start()
    time.sleep(0.3)
    client.tasks.Create(tpb.CreateTaskRequest(container_id=cid))
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    assert client.wait(cid, timeout=60) == 137
    reader.join(10)
    stream.cancel()
    assert got == ["/tasks/oom", "/tasks/exit"]
    destroy(sv, client, cid)
