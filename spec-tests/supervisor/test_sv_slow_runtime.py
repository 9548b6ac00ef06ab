"""A slow runtime call does not stall the stdio of the container's processes.

The container's runtime is a wrapper around the real one whose ``ps`` blocks until the test
releases it (as a stuck ``runtime ps`` or a hook that sleeps would). While ``ListPids`` waits on
it, the container's output keeps arriving at the client: the shim waits for the runtime inside
its stdio loop (supervisor/shim/reactor.py, ``run_until``), not in a blocking waitpid.
"""
from __future__ import annotations

import os
import threading

from supervisor.gen.containerd.services.containers.v1 import containers_pb2 as cpb
from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb

from sv_harness import RUNTIME, Fifos, destroy, make_spec, wait_for

WRAPPER = """#!/bin/sh
for a in "$@"; do
  if [ "$a" = ps ]; then
    : > {dir}/stuck
    while [ ! -e {dir}/release ]; do sleep 0.05; done
    break
  fi
done
exec {runtime} "$@"
"""


def _last_number(data: bytes) -> int:
    lines = data.split(b"\n")[:-1]  # the last piece may be a partial line
    return int(lines[-1]) if lines else 0


def test_stuck_runtime_ps_does_not_stall_output(sv, sv_rootfs):
    client = sv.client()
    cid = sv.id()
    wdir = os.path.join(sv.base, "wrap-" + cid)
    os.makedirs(wdir)
    wrapper = os.path.join(wdir, "runtime")
    with open(wrapper, "w") as f:
        f.write(WRAPPER.format(dir=wdir, runtime=RUNTIME))
    os.chmod(wrapper, 0o755)
    release = os.path.join(wdir, "release")
    fifos = Fifos(sv.base, cid, outputs=("stdout",))
    fifos.start()
    client.create_container(cid, make_spec(sv, sv_rootfs, cid, [
        "/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.01; done"]),
        runtime_binary=wrapper)
    listed = {}
    lister = None
    try:
        client.tasks.Create(tpb.CreateTaskRequest(container_id=cid, stdout=fifos.paths["stdout"]))
        client.tasks.Start(tpb.StartRequest(container_id=cid))
        wait_for(lambda: _last_number(fifos.data["stdout"]) > 0, 60, what="first output")

        def list_pids():
            listed["pids"] = client.tasks.ListPids(tpb.ListPidsRequest(container_id=cid))

        lister = threading.Thread(target=list_pids, daemon=True)
        lister.start()
        wait_for(lambda: os.path.exists(os.path.join(wdir, "stuck")), 60,
                 what="the runtime's ps to block")
        seen = _last_number(fifos.data["stdout"])
        wait_for(lambda: _last_number(fifos.data["stdout"]) >= seen + 20, 60,
                 what="output while the runtime's ps is stuck")
        assert lister.is_alive() and "pids" not in listed  # ps is still stuck meanwhile
        open(release, "w").close()
        lister.join(60)
        init_pid = client.tasks.Get(tpb.GetRequest(container_id=cid)).process.pid
        assert init_pid in [p.pid for p in listed["pids"].processes]
    finally:
        open(release, "w").close()
        if lister is not None:
            lister.join(60)
        destroy(sv, client, cid)
        fifos.join()
    assert client.containers.List(cpb.ListContainersRequest(filters=[f"id=={cid}"])) \
        .containers == []
