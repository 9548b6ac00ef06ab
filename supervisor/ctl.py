"""pyrunc-ctl: a docker-like client for pyrunc-supervisor, with Docker's names, flags, exit
codes and output.

    pyrunc-ctl run [-d] [-i] [-t] [--rm] [--name N] [-e K=V] [--env-file F] [-u UID[:GID]]
                   [-w DIR] [-v HOST:CTR[:ro]] [--mount ...] [--tmpfs DIR] [--entrypoint E]
                   [-h HOST] [-m SIZE] [--cpus N] [--pids-limit N] [--restart P] [--init]
                   [--read-only] [--cap-add C] [--cap-drop C] [--privileged] [-l K=V]
                   [--log-opt K=V] [--runtime BIN] ROOTFS|BUNDLE [CMD...]
    pyrunc-ctl create ... | start [-a] [-i] C... | restart [-t N] C... | wait C...
    pyrunc-ctl ps [-a] [-q] [-f K=V] [--format T] [--no-trunc] | inspect [-f T] C...
    pyrunc-ctl logs [-f] [--tail N] C | exec [-d] [-i] [-t] [-e] [-u] [-w] C CMD...
    pyrunc-ctl kill [-s SIG] C... | stop [-t N] C... | rm [-f] C... | pause C... | unpause C...
    pyrunc-ctl rename OLD NEW | top C [ps OPTIONS] | events [FILTER...] | stats [C...]

It speaks the containerd API, so a container made here is an ordinary container for ctr as well
(same namespace, default ``default``). As with dockerd on containerd, the containerd id is the
Docker ID (64 hex digits) and the name is a label (supervisor.ctlmeta); a container is named on
the command line by ID, name or unique ID prefix. A detached container writes its output to a log
file (``--log-dir``) named in its ``io.pyrunc.ctl/log`` label; ``logs`` reads it.

Exit codes are Docker's: 125 for a flag error or a failure of ``run``/``create`` itself, 126 when
the container's command cannot be invoked, 127 when it is not found, otherwise the container's
own status; other commands exit 1 when the daemon refuses (unknown container...), and 1 when a
required argument is missing. Errors are Docker's messages on stderr.

The command table (``COMMANDS``) maps each command to its parser set-up and handler; a handler
named ``"module:function"`` is imported only when that command runs, so start-up pays only for
what the command needs (grpc itself is imported on first use, not by ``--help``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import sys
import time

from supervisor import ctlmeta as meta
from supervisor import restartpolicy
from supervisor import spec as specmod
from supervisor.ctlbase import (  # noqa: F401 (re-exported for command modules)
    EXIT_CANNOT_INVOKE, EXIT_ERROR, EXIT_FAILED, EXIT_NOT_FOUND, CtlError, exec_failure_code,
    grpc, no_such_container, start_failure_code, status_name)


DEFAULT_ADDRESS = "/run/pyrunc/supervisor.sock"
LOG_LABEL = meta.LOG
_exec_failure_code = exec_failure_code
_status_name = status_name


# Commands served through the supervisor's local API when it offers one (supervisor/ctllocal.py):
# they never import grpc (enforced: $PYRUNC_CTL_FORBID_IMPORTS, spec-tests/supervisor/
# test_sv_ctl_local.py). The others use gRPC.
LOCAL_COMMANDS = frozenset((
    "run", "create", "start", "restart", "stop", "kill", "rm", "ps", "inspect", "logs", "wait",
    "pause", "unpause", "resume", "exec", "rename", "top", "attach", "port"))


class Ctl:
    def __init__(self, args):
        self.args = args
        from supervisor import ctllocal
        local = ctllocal.connect(args.address, args.namespace) \
            if args.cmd in LOCAL_COMMANDS else None
        if local is not None:
            self.client, self.messages = local, ctllocal.MESSAGES
            self.cpb = self.tpb = ctllocal.MESSAGES
            return
        from supervisor.client import Client
        from supervisor.gen.containerd.services.containers.v1 import containers_pb2
        from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2
        self.client = Client(args.address, args.namespace)
        self.cpb, self.tpb, self.messages = containers_pb2, tasks_pb2, None

    def pb(self, module: str):
        """Request factories: the generated ``_pb2`` module over gRPC, ctllocal's over the
        local API (``module`` is imported only for gRPC)."""
        return self.messages or importlib.import_module(module)

    # -- lookups ----------------------------------------------------------------------------------
    def container(self, ref: str):
        """Resolve a reference as Docker does: full ID, exact name, then unique ID prefix."""
        if len(ref) == 64 and meta.is_hex_prefix(ref):
            try:
                return self.client.containers.Get(self.cpb.GetContainerRequest(id=ref)).container
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
        by_name = self._list(meta.name_filter(ref.lstrip("/")))
        if by_name:
            return min(by_name, key=lambda c: (c.created_at.seconds, c.created_at.nanos, c.id))
        if meta.is_hex_prefix(ref):
            found = self._list(f"id~=^{ref}")
            if len(found) > 1:
                raise CtlError(f"Error response from daemon: Multiple IDs found with provided "
                               f"prefix: {ref}")
            if found:
                return found[0]
        try:  # a container made through the API (ctr...) under an ID of its own choosing
            return self.client.containers.Get(self.cpb.GetContainerRequest(id=ref)).container
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise
        raise no_such_container(ref)

    def _list(self, *filters: str):
        req = self.cpb.ListContainersRequest(filters=list(filters))
        return list(self.client.containers.List(req).containers)

    def task(self, cid: str):
        """The task's init process, or None if the container has no task."""
        try:
            return self.client.tasks.Get(self.tpb.GetRequest(container_id=cid)).process
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def record(self, ref: str) -> meta.Record:
        c = self.container(ref)
        return meta.record(c, self.task(c.id))

    def records(self) -> list[meta.Record]:
        """Every container of the namespace with its task: two calls, whatever the count."""
        tasks = {t.id: t for t in self.client.tasks.List(self.tpb.ListTasksRequest()).tasks}
        out = [meta.record(c, tasks.get(c.id)) for c in self._list()]
        return sorted(out, key=lambda r: r.created, reverse=True)

    def each(self, refs, fn, echo: bool = True) -> int:
        """Docker's multi-container commands: act on each, report each failure, exit 1 if any."""
        failed = 0
        for ref in refs:
            try:
                fn(ref)
                if echo:
                    print(ref, flush=True)
            except CtlError as e:
                print(e, file=sys.stderr)
                failed = 1
            except grpc.RpcError as e:
                print(f"Error response from daemon: {e.details()}", file=sys.stderr)
                failed = 1
        return failed

    # -- names ------------------------------------------------------------------------------------
    def check_name_free(self, name: str, cid: str = "") -> None:
        for c in self._list(meta.name_filter(name)):
            if c.id != cid:
                raise CtlError(f'Error response from daemon: Conflict. The container name '
                               f'"/{name}" is already in use by container "{c.id}". You have '
                               f"to remove (or rename) that container to be able to reuse that "
                               f"name.")

    def claim_name(self, name: str, cid: str) -> None:
        """After creating: if another container took the name meanwhile, the later one yields."""
        holders = self._list(meta.name_filter(name))
        if len(holders) > 1:
            first = min(holders, key=lambda c: (c.created_at.seconds, c.created_at.nanos, c.id))
            if first.id != cid:
                self.client.containers.Delete(self.cpb.DeleteContainerRequest(id=cid))
                self.check_name_free(name)

    def files_root(self, *parts: str) -> str:
        """A directory for the client's files (logs, volumes) under the supervisor's --root,
        found through its API (the metadata plugin's "root" export)."""
        introspection_pb2 = self.pb(
            "supervisor.gen.containerd.services.introspection.v1.introspection_pb2")
        if not hasattr(self, "_files_root"):
            reply = self.client.introspection.Plugins(introspection_pb2.PluginsRequest(
                filters=['type=="io.containerd.metadata.v1"']))
            roots = [p.exports["root"] for p in reply.plugins if "root" in p.exports]
            if not roots:
                raise CtlError("Error response from daemon: the supervisor does not say where "
                               "its root is")
            self._files_root = os.path.join(roots[0], "ctl")
        return os.path.join(self._files_root, *parts)

    def set_wanted(self, c, running: bool) -> None:
        """Tell the supervisor's restart monitor whether the user wants this container up: set
        before a stop, kill or rm (so the exit is not restarted), and at start/restart."""
        if restartpolicy.POLICY not in c.labels:
            return
        c.labels[restartpolicy.STATUS] = "running" if running else "stopped"
        paths = [f"labels.{restartpolicy.STATUS}"]
        if running:
            c.labels[restartpolicy.COUNT] = "0"
            paths.append(f"labels.{restartpolicy.COUNT}")
        self.client.containers.Update(self.cpb.UpdateContainerRequest(
            container=c, update_mask={"paths": paths}))  # a FieldMask, given as its fields

    # -- run / create -----------------------------------------------------------------------------
    def cmd_run(self, a) -> int:
        c = self.create(a)
        cid = c.id
        try:
            if a.detach:
                self.start_logged(c)
                print(cid)
                return 0
            return self._run_attached(c, a)
        except BaseException:
            if a.rm:
                self._remove(cid, force=True)
            raise

    def cmd_create(self, a) -> int:
        print(self.create(a).id)
        return 0

    def create(self, a):
        if a.rm and a.restart["Name"] != "no":
            raise CtlError("Conflicting options: --restart and --rm")
        cid = meta.new_id()
        try:
            name = meta.check_name(a.name) if a.name else meta.random_name()
        except meta.NameError_ as e:
            raise CtlError(f"Error response from daemon: {e}") from None
        self.check_name_free(name)
        spec, cfg, shown = self._build_spec(a, cid)
        # Docker's StdinOnce: the client's end of input closes the container's (not run -di)
        cfg["stdin_once"] = a.interactive and not (self.args.cmd == "run" and a.detach)
        log_dir = os.path.abspath(a.log_dir) if a.log_dir else self.files_root("logs")
        log = os.path.join(log_dir, self.args.namespace, cid + ".log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        labels = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in a.label)
        from supervisor import ctlnet
        labels.update(ctlnet.run_labels(a, name))
        labels.update({meta.NAME: name, meta.IMAGE: a.image, meta.CMD: json.dumps(shown),
                       meta.CONFIG: json.dumps(cfg, separators=(",", ":")), meta.LOG: log})
        from supervisor.ctllogs import log_uri  # written by the shim (supervisor/shim/jsonlog.py)
        labels[meta.LOG_URI] = log_uri(log, dict(a.log_opt))
        if a.interactive and a.detach:  # stdin kept open for attach (supervisor/ctlstdin.py)
            from supervisor import ctlstdin
            labels[ctlstdin.LABEL] = ctlstdin.fifo_for(log)
        if self._volume_names:
            labels["io.pyrunc.ctl/volumes"] = ",".join(self._volume_names)
        if a.restart["Name"] != "no":  # kept by the supervisor (supervisor/core/restart.py)
            policy = a.restart["Name"]
            if policy == "on-failure" and a.restart["MaximumRetryCount"]:
                policy += f":{a.restart['MaximumRetryCount']}"
            labels.update({restartpolicy.POLICY: policy, restartpolicy.STATUS: "running"})
        run = getattr(self, "_image_run", None)
        if run is not None:  # an image: a snapshot of its own, named after the container
            c = run.create_container(spec, labels, a.runtime or "")
        else:
            c = self.client.create_container(cid, spec, labels, runtime_binary=a.runtime or "")
        self.claim_name(name, cid)
        return c

    def _build_spec(self, a, cid: str):
        from supervisor import ctl_images, ctlopts
        try:
            if os.path.isfile(os.path.join(a.image, "config.json")):
                spec = specmod.load_bundle(a.image)
            elif os.path.isdir(a.image):
                spec = specmod.default_spec(a.image, [], cid[:12])
            elif ctl_images.is_image_ref(a.image):
                self._image_run = ctl_images.ImageRun(self, a, cid)
                spec = self._image_run.base_spec(a)
            else:
                raise CtlError(f"Error response from daemon: {a.image}: neither a rootfs "
                               "directory nor a bundle")
            image_args = (spec.get("process") or {}).get("args") or []
            args, shown = ctlopts.command_line(a, image_args)
            env = ctlopts.read_env_files(a.env_file) + list(a.env)
            from supervisor.ctlvolumes import resolve_volume_flags
            volumes, self._volume_names = resolve_volume_flags(self, a.volume)
            specmod.apply_options(spec, args=args, env=env, user=a.user, cwd=a.workdir,
                                  volumes=volumes, terminal=a.tty,
                                  cgroups_path=f"/{self.args.namespace}/{cid}")
            cfg = ctlopts.apply_docker_options(spec, a, cid[:12])
            cfg["cmd"] = list(a.command) or None
            return spec, cfg, shown
        except specmod.SpecError as e:
            raise CtlError(f"Error response from daemon: {e}") from None

    def start_logged(self, c) -> None:
        """Create and start the task; the shim writes its output to the container's log."""
        log = c.labels.get(LOG_LABEL)
        os.makedirs(os.path.dirname(log), exist_ok=True)
        terminal = bool(json.loads(c.spec.value).get("process", {}).get("terminal"))
        out = "" if meta.LOG_URI in c.labels else "file://" + log  # older containers: raw
        from supervisor import ctlstdin
        stdin = c.labels.get(ctlstdin.LABEL, "")
        self._create_task(c.id, stdin=stdin and ctlstdin.ensure(stdin), stdout=out, stderr=out,
                          terminal=terminal)
        self._start(c.id)

    def _create_task(self, cid: str, stdin="", stdout="", stderr="", terminal=False):
        from supervisor import ctl_images
        req = self.tpb.CreateTaskRequest(container_id=cid, stdin=stdin, stdout=stdout,
                                         stderr=stderr, terminal=terminal,
                                         rootfs=ctl_images.rootfs_of(self, cid))
        try:
            return self.client.tasks.Create(req)
        except grpc.RpcError as e:
            raise CtlError(f"Error response from daemon: {e.details()}",
                           start_failure_code(e.details())) from None

    def _start(self, cid: str, exec_id: str = ""):
        try:
            return self.client.tasks.Start(self.tpb.StartRequest(container_id=cid,
                                                                 exec_id=exec_id))
        except grpc.RpcError as e:
            code = (_exec_failure_code if exec_id else start_failure_code)(e.details())
            raise CtlError(f"Error response from daemon: {e.details()}", code) from None

    def _run_attached(self, c, a) -> int:
        from supervisor.clientio import FifoSet
        cid = c.id
        fifos = FifoSet(cid[:12], stdin=a.interactive, stderr=not a.tty)
        try:
            self._create_task(cid, fifos.stdin, fifos.stdout, fifos.stderr, a.tty)
            code = self._attach(cid, "", fifos, a.tty)
            if a.rm:
                self.client.tasks.Delete(self.tpb.DeleteTaskRequest(container_id=cid))
        finally:
            fifos.close()
        if a.rm:
            self.client.containers.Delete(self.cpb.DeleteContainerRequest(id=cid))
            from supervisor import ctl_images
            ctl_images.remove_snapshot(self, c)
        return code

    def _attach(self, cid: str, exec_id: str, fifos, tty: bool, tee: str = "") -> int:
        """Start the process with stdio attached; return its exit status."""
        from supervisor.clientio import RawTerminal
        fifos.start_output(tee)
        result = {}
        import threading
        waiter = threading.Thread(target=self._wait_into, args=(cid, exec_id, result),
                                  daemon=True)
        waiter.start()
        with RawTerminal() if tty else _Nothing():
            self._start(cid, exec_id)
            if tty:
                self._follow_resize(cid, exec_id)
            fifos.start_input(lambda: self._close_stdin(cid, exec_id))
            forward = self._forward_signals(cid, exec_id) if not tty else None
            waiter.join()
            if forward:
                forward()
        fifos.wait_output()
        if "error" in result:
            raise result["error"]
        return result["code"]

    def _wait_into(self, cid, exec_id, result) -> None:
        try:
            result["code"] = self.client.wait(cid, exec_id)
        except grpc.RpcError as e:
            result["error"] = e

    def _close_stdin(self, cid: str, exec_id: str) -> None:
        try:
            self.client.tasks.CloseIO(self.tpb.CloseIORequest(container_id=cid, exec_id=exec_id,
                                                              stdin=True))
        except grpc.RpcError:
            pass

    def _follow_resize(self, cid: str, exec_id: str) -> None:
        from supervisor.clientio import terminal_size

        def resize(*_):
            size = terminal_size()
            if size:
                try:
                    self.client.tasks.ResizePty(self.tpb.ResizePtyRequest(
                        container_id=cid, exec_id=exec_id, width=size[0], height=size[1]))
                except grpc.RpcError:
                    pass
        resize()
        signal.signal(signal.SIGWINCH, resize)

    def _forward_signals(self, cid: str, exec_id: str):
        """Forward SIGINT/SIGTERM/SIGHUP to the process while attached; returns an undo."""
        def forward(sig, _frame):
            try:
                self.client.tasks.Kill(self.tpb.KillRequest(container_id=cid, exec_id=exec_id,
                                                            signal=sig))
            except grpc.RpcError:
                pass
        sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old = {s: signal.signal(s, forward) for s in sigs}
        return lambda: [signal.signal(s, h) for s, h in old.items()]

    # -- exec -------------------------------------------------------------------------------------
    def cmd_exec(self, a) -> int:
        import secrets

        from supervisor.clientio import FifoSet
        from supervisor.ctlbase import PROCESS_URL
        if not a.command:
            raise CtlError('"pyrunc-ctl exec" requires at least 2 arguments.')
        cont = self.container(a.container)
        cid = cont.id
        task = self.task(cid)
        if task is None or _status_name(task.status) != "running":
            raise CtlError(f"Error response from daemon: Container {cid} is not running")
        try:
            proc = specmod.exec_process(json.loads(cont.spec.value), a.command, env=a.env,
                                        user=a.user, cwd=a.workdir, terminal=a.tty)
        except specmod.SpecError as e:
            raise CtlError(f"Error response from daemon: {e}") from None
        exec_id = "exec-" + secrets.token_hex(6)
        if a.detach:
            self.client.tasks.Exec(self.tpb.ExecProcessRequest(
                container_id=cid, exec_id=exec_id, spec=_any(PROCESS_URL, proc)))
            self._start(cid, exec_id)
            return 0
        fifos = FifoSet(exec_id, stdin=a.interactive, stderr=not a.tty)
        try:
            try:
                self.client.tasks.Exec(self.tpb.ExecProcessRequest(
                    container_id=cid, exec_id=exec_id, spec=_any(PROCESS_URL, proc),
                    terminal=a.tty, stdin=fifos.stdin, stdout=fifos.stdout, stderr=fifos.stderr))
            except grpc.RpcError as e:
                raise CtlError(f"Error response from daemon: {e.details()}",
                               _exec_failure_code(e.details())) from None
            try:
                code = self._attach(cid, exec_id, fifos, a.tty)
            finally:
                self.client.tasks.DeleteProcess(self.tpb.DeleteProcessRequest(
                    container_id=cid, exec_id=exec_id))
        finally:
            fifos.close()
        return code

    # -- listing and inspection -------------------------------------------------------------------
    def cmd_ps(self, a) -> int:
        from supervisor import ctlview
        from supervisor.ctlfilter import FilterError, PsFilter
        try:
            flt = PsFilter(a.filter)
        except FilterError as e:
            raise CtlError(str(e)) from None
        recs = [r for r in self.records() if flt.match(r, a.all)]
        if a.latest or a.last > 0:
            recs = recs[:1 if a.latest else a.last]
        fmt = a.format or ("{{.ID}}" if a.quiet else ctlview.PS_DEFAULT)
        ctxs = [ctlview.PsContext(r, trunc=not a.no_trunc) for r in recs]
        try:
            out = ctlview.render_all(fmt, ctxs, ctlview.PsContext.HEADERS)
        except ctlview.TemplateError as e:
            raise CtlError(f"failed to execute template: {e}") from None
        sys.stdout.write(out)
        return 0

    def _inspect(self, ref: str) -> dict:
        from supervisor import ctlnet, ctlview
        rec = self.record(ref)
        info = ctlview.inspect(rec)
        network = ctlnet.network_settings(self, rec.id)
        if network is not None:
            info["NetworkSettings"] = network
        return info

    def cmd_inspect(self, a) -> int:
        from supervisor import ctlview
        found, failed = [], 0
        for ref in a.containers:
            try:
                found.append(self._inspect(ref))
            except CtlError:
                print(f"Error: No such object: {ref}", file=sys.stderr)
                failed = 1
        if a.format:
            try:
                sys.stdout.write(ctlview.render_all(a.format, found))
            except ctlview.TemplateError as e:
                raise CtlError(f"template parsing error: {e}") from None
        else:
            print(json.dumps(found, indent=4))
        return failed

    def cmd_logs(self, a) -> int:
        from supervisor.ctllogs import LogError, follow
        c = self.container(a.container)
        log = c.labels.get(LOG_LABEL)
        if not log:
            raise CtlError(f"Error response from daemon: container {a.container} has no log")
        try:
            return follow(log, tail=a.tail, keep_going=a.follow,
                          running=lambda: (self.task(c.id) or _Stopped()).status in (1, 2, 4, 5),
                          timestamps=a.timestamps, since=a.since, until=a.until)
        except LogError as e:
            raise CtlError(str(e)) from None

    def cmd_stats(self, a) -> int:
        from supervisor.ctlstats import stats
        return stats(self, a)

    def cmd_events(self, a) -> int:
        from google.protobuf import json_format

        from supervisor.events import EVENT_TYPES
        try:
            for env in self.client.subscribe(*a.filters):
                cls = EVENT_TYPES.get(env.event.type_url.rsplit("/", 1)[-1])
                body = ""
                if cls is not None:
                    msg = cls()
                    msg.ParseFromString(env.event.value)
                    body = json.dumps(json_format.MessageToDict(msg), separators=(",", ":"))
                print(env.timestamp.ToJsonString(), env.namespace, env.topic, body, flush=True)
        except KeyboardInterrupt:
            pass
        return 0

    # -- signals and removal ----------------------------------------------------------------------
    def _require_running(self, ref: str, what: str):
        c = self.container(ref)
        task = self.task(c.id)
        if task is None or _status_name(task.status) not in ("running", "paused"):
            raise CtlError(f"Error response from daemon: {what}Container {c.id} is not running")
        return c, task

    def cmd_kill(self, a) -> int:
        sig = _signal(a.signal)

        def kill(ref):
            c, _ = self._require_running(ref, f"Cannot kill container: {ref}: ")
            self.set_wanted(c, False)
            self.client.tasks.Kill(self.tpb.KillRequest(container_id=c.id, signal=sig))
        return self.each(a.containers, kill)

    def cmd_stop(self, a) -> int:
        sig = _signal(a.signal)

        def stop(ref):
            c = self.container(ref)
            self.set_wanted(c, False)
            self.stop(c.id, a.time, sig)
        return self.each(a.containers, stop)

    def stop(self, cid: str, grace: float, sig: int = signal.SIGTERM) -> None:
        """SIGTERM (or `sig`), up to `grace` seconds to exit, then SIGKILL (to every process)."""
        task = self.task(cid)
        if task is None or _status_name(task.status) in ("stopped", "created"):
            return
        if _status_name(task.status) == "paused":
            self.client.tasks.Resume(self.tpb.ResumeTaskRequest(container_id=cid))
        self._kill_quietly(cid, sig, False)
        try:
            self.client.wait(cid, timeout=grace)
            return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        self._kill_quietly(cid, signal.SIGKILL, True)
        self.client.wait(cid)

    _stop = stop

    def _kill_quietly(self, cid: str, sig: int, all_: bool) -> None:
        try:
            self.client.tasks.Kill(self.tpb.KillRequest(container_id=cid, signal=sig, all=all_))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # already finished
                raise

    def cmd_rm(self, a) -> int:
        def rm(ref):
            c = self.container(ref)
            if a.force:
                self.set_wanted(c, False)
            self._remove(c.id, a.force)
        return self.each(a.containers, rm)

    def _remove(self, cid: str, force: bool) -> None:
        task = self.task(cid)
        if task is not None:
            status = _status_name(task.status)
            if status in ("running", "paused"):
                if not force:
                    raise CtlError(f"Error response from daemon: You cannot remove a {status} "
                                   f"container {cid}. Stop the container before attempting "
                                   "removal or force remove")
                if status == "paused":
                    self.client.tasks.Resume(self.tpb.ResumeTaskRequest(container_id=cid))
                self._kill_quietly(cid, signal.SIGKILL, True)
                self.client.wait(cid)
            self.client.tasks.Delete(self.tpb.DeleteTaskRequest(container_id=cid))
        try:
            cont = self.client.containers.Get(self.cpb.GetContainerRequest(id=cid)).container
        except grpc.RpcError:
            return
        self.client.containers.Delete(self.cpb.DeleteContainerRequest(id=cid))
        from supervisor import ctl_images
        ctl_images.remove_snapshot(self, cont)
        log = cont.labels.get(LOG_LABEL)
        if log:
            from supervisor.ctllogs import remove_log
            remove_log(log)
        from supervisor import ctlstdin
        if cont.labels.get(ctlstdin.LABEL):
            ctlstdin.remove(cont.labels[ctlstdin.LABEL])

    def cmd_pause(self, a) -> int:
        def pause(ref):
            c, task = self._require_running(ref, "")
            if _status_name(task.status) == "paused":
                raise CtlError(f"Error response from daemon: Container {c.id} is already paused")
            self.client.tasks.Pause(self.tpb.PauseTaskRequest(container_id=c.id))
        return self.each(a.containers, pause)

    def cmd_unpause(self, a) -> int:
        def unpause(ref):
            c, task = self._require_running(ref, "")
            if _status_name(task.status) != "paused":
                raise CtlError(f"Error response from daemon: Container {c.id} is not paused")
            self.client.tasks.Resume(self.tpb.ResumeTaskRequest(container_id=c.id))
        return self.each(a.containers, unpause)

    cmd_resume = cmd_unpause


def _any(url: str, obj) -> dict:
    """A google.protobuf.Any holding JSON, as its fields (both clients' requests take that)."""
    return {"type_url": url, "value": json.dumps(obj).encode()}


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Stopped:
    status = 3


def _signal(value: str) -> int:
    if value.isdigit():
        return int(value)
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise CtlError(f"Error response from daemon: Invalid signal: {value}") from None


# -- the command line ---------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    """argparse with docker's error reporting: bad flags exit 125, missing arguments exit 1."""

    argv: list[str] = []  # the command line being parsed (to quote a flag as it was typed)
    _width: int | None = None

    def _get_formatter(self):
        """argparse makes a formatter per add_argument, each asking shutil (slow to import) for
        the terminal's width: ask once, the way shutil.get_terminal_size does."""
        if Parser._width is None:
            Parser._width = _terminal_columns() - 2  # HelpFormatter's own margin
        return self.formatter_class(prog=self.prog, width=Parser._width)

    def error(self, message):
        cmd = self.prog
        if message.startswith("the following arguments are required"):
            need = getattr(self, "required_text", "at least 1 argument")
            self.exit(EXIT_FAILED, f'"{cmd}" requires {need}.\nSee \'{cmd} --help\'.\n\n'
                      f"{self.format_usage()}")
        m = re.match(r"unrecognized arguments: (\S+)", message)
        if m:
            message = f"unknown flag: {m.group(1)}"
        m = re.match(r"argument (\S+): (?:invalid (?:\S+ )?value: '(.*)'|(.*))$", message, re.S)
        if m:
            names = m.group(1).split("/")
            flags = ", ".join(names[:2])
            if m.group(2) is not None:
                message = f'invalid argument "{m.group(2)}" for "{flags}" flag'
            elif m.group(3).startswith("expected one argument"):
                typed = next((a for a in reversed(Parser.argv) if a in names), names[-1])
                message = "flag needs an argument: " + (
                    f"'{typed[1:]}' in {typed}" if not typed.startswith("--") else typed)
            else:
                message = _argument_message(flags, m.group(3))
        self.exit(EXIT_ERROR, f"{message}\nSee '{cmd} --help'.\n")


def _terminal_columns() -> int:
    """$COLUMNS, else the width of the terminal on stdout, else 80 (shutil's rule)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def _argument_message(flags: str, text: str) -> str:
    m = re.match(r'value "(.*?)": (.*)$', text, re.S)
    if m:
        return f'invalid argument "{m.group(1)}" for "{flags}" flag: {m.group(2)}'
    return f"{flags}: {text}"


def _typed(fn):
    """Wrap a ctlopts parser so its error names the value (docker's message form)."""
    def parse(text):
        try:
            return fn(text)
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f'value "{text}": {e}') from None
    parse.__name__ = fn.__name__
    return parse


def _process_opts(p) -> None:
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-e", "--env", action="append", default=[], help="set environment variables")
    p.add_argument("-u", "--user", default="", help="UID[:GID]")
    p.add_argument("-w", "--workdir", default="", help="working directory inside the container")


def _setup_run(p, create: bool = False) -> None:
    from supervisor import ctlopts as o
    _process_opts(p)
    if not create:
        p.add_argument("-d", "--detach", action="store_true", help="run in the background")
        p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    else:
        p.set_defaults(detach=True, rm=False)
    p.add_argument("--name", default="", help="assign a name to the container")
    p.add_argument("--env-file", action="append", default=[], help="read a file of variables")
    p.add_argument("-v", "--volume", action="append", default=[], help="HOST:CONTAINER[:ro]")
    p.add_argument("--mount", action="append", default=[], type=_typed(o.mount_flag),
                   help="type=bind|tmpfs,source=...,target=...[,readonly]")
    p.add_argument("--tmpfs", action="append", default=[], help="mount a tmpfs directory")
    p.add_argument("--entrypoint", default="", help="overwrite the default entrypoint")
    p.add_argument("-h", "--hostname", default="", help="container host name")
    p.add_argument("-m", "--memory", type=_typed(o.size), default=0, help="memory limit")
    p.add_argument("--cpus", type=_typed(o.cpus), default=0.0, help="number of CPUs")
    p.add_argument("--pids-limit", type=_typed(o.go_int), default=None,
                   help="tune the container pids limit (-1 for unlimited)")
    p.add_argument("--restart", type=_typed(o.restart_policy),
                   default={"Name": "no", "MaximumRetryCount": 0},
                   help="no|always|on-failure[:N]|unless-stopped")
    p.add_argument("--init", action="store_true", help="run an init inside the container")
    p.add_argument("--read-only", action="store_true", help="mount the root read-only")
    p.add_argument("--cap-add", action="append", default=[], help="add Linux capabilities")
    p.add_argument("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    p.add_argument("--privileged", action="store_true", help="extended privileges")
    p.add_argument("-l", "--label", action="append", default=[], type=_typed(o.key_value),
                   help="set metadata on the container")
    p.add_argument("--log-opt", action="append", default=[], type=_typed(o.log_opt),
                   help="max-size=SIZE, max-file=N")
    p.add_argument("--runtime", default="", help="OCI runtime binary for this container")
    p.add_argument("--log-dir", default=os.environ.get("PYRUNC_CTL_LOG_DIR", ""),
                   help="where logs go (default: under the supervisor's --root)")
    from supervisor import ctlnet
    ctlnet.add_run_options(p)
    from supervisor import ctl_images
    ctl_images.add_run_options(p)
    p.add_argument("image", metavar="ROOTFS|BUNDLE|IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _setup_exec(p) -> None:
    p.required_text = "at least 2 arguments"
    _process_opts(p)
    p.add_argument("-d", "--detach", action="store_true", help="run the command in the "
                   "background")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _setup_ps(p) -> None:
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter KEY=VALUE")
    p.add_argument("--format", default="", help="Go-template subset, e.g. '{{.ID}}'")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    p.add_argument("-n", "--last", type=_typed(_int), default=-1, help="show n last created")
    p.add_argument("-l", "--latest", action="store_true", help="show the latest created")
    p.add_argument("-s", "--size", action="store_true", help="(accepted; sizes are 0B)")


def _int(text: str) -> int:
    from supervisor.ctlopts import go_int
    return go_int(text)


def _setup_logs(p) -> None:
    p.required_text = "exactly 1 argument"
    p.add_argument("-f", "--follow", action="store_true", help="follow log output")
    p.add_argument("-n", "--tail", default="all", help="lines from the end (or all)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("--since", default="", help="since a timestamp (2013-01-02T13:23:37Z) or "
                   "relative (42m)")
    p.add_argument("--until", default="", help="before a timestamp or relative (42m)")
    p.add_argument("container")


def _setup_kill(p) -> None:
    p.add_argument("-s", "--signal", default="KILL", help="signal to send")
    p.add_argument("containers", nargs="+")


def _setup_stop(p) -> None:
    p.add_argument("-t", "--time", "--timeout", dest="time", type=_typed(_int), default=10,
                   help="seconds to wait before killing")
    p.add_argument("-s", "--signal", default="TERM", help="signal to stop with")
    p.add_argument("containers", nargs="+")


def _setup_rm(p) -> None:
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("containers", nargs="+")


def _setup_many(p) -> None:
    p.add_argument("containers", nargs="+")


def _setup_inspect(p) -> None:
    p.add_argument("-f", "--format", default="", help="Go-template subset")
    p.add_argument("containers", nargs="+")


def _setup_events(p) -> None:
    p.add_argument("filters", nargs="*")


def _setup_stats(p) -> None:
    p.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("--format", default="", help="Go-template subset")
    p.add_argument("-a", "--all", action="store_true", help="all containers, not just running")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    p.add_argument("containers", nargs="*")


def _setup_start(p) -> None:
    p.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    p.add_argument("containers", nargs="+")


def _setup_rename(p) -> None:
    p.required_text = "exactly 2 arguments"
    p.add_argument("container")
    p.add_argument("new_name")


def _setup_top(p) -> None:
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)


def _setup_cp(p) -> None:
    p.required_text = "exactly 2 arguments"
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="follow a symlink given as the source")
    p.add_argument("-a", "--archive", action="store_true", help="keep uid/gid")
    p.add_argument("src")
    p.add_argument("dst")


def _setup_attach(p) -> None:
    p.add_argument("--sig-proxy", type=lambda v: v.lower() in ("1", "true"), default=True,
                   help="proxy received signals to the container (default true)")
    p.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    p.add_argument("container")


def _setup_port(p) -> None:
    p.add_argument("container")
    p.add_argument("private", nargs="?", default="", help="PRIVATE_PORT[/PROTO]")


def _setup_update(p) -> None:
    from supervisor import ctlopts as o
    p.add_argument("-m", "--memory", type=_typed(o.size), default=0, help="memory limit")
    p.add_argument("--cpus", type=_typed(o.cpus), default=0.0, help="number of CPUs")
    p.add_argument("--pids-limit", type=_typed(o.go_int), default=None, help="pids limit")
    p.add_argument("--restart", type=_typed(o.restart_policy), default=None,
                   help="no|always|on-failure[:N]|unless-stopped")
    p.add_argument("containers", nargs="+")


def _setup_system(p) -> None:
    p.add_argument("action", choices=("prune",))
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="prune volumes too")


