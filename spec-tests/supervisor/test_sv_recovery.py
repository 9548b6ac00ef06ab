"""Crashes and restarts: the daemon killed with SIGKILL or stopped with SIGTERM, a shim killed with
SIGKILL, and 100 rapid run/rm cycles that must leave nothing behind.
"""
from __future__ import annotations

import json
import os

import grpc
from google.protobuf import empty_pb2

from supervisor.client import PROCESS_URL, json_any
from supervisor.gen.containerd.services.containers.v1 import containers_pb2 as cpb
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb
from supervisor.gen.containerd.types import mount_pb2
from supervisor.gen.containerd.types.task import task_pb2 as ttypes

from sv_harness import (assert_no_task_left, cgroup_dirs, create, destroy, make_spec,
                        mounts_under, pid_alive, wait_for)


def shim_pid(sv, cid: str) -> int:
    with open(os.path.join(sv.state, "tasks", sv.ns, cid, "task.json")) as f:
        return json.load(f)["shim_pid"]


def get(client, cid, exec_id=""):
    return client.tasks.Get(tpb.GetRequest(container_id=cid, exec_id=exec_id)).process


def exec_spec(args):
    return json_any(PROCESS_URL, {"args": args, "cwd": "/", "env": ["PATH=/bin"],
                                  "user": {"uid": 0, "gid": 0}})


def log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def test_daemon_kill9_recovers_everything(sv_own, sv_rootfs):
    sv = sv_own
    client = sv.client()
    log = os.path.join(sv.base, "ticker.log")
    ticker = create(sv, client, sv_rootfs, ["/bin/sh", "-c", "while true; do echo tick; "
                                            "sleep 0.05; done"], stdout="file://" + log)
    client.tasks.Start(tpb.StartRequest(container_id=ticker))
    client.tasks.Exec(tpb.ExecProcessRequest(container_id=ticker, exec_id="side",
                                             spec=exec_spec(["/bin/sleep", "300"])))
    exec_pid = client.tasks.Start(tpb.StartRequest(container_id=ticker, exec_id="side")).pid
    quitter = sv.id("quitter")
    trigger = os.path.join(sv_rootfs, "tmp", "go-" + quitter)
    create(sv, client, sv_rootfs, ["/bin/sh", "-c", f"while [ ! -e /tmp/go-{quitter} ]; do "
                                   "sleep 0.02; done; exit 42"], cid=quitter)
    quitter_pid = client.tasks.Start(tpb.StartRequest(container_id=quitter)).pid
    ticker_pid = get(client, ticker).pid

    sv.kill9()
    open(trigger, "w").close()  # the quitter exits 42 while the daemon is down
    wait_for(lambda: not pid_alive(quitter_pid), what="quitter exits while the daemon is down")
    os.unlink(trigger)
    sv.start()
    client = sv.client()

    t = get(client, ticker)
    assert (t.pid, t.status) == (ticker_pid, ttypes.RUNNING)
    e = get(client, ticker, "side")
    assert (e.pid, e.status) == (exec_pid, ttypes.RUNNING)
    q = get(client, quitter)
    assert q.status == ttypes.STOPPED and q.exit_status == 42
    assert client.wait(quitter, timeout=10) == 42
    listed = {p.container_id: p.status for p in client.tasks.List(tpb.ListTasksRequest()).tasks}
    assert listed == {ticker: ttypes.RUNNING, quitter: ttypes.STOPPED}

    size = log_size(log)
    wait_for(lambda: log_size(log) > size, what="the log keeps growing after the restart")
    client.tasks.Kill(tpb.KillRequest(container_id=ticker, signal=9))
    assert client.wait(ticker, timeout=20) == 137  # Wait works on a recovered task
    assert client.wait(ticker, "side", timeout=20) == 137
    deleted = client.tasks.Delete(tpb.DeleteTaskRequest(container_id=quitter))
    assert deleted.exit_status == 42
    for cid in (ticker, quitter):
        destroy(sv, client, cid)
        assert_no_task_left(sv, cid)


def test_daemon_sigterm_leaves_containers_running(sv_own, sv_rootfs):
    sv = sv_own
    client = sv.client()
    cid = create(sv, client, sv_rootfs, ["/bin/sleep", "300"])
    pid = client.tasks.Start(tpb.StartRequest(container_id=cid)).pid
    assert sv.stop() == 0
    assert not os.path.exists(sv.sock)
    assert pid_alive(pid)
    sv.start()
    client = sv.client()
    assert get(client, cid).pid == pid and get(client, cid).status == ttypes.RUNNING
    destroy(sv, client, cid)
    assert not pid_alive(pid)


