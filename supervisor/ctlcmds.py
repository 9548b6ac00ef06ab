"""The lifecycle commands beyond run/stop/rm: start, restart, wait, rename, top.

Each is a function ``(ctl, args) -> exit code`` named in ctl.COMMANDS and imported only when it
runs. They act through the supervisor's API only; ``top`` reads the task's pids from the
supervisor and shows those rows of the host's ``ps`` (as dockerd does).
"""
from __future__ import annotations

import subprocess
import sys
import time

from supervisor import ctlmeta as meta
from supervisor.ctlbase import CtlError, grpc, status_name as _status_name
from supervisor.ctlview import tabwrite


def start(ctl, a) -> int:
    if a.attach or a.interactive:
        if len(a.containers) > 1:
            raise CtlError("you cannot start and attach multiple containers at once")
        return _start_attached(ctl, ctl.container(a.containers[0]), a.interactive)

    def one(ref):
        c = ctl.container(ref)
        task = ctl.task(c.id)
        if task is not None and _status_name(task.status) in ("running", "paused"):
            return  # docker: starting a running container is a no-op
        if task is not None:
            ctl.client.tasks.Delete(ctl.tpb.DeleteTaskRequest(container_id=c.id))
        ctl.set_wanted(c, True)
        ctl.start_logged(c)
    return ctl.each(a.containers, one)


def _start_attached(ctl, c, interactive: bool) -> int:
    from supervisor.clientio import FifoSet
    task = ctl.task(c.id)
    if task is not None:
        if _status_name(task.status) in ("running", "paused"):
            raise CtlError(f"Error response from daemon: container {c.id} is already running")
        ctl.client.tasks.Delete(ctl.tpb.DeleteTaskRequest(container_id=c.id))
    import json
    tty = bool(json.loads(c.spec.value).get("process", {}).get("terminal"))
    fifos = FifoSet(c.id[:12], stdin=interactive, stderr=not tty)
    try:
        ctl._create_task(c.id, fifos.stdin, fifos.stdout, fifos.stderr, tty)
        return ctl._attach(c.id, "", fifos, tty)
    finally:
        fifos.close()


def restart(ctl, a) -> int:
    def one(ref):
        c = ctl.container(ref)
        ctl.set_wanted(c, False)
        ctl.stop(c.id, a.time)
        if ctl.task(c.id) is not None:
            ctl.client.tasks.Delete(ctl.tpb.DeleteTaskRequest(container_id=c.id))
        ctl.set_wanted(c, True)
        ctl.start_logged(c)
    return ctl.each(a.containers, one)


def wait(ctl, a) -> int:
    def one(ref):
        cid = ctl.container(ref).id
        while True:  # a container without a task yet: wait for it to be started
            try:
                print(ctl.client.wait(cid), flush=True)
                return
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            ctl.container(cid)  # removed meanwhile: No such container
            time.sleep(0.2)
    return ctl.each(a.containers, one, echo=False)


def rename(ctl, a) -> int:
    from google.protobuf import field_mask_pb2
    c = ctl.container(a.container)
    try:
        new = meta.check_name(a.new_name)
    except meta.NameError_ as e:
        raise CtlError(f"Error response from daemon: {e}") from None
    if c.labels.get(meta.NAME) == new:
        raise CtlError(f"Error response from daemon: Renaming a container with the same name "
                       "as its current name")
    ctl.check_name_free(new, c.id)
    c.labels[meta.NAME] = new
    mask = field_mask_pb2.FieldMask(paths=[f"labels.{meta.NAME}"])
    ctl.client.containers.Update(ctl.cpb.UpdateContainerRequest(container=c, update_mask=mask))
    ctl.claim_name(new, c.id)
    return 0


def top(ctl, a) -> int:
    c, _ = ctl._require_running(a.container, "")
    pids = {p.pid for p in ctl.client.tasks.ListPids(
        ctl.tpb.ListPidsRequest(container_id=c.id)).processes}
    args = a.ps_args or ["-ef"]
    res = subprocess.run(["ps", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise CtlError(f"Error response from daemon: ps: {res.stderr.strip()}")
    lines = res.stdout.splitlines()
    header = lines[0].split()
    if "PID" not in header:
        raise CtlError("Error response from daemon: Couldn't find PID field in ps output")
    col = header.index("PID")
    rows = ["\t".join(header)]
    for line in lines[1:]:
        fields = line.split(None, len(header) - 1)
        try:
            if int(fields[col]) in pids:
                rows.append("\t".join(fields))
        except (ValueError, IndexError):
            continue
    sys.stdout.write(tabwrite(rows, minwidth=0, padding=1))
    return 0
