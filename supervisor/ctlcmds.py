"""The lifecycle commands beyond run/stop/rm: start, restart, wait, rename, top.

Each is a function ``(ctl, args) -> exit code`` named in ctl.COMMANDS and imported only when it
runs. They act through the supervisor's API only; ``top`` reads the task's pids from the
supervisor and shows those rows of the host's ``ps`` (as dockerd does).
"""
from __future__ import annotations

import os
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
        tee = "" if meta.LOG_URI in c.labels else c.labels.get(meta.LOG, "")  # the shim logs
        return ctl._attach(c.id, "", fifos, tty, tee)
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
    mask = {"paths": [f"labels.{meta.NAME}"]}  # a FieldMask, as its fields (either client)
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


def attach(ctl, a) -> int:
    """Follow a running container's output from now until it exits; its exit code is ours.
    SIGINT/SIGTERM/SIGHUP are passed to the container (docker's --sig-proxy)."""
    import threading

    from supervisor.ctllogs import follow
    c, task = ctl._require_running(a.container, "")
    log = c.labels.get(meta.LOG, "")
    if _status_name(task.status) == "paused":
        raise CtlError("Error response from daemon: You cannot attach to a paused container, "
                       "unpause it first")
    _attach_stdin(ctl, c, task, a)
    done = threading.Event()
    reader = threading.Thread(target=follow, kwargs=dict(
        path=log, tail="0", keep_going=True, running=lambda: not done.is_set()), daemon=True)
    reader.start()
    undo = ctl._forward_signals(c.id, "") if a.sig_proxy else None
    try:
        code = ctl.client.wait(c.id)
    finally:
        if undo:
            undo()
    done.set()
    reader.join(30)
    return code


def _attach_stdin(ctl, c, task, a) -> None:
    """Our stdin to the container's (a ``-i`` container's FIFO, supervisor/ctlstdin.py); at
    its end the container's stdin is closed when the container was made with StdinOnce."""
    from supervisor import ctlstdin
    path = c.labels.get(ctlstdin.LABEL, "")
    if a.no_stdin or not path or task.stdin != path:
        return
    once = meta.config_of(c.labels).get("stdin_once", False)
    ctlstdin.copy_in(path, (lambda: ctl._close_stdin(c.id, "")) if once else (lambda: None))


def port(ctl, a) -> int:
    """Published ports, from the container's network attachment (supervisor/ctlnet.py)."""
    from supervisor import ctlnet
    ports = ctlnet.published(ctl, ctl.container(a.container).id)
    want = a.private
    if want and "/" not in want:
        want += "/tcp"
    lines = []
    for p in ports:
        key = f"{p['container_port']}/{p.get('proto', 'tcp')}"
        host = f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}"
        if want:
            if key == want:
                lines.append(host)
        else:
            lines.append(f"{key} -> {host}")
    if want and not lines:
        raise CtlError(f"Error: No public port '{want}' published for {a.container}")
    sys.stdout.write("".join(ln + "\n" for ln in lines))
    return 0


def update(ctl, a) -> int:
    """Change a container's resources (live, and in its spec for later starts) and restart
    policy."""
    import json

    from google.protobuf import field_mask_pb2

    from supervisor import restartpolicy
    from supervisor.client import RESOURCES_URL, SPEC_URL, json_any
    res = {}
    if a.memory:
        res["memory"] = {"limit": a.memory}
    if a.cpus:
        res["cpu"] = {"quota": int(a.cpus * 100000), "period": 100000}
    if a.pids_limit is not None:
        res["pids"] = {"limit": a.pids_limit}
    if not res and a.restart is None:
        raise CtlError("You must provide one or more flags when using this command.")

    def one(ref):
        c = ctl.container(ref)
        spec = json.loads(c.spec.value)
        cur = spec.setdefault("linux", {}).setdefault("resources", {})
        for key, value in res.items():
            cur.setdefault(key, {}).update(value)
        paths = []
        if res:
            c.spec.CopyFrom(json_any(SPEC_URL, spec))
            paths.append("spec")
            task = ctl.task(c.id)
            if task is not None and _status_name(task.status) in ("running", "paused"):
                ctl.client.tasks.Update(ctl.tpb.UpdateTaskRequest(
                    container_id=c.id, resources=json_any(RESOURCES_URL, res)))
        if a.restart is not None:
            name = a.restart["Name"]
            if name == "on-failure" and a.restart["MaximumRetryCount"]:
                name += f":{a.restart['MaximumRetryCount']}"
            cfg = meta.config_of(c.labels)
            cfg["restart"] = a.restart
            c.labels[meta.CONFIG] = json.dumps(cfg, separators=(",", ":"))
            paths.append(f"labels.{meta.CONFIG}")
            if name == "no":
                c.labels.pop(restartpolicy.POLICY, None)
            else:
                c.labels[restartpolicy.POLICY] = name
                c.labels.setdefault(restartpolicy.STATUS, "running")
                paths.append(f"labels.{restartpolicy.STATUS}")
            paths.append(f"labels.{restartpolicy.POLICY}")
        ctl.client.containers.Update(ctl.cpb.UpdateContainerRequest(
            container=c, update_mask=field_mask_pb2.FieldMask(paths=paths)))
    return ctl.each(a.containers, one)