def _setup_none(p) -> None:
    pass


def _lazy_setup(module: str):
    """A parser set-up that lives in the command's own module."""
    return lambda p: importlib.import_module(module).setup(p)


# name -> (help, parser set-up, handler). A handler is a Ctl method name or "module:function"
# (function(ctl, args) -> exit code), imported only when its command runs. Other modules add
# commands by listing themselves in EXTENSIONS: each has add_commands(table) that adds entries.
COMMANDS: dict[str, tuple] = {
    "run": ("create and run a container", _setup_run, "cmd_run"),
    "create": ("create a container", lambda p: _setup_run(p, create=True), "cmd_create"),
    "start": ("start stopped containers", _setup_start, "supervisor.ctlcmds:start"),
    "restart": ("restart containers", _setup_stop, "supervisor.ctlcmds:restart"),
    "exec": ("run a command in a running container", _setup_exec, "cmd_exec"),
    "ps": ("list containers", _setup_ps, "cmd_ps"),
    "inspect": ("low-level information on containers", _setup_inspect, "cmd_inspect"),
    "logs": ("fetch the logs of a container", _setup_logs, "cmd_logs"),
    "kill": ("kill running containers", _setup_kill, "cmd_kill"),
    "stop": ("stop running containers (SIGTERM, then SIGKILL)", _setup_stop, "cmd_stop"),
    "rm": ("remove containers", _setup_rm, "cmd_rm"),
    "pause": ("pause all processes of containers", _setup_many, "cmd_pause"),
    "unpause": ("unpause all processes of containers", _setup_many, "cmd_unpause"),
    "resume": ("unpause (alias)", _setup_many, "cmd_unpause"),
    "wait": ("block until containers stop, print exit codes", _setup_many,
             "supervisor.ctlcmds:wait"),
    "rename": ("rename a container", _setup_rename, "supervisor.ctlcmds:rename"),
    "top": ("display the running processes of a container", _setup_top,
            "supervisor.ctlcmds:top"),
    "cp": ("copy files between a container and the host", _setup_cp, "supervisor.ctlcp:cp"),
    "attach": ("attach to a running container's output", _setup_attach,
               "supervisor.ctlcmds:attach"),
    "port": ("list a container's port mappings", _setup_port, "supervisor.ctlcmds:port"),
    "update": ("update the resources or restart policy of containers", _setup_update,
               "supervisor.ctlcmds:update"),
    "version": ("show the client and supervisor versions", _setup_none,
                "supervisor.ctlcmds:version"),
    "info": ("display system-wide information", _setup_none, "supervisor.ctlcmds:info"),
    "system": ("system prune [-f] [--volumes]", _setup_system, "supervisor.ctlcmds:system"),
    "volume": ("manage volumes: create, ls, inspect, rm", _lazy_setup("supervisor.ctlvolumes"),
               "supervisor.ctlvolumes:volume"),
    "events": ("print events", _setup_events, "cmd_events"),
    "stats": ("resource usage statistics", _setup_stats, "cmd_stats"),
}
ERROR_CODES = {"run": EXIT_ERROR, "create": EXIT_ERROR}
EXTENSIONS: tuple[str, ...] = ("supervisor.ctlnet", "supervisor.ctl_images")
_NO_HELP = ("run", "create")  # -h is --hostname there, as in docker


