"""Recovery: finding tasks again after a daemon restart, and cleaning up after a dead shim.

At start (``recover``) the manager reconnects to every shim named in a bundle's ``task.json`` and
asks for its state. A bundle without ``task.json`` is a create that never got as far as a shim and
is removed; a shim that answers NotFound had deleted its container, so the bundle goes too.

A shim that dies (``kill -9``) is noticed when its connection drops, or at recovery when it does
not answer. Its container is then killed and deleted through the runtime, its rootfs unmounted,
and each process still running is reported stopped with the exit status recorded by the shim if
there is one, else ``KILLED_STATUS`` (137, i.e. SIGKILL, which is what the container got). The
task stays STOPPED until deleted, after which the ID is free again.
"""
from __future__ import annotations

import asyncio
import os
import time

from supervisor import errors, shimclient
from supervisor.core.bundles import unlink
from supervisor.errors import NotFound

KILLED_STATUS = 137


async def recover(mgr) -> None:
    """Find every task left by a previous daemon and reconnect to its shim."""
    found = []
    for ns in sorted(os.listdir(mgr.tasks_dir)):
        for cid in sorted(os.listdir(os.path.join(mgr.tasks_dir, ns))):
            found.append((ns, cid))
    if found:  # exits reported while no client listens yet: see supervisor/events.py
        mgr.events.hold_undelivered()
    await asyncio.gather(*(_recover_one(mgr, ns, cid) for ns, cid in found))


async def _recover_one(mgr, ns: str, cid: str) -> None:
    from supervisor.core.tasks import Proc, Task
    bundle = mgr.bundle(ns, cid)
    try:
        info = bundle.read_info()
    except (OSError, ValueError):
        bundle.remove()  # create never got as far as a shim
        return
    task = Task(ns, cid, bundle)
    task.info = info
    mgr.tasks[(ns, cid)] = task
    client = shimclient.ShimClient(info["socket"])
    try:
        await client.connect()
        state = await client.call("state")
    except (OSError, errors.SupervisorError) as e:
        client.close()
        if isinstance(e, NotFound):  # the shim had deleted the container: finish the job
            mgr.tasks.pop((ns, cid), None)
            bundle.remove()
            return
        init = Proc("")  # what a dead shim left on disk: the init process, its exit record
        init.pid = bundle.read_init_pid()
        init.status = "running"
        task.procs[""] = init
        task.ready = True
        await shim_died(mgr, task)
        return
    for d in state["procs"]:
        proc = Proc(d["exec_id"])
        proc.load(d)
        task.procs[proc.exec_id] = proc
    task.paused = bool(state.get("paused"))
    task.ready = True
    mgr.bind(task, client)
    await client.call("subscribe")


async def shim_died(mgr, task) -> None:
    """Kill and clean up a container whose shim is gone; report it stopped."""
    task.dead = True
    task.shim = None
    info = task.info
    rt = [info["runtime"]] + (["--root", info["runtime_root"]] if info.get("runtime_root")
                              else [])
    await shimclient.run_command(rt + ["kill", "--all", task.id, "9"])
    await shimclient.run_command(rt + ["delete", "--force", task.id])
    await asyncio.to_thread(task.bundle.unmount_rootfs, len(info.get("rootfs") or []))
    for proc in task.procs.values():
        if proc.status == "stopped":
            continue
        rec = task.bundle.read_exit(proc.exec_id)
        status, at = (rec["exit_status"], rec["exited_at"]) if rec else (KILLED_STATUS, None)
        if proc.mark_exited(status, at if at is not None else time.time()):
            mgr.publish_exit(task, proc)
        if not rec and proc.exec_id == "":
            task.bundle.write_init_exit(proc.pid, proc.exit_status, proc.exited_at)
    unlink(info.get("socket", ""))