def test_shim_kill9_kills_and_cleans_container(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    spec = make_spec(sv, sv_rootfs, cid, ["/bin/sleep", "300"])
    spec["root"] = {"path": "rootfs"}
    client.create_container(cid, spec)
    bind = mount_pb2.Mount(type="bind", source=sv_rootfs, options=["rbind", "rw"])
    client.tasks.Create(tpb.CreateTaskRequest(container_id=cid, rootfs=[bind]))
    pid = client.tasks.Start(tpb.StartRequest(container_id=cid)).pid
    bundle = os.path.join(sv.state, "tasks", sv.ns, cid)
    assert mounts_under(bundle)

    os.kill(shim_pid(sv, cid), 9)
    assert client.wait(cid, timeout=20) == 137  # documented: killed with SIGKILL
    proc = get(client, cid)
    assert proc.status == ttypes.STOPPED and proc.exit_status == 137
    wait_for(lambda: not pid_alive(pid), what="container process killed")
    assert cid not in [c["id"] for c in sv.runtime_list()]
    assert not mounts_under(bundle)
    assert not cgroup_dirs(sv.ns, cid)
    code = None
    try:
        client.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9))
    except grpc.RpcError as e:
        code = e.code()
    assert code == grpc.StatusCode.NOT_FOUND
    assert client.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid)).exit_status == 137
    assert_no_task_left(sv, cid)

    # the id is free again
    client.tasks.Create(tpb.CreateTaskRequest(container_id=cid, rootfs=[bind]))
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    client.tasks.Kill(tpb.KillRequest(container_id=cid, signal=9))
    assert client.wait(cid, timeout=20) == 137
    destroy(sv, client, cid)
    assert_no_task_left(sv, cid)


def test_exit_code_survives_shim_and_daemon_death(sv_own, sv_rootfs):
    sv = sv_own
    client = sv.client()
    cid = create(sv, client, sv_rootfs, ["/bin/sh", "-c", "exit 9"])
    client.tasks.Start(tpb.StartRequest(container_id=cid))
    assert client.wait(cid, timeout=20) == 9
    sv.kill9()
    os.kill(shim_pid(sv, cid), 9)  # the exit was recorded on disk before it was reported
    sv.start()
    client = sv.client()
    proc = get(client, cid)
    assert proc.status == ttypes.STOPPED and proc.exit_status == 9
    assert client.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid)).exit_status == 9
    client.containers.Delete(cpb.DeleteContainerRequest(id=cid))
    assert_no_task_left(sv, cid)


def test_hundred_run_rm_cycles_leave_nothing(sv_own, sv_rootfs):
    sv = sv_own
    ids = [sv.id("loop") for _ in range(100)]
    for cid in ids:
        res = sv.ctr("run", "--rm", "--rootfs", sv_rootfs, cid, "/bin/true")
        assert res.returncode == 0
    client = sv.client()
    assert not client.containers.List(cpb.ListContainersRequest()).containers
    assert not client.tasks.List(tpb.ListTasksRequest()).tasks
    assert sv.db_count("containers") == 0
    assert sv.task_dirs() == []
    assert sv.runtime_list() == []
    assert not mounts_under(sv.base)
    for d in cgroup_dirs(sv.ns):
        assert not [e for e in os.listdir(d) if os.path.isdir(os.path.join(d, e))], d
    # only the zygote and the one idle spare shim remain, each with its own socket
    wait_for(lambda: len(sv.shim_pids()) == 2, what="only the zygote and the spare left")
    socks = sorted(f for f in os.listdir(os.path.join(sv.state, "s")) if f.endswith(".sock"))
    assert len(socks) == 2 and socks[1].startswith("zygote-"), socks
    assert client.introspection.Server(empty_pb2.Empty()).pid == sv.proc.pid


def test_runtime_chosen_per_container(sv_rootfs):
    """The daemon's default runtime is unusable; the container's own runtime option is used."""
    from sv_harness import RUNTIME, Supervisor
    sv = Supervisor(runtime="/nonexistent/default-runtime")
    try:
        sv.start()
        client = sv.client()
        cid = sv.id()
        client.create_container(cid, make_spec(sv, sv_rootfs, cid, ["/bin/sh", "-c", "exit 3"]),
                                runtime_binary=RUNTIME)
        client.tasks.Create(tpb.CreateTaskRequest(container_id=cid))
        client.tasks.Start(tpb.StartRequest(container_id=cid))
        assert client.wait(cid, timeout=20) == 3
        with open(os.path.join(sv.state, "tasks", sv.ns, cid, "task.json")) as f:
            assert json.load(f)["runtime"] == RUNTIME
        destroy(sv, client, cid)
        assert_no_task_left(sv, cid)
    finally:
        sv.cleanup()