def version(ctl, a) -> int:
    from supervisor import __version__
    from supervisor.gen.containerd.services.version.v1 import version_pb2  # noqa: F401
    from google.protobuf import empty_pb2
    server = ctl.client.version.Version(empty_pb2.Empty())
    print(f"Client:\n Version:           {__version__}\n API:               containerd v1 "
          f"(gRPC)\n Context:           {ctl.args.address}\n\nServer: pyrunc-supervisor\n "
          f"Engine:\n  Version:          {server.version}\n  Revision:         "
          f"{server.revision}")
    return 0


def info(ctl, a) -> int:
    import platform
    recs = ctl.records()
    counts = {s: sum(1 for r in recs if r.status == s) for s in ("running", "paused")}
    stopped = len(recs) - counts["running"] - counts["paused"]
    from google.protobuf import empty_pb2

    from supervisor.gen.containerd.services.introspection.v1 import introspection_pb2
    server = ctl.client.version.Version(empty_pb2.Empty())
    plugins = ctl.client.introspection.Plugins(introspection_pb2.PluginsRequest())
    runtime = next((p.exports.get("runtime", "") for p in plugins.plugins
                    if p.type == "io.containerd.runtime.v2"), "")
    os_name = platform.system()
    try:
        with open("/etc/os-release") as f:
            os_name = next((ln.split("=", 1)[1].strip().strip('"') for ln in f
                            if ln.startswith("PRETTY_NAME=")), os_name)
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    from supervisor.ctlview import binary_size
    print(f"Containers: {len(recs)}\n Running: {counts['running']}\n Paused: "
          f"{counts['paused']}\n Stopped: {stopped}\nServer Version: {server.version}\n"
          f"Runtimes: {runtime}\nDefault Runtime: {runtime}\n"
          f"Kernel Version: {platform.release()}\nOperating System: {os_name}\n"
          f"Architecture: {platform.machine()}\nCPUs: {os.cpu_count()}\n"
          f"Total Memory: {binary_size(mem)}\nPyrunc Root Dir: {ctl.files_root()}\n"
          f"Namespace: {ctl.args.namespace}")
    return 0


def system(ctl, a) -> int:
    """``system prune``: remove stopped containers (and, with --volumes, unused volumes)."""
    if a.action != "prune":
        raise CtlError(f"unknown system command {a.action!r}")
    if not a.force:
        what = "  - all stopped containers\n" + ("  - all volumes not used by at least one "
                                               "container\n" if a.volumes else "")
        sys.stdout.write(f"WARNING! This will remove:\n{what}\nAre you sure you want to "
                         "continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    gone = []
    for rec in ctl.records():
        if rec.status in ("created", "exited"):
            ctl._remove(rec.id, False)
            gone.append(rec.id)
    out = ""
    if gone:
        out += "Deleted Containers:\n" + "".join(i + "\n" for i in gone) + "\n"
    if a.volumes:
        from supervisor import ctlvolumes
        root = ctl.files_root("volumes")
        used = {n for c in ctl._list() for n in (c.labels.get(ctlvolumes.LABEL) or "").split(",")}
        removed = []
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            if name not in used:
                import shutil
                shutil.rmtree(os.path.join(root, name))
                removed.append(name)
        if removed:
            out += "Deleted Volumes:\n" + "".join(n + "\n" for n in removed) + "\n"
    sys.stdout.write(out + "Total reclaimed space: 0B\n")
    return 0