def _command_of(argv) -> str | None:
    """The command word of a command line (the first argument that is not a global option or
    its value), so only that command's parser is set up; None if there is none."""
    takes_value = ("-a", "--address", "-n", "--namespace")
    it = iter(argv)
    for arg in it:
        if arg in takes_value:
            next(it, None)
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The command line's parser. Given ``argv`` naming a command, only that command's parser
    is made (start-up time: ~7 ms for all of them); otherwise (``--help``, a typo) all are."""
    ap = Parser(prog="pyrunc-ctl", description="docker-like client for pyrunc-supervisor")
    ap.add_argument("-a", "--address", default=os.environ.get("PYRUNC_SUPERVISOR_ADDRESS",
                                                              DEFAULT_ADDRESS))
    ap.add_argument("-n", "--namespace", default=os.environ.get("PYRUNC_NAMESPACE", "default"))
    from supervisor import version
    version.add_flag(ap)
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=Parser,
                            prog="pyrunc-ctl")  # given: argparse would import shutil for it
    table = dict(COMMANDS)
    wanted = _command_of(argv) if argv is not None else None
    if wanted not in table:  # the extensions' commands (or --help): every module's table
        for mod in EXTENSIONS:
            importlib.import_module(mod).add_commands(table)
    for name, (help_, setup, handler) in table.items():
        if wanted in table and name != wanted:
            continue  # not this command line's: argparse will not look at it
        p = sub.add_parser(name, help=help_, add_help=name not in _NO_HELP,
                           prog=f"pyrunc-ctl {name}")
        if name in _NO_HELP:
            p.add_argument("--help", action="help", help="show this help message and exit")
        setup(p)
        p.set_defaults(handler=handler, errcode=ERROR_CODES.get(name, EXIT_FAILED))
    return ap


def _handler(ctl: Ctl, handler: str):
    if ":" in handler:
        mod, fn = handler.split(":")
        func = getattr(importlib.import_module(mod), fn)
        return lambda a: func(ctl, a)
    return getattr(ctl, handler)


def _untranslated(message: str) -> str:
    return message


def main(argv=None) -> int:
    # argparse passes each of its messages through gettext, which looks for a catalog on disk at
    # every call (~2 ms of start-up). pyrunc-ctl speaks docker's English, and Parser.error reads
    # argparse's English wording: no translation.
    argparse._ = _untranslated
    Parser.argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(Parser.argv)
    args, extra = parser.parse_known_args(argv)
    if extra:  # report it as the command's own flag error, as docker does
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.cmd].error(f"unrecognized arguments: {' '.join(extra)}")
    errcode = args.errcode
    try:
        ctl = Ctl(args)
        return _handler(ctl, args.handler)(args)
    except CtlError as e:
        _report(args, str(e))
        return e.code if e.code is not None else errcode
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            _report(args, f"Cannot connect to the pyrunc supervisor at unix://{args.address}. "
                    "Is pyrunc-supervisor running?")
        else:
            _report(args, f"Error response from daemon: {e.details()}")
    except KeyboardInterrupt:
        pass
    return errcode


def _report(args, message: str) -> None:
    """Docker's layout: run/create errors say who and point at --help; others are one line."""
    if args.cmd in ERROR_CODES:
        print(f"pyrunc-ctl: {message}\nSee 'pyrunc-ctl {args.cmd} --help'.", file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def exit_now(code) -> None:
    """End the process with ``code`` once what the user sees is flushed, skipping the
    interpreter's teardown (finalizing every module and object: ~4 ms of CPU, a sixth of a
    ``ps``). Nothing of pyrunc-ctl needs it: no atexit work, files closed by ``with`` blocks,
    its threads are daemon threads whose output was waited for."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (| head): nothing to tell it
            pass
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)  # as sys.exit


if __name__ == "__main__":
    # Run the module's own copy (not __main__'s), so the CtlError that extensions import from
    # supervisor.ctl is the one main() catches.
    from supervisor.ctl import exit_now as _exit_now, main as _main
    _exit_now(_main())
