"""pyrunc-ctl: a friendly, docker-like client for pyrunc-supervisor.

    pyrunc-ctl run [-d] [-t] [-i] [--rm] [--name N] [-e K=V] [-u UID[:GID]] [-w DIR]
                   [-v HOST:CTR[:ro]] [--runtime BIN] ROOTFS|BUNDLE [CMD...]
    pyrunc-ctl ps [-a] | logs [-f] C | exec [-t] [-i] [-d] C CMD... | kill [-s SIG] C
    pyrunc-ctl stop [-t SECS] C... | rm [-f] C... | pause C | resume C | inspect C
    pyrunc-ctl events [FILTER...] | stats [C...]

It speaks the containerd API, so a container made here is an ordinary container for ctr as well
(same namespace, default ``default``). A detached container (-d) writes its output to a log file
(``--log-dir``, default /var/lib/pyrunc/logs) named in the container's ``io.pyrunc.ctl/log``
label; ``logs`` reads it. Foreground containers stream through FIFOs instead.

Errors are one line on stderr and a non-zero exit: 125 for pyrunc-ctl's own errors (bad usage,
daemon unreachable, unknown container), otherwise the container process's exit status.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
import time

import grpc

from supervisor import spec as specmod
from supervisor.client import PROCESS_URL, Client, json_any

DEFAULT_ADDRESS = "/run/pyrunc/supervisor.sock"
DEFAULT_LOG_DIR = "/var/lib/pyrunc/logs"
LOG_LABEL = "io.pyrunc.ctl/log"
EXIT_ERROR = 125


class CtlError(Exception):
    pass


def _status_name(code) -> str:
    from supervisor.gen.containerd.types.task import task_pb2
    return task_pb2.Status.Name(code).lower()


class Ctl:
    def __init__(self, args):
        self.args = args
        self.client = Client(args.address, args.namespace)
        from supervisor.gen.containerd.services.containers.v1 import containers_pb2
        from supervisor.gen.containerd.services.tasks.v1 import tasks_pb2
        self.cpb, self.tpb = containers_pb2, tasks_pb2

    # -- lookups --------------------------------------------------------------------------------
    def container(self, name: str):
        try:
            return self.client.containers.Get(self.cpb.GetContainerRequest(id=name)).container
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise CtlError(f"no such container: {name}") from None
            raise

    def task(self, name: str):
        """The task's init process, or None if the container has no task."""
        try:
            return self.client.tasks.Get(self.tpb.GetRequest(container_id=name)).process
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    # -- run ----------------------------------------------------------------------------------------
    def cmd_run(self, a) -> int:
        from supervisor import ctl_images
        name = a.name or secrets.token_hex(6)
        self._image_run = None
        if ctl_images.is_image_ref(a.image):
            return self._run_image(a, name)
        spec = self._build_spec(a, name)
        return self._run_spec(a, name, spec)

    def _run_image(self, a, name: str) -> int:
        """``run IMAGE``: the image's config and a snapshot of its own (ctl_images.ImageRun)."""
        from supervisor import ctl_images
        run = ctl_images.ImageRun(self, a, name)
        run.prepare()
        try:
            spec = run.spec(a)
            self._image_run = run
            return self._run_spec(a, name, spec)
        except BaseException:
            try:
                self.container(name)
            except CtlError:  # no container owns the snapshot yet: it goes here
                ctl_images.remove_snapshot(self, argparse.Namespace(snapshot_key=name,
                                                                    snapshotter="overlayfs"))
            raise

    def _run_spec(self, a, name: str, spec: dict) -> int:
        labels = {}
        log = ""
        if a.detach:
            log = os.path.join(os.path.abspath(a.log_dir), self.args.namespace, name + ".log")
            os.makedirs(os.path.dirname(log), exist_ok=True)
            labels[LOG_LABEL] = log
        if self._image_run is not None:
            self._image_run.create_container(spec, labels, a.runtime or "")
        else:
            self.client.create_container(name, spec, labels, runtime_binary=a.runtime or "")
        try:
            if a.detach:
                self._create_task(name, stdout="file://" + log, stderr="file://" + log,
                                  terminal=a.tty)
                self._start(name)
                print(name)
                return 0
            return self._run_attached(name, a)
        except BaseException:
            if a.rm or a.detach:
                self._remove(name, force=True)
            raise

    def _build_spec(self, a, name: str) -> dict:
        try:
            if os.path.isfile(os.path.join(a.image, "config.json")):
                spec = specmod.load_bundle(a.image)
            elif os.path.isdir(a.image):
                spec = specmod.default_spec(a.image, a.command, name)
            else:
                raise CtlError(f"{a.image}: neither a rootfs directory nor a bundle")
            return specmod.apply_options(spec, args=a.command, env=a.env, user=a.user,
                                         cwd=a.workdir, volumes=a.volume, terminal=a.tty,
                                         cgroups_path=f"/{self.args.namespace}/{name}")
        except specmod.SpecError as e:
            raise CtlError(str(e)) from None

    def _create_task(self, name: str, stdin="", stdout="", stderr="", terminal=False):
        run = getattr(self, "_image_run", None)
        req = self.tpb.CreateTaskRequest(container_id=name, stdin=stdin, stdout=stdout,
                                         stderr=stderr, terminal=terminal,
                                         rootfs=run.mounts if run is not None else [])
        return self.client.tasks.Create(req)

    def _start(self, name: str, exec_id: str = ""):
        return self.client.tasks.Start(self.tpb.StartRequest(container_id=name, exec_id=exec_id))

    def _run_attached(self, name: str, a) -> int:
        from supervisor.clientio import FifoSet
        fifos = FifoSet(name, stdin=a.interactive or a.tty, stderr=not a.tty)
        try:
            self._create_task(name, fifos.stdin, fifos.stdout, fifos.stderr, a.tty)
            code = self._attach(name, "", fifos, a.tty)
            self.client.tasks.Delete(self.tpb.DeleteTaskRequest(container_id=name))
        finally:
            fifos.close()
        if a.rm:
            self._remove(name, force=True)
        return code

    def _attach(self, name: str, exec_id: str, fifos, tty: bool) -> int:
        """Start the process with stdio attached; return its exit status."""
        from supervisor.clientio import RawTerminal
        fifos.start_output()
        result = {}
        waiter = threading.Thread(target=self._wait_into, args=(name, exec_id, result),
                                  daemon=True)
        waiter.start()
        with RawTerminal() if tty else _Nothing():
            self._start(name, exec_id)
            if tty:
                self._follow_resize(name, exec_id)
            fifos.start_input(lambda: self._close_stdin(name, exec_id))
            forward = self._forward_signals(name, exec_id) if not tty else None
            waiter.join()
            if forward:
                forward()
        fifos.wait_output()
        if "error" in result:
            raise result["error"]
        return result["code"]

    def _wait_into(self, name, exec_id, result) -> None:
        try:
            result["code"] = self.client.wait(name, exec_id)
        except grpc.RpcError as e:
            result["error"] = e

    def _close_stdin(self, name: str, exec_id: str) -> None:
        try:
            self.client.tasks.CloseIO(self.tpb.CloseIORequest(container_id=name, exec_id=exec_id,
                                                              stdin=True))
        except grpc.RpcError:
            pass

    def _follow_resize(self, name: str, exec_id: str) -> None:
        from supervisor.clientio import terminal_size

        def resize(*_):
            size = terminal_size()
            if size:
                try:
                    self.client.tasks.ResizePty(self.tpb.ResizePtyRequest(
                        container_id=name, exec_id=exec_id, width=size[0], height=size[1]))
                except grpc.RpcError:
                    pass
        resize()
        signal.signal(signal.SIGWINCH, resize)

    def _forward_signals(self, name: str, exec_id: str):
        """Forward SIGINT/SIGTERM/SIGHUP to the process while attached; returns an undo."""
        def forward(sig, _frame):
            try:
                self.client.tasks.Kill(self.tpb.KillRequest(container_id=name, exec_id=exec_id,
                                                            signal=sig))
            except grpc.RpcError:
                pass
        sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old = {s: signal.signal(s, forward) for s in sigs}
        return lambda: [signal.signal(s, h) for s, h in old.items()]

    # -- exec ----------------------------------------------------------------------------------------
    def cmd_exec(self, a) -> int:
        from supervisor.clientio import FifoSet
        cont = self.container(a.container)
        task = self.task(a.container)
        if task is None or _status_name(task.status) != "running":
            raise CtlError(f"container {a.container} is not running")
        try:
            proc = specmod.exec_process(json.loads(cont.spec.value), a.command, env=a.env,
                                        user=a.user, cwd=a.workdir, terminal=a.tty)
        except specmod.SpecError as e:
            raise CtlError(str(e)) from None
        exec_id = "exec-" + secrets.token_hex(6)
        fifos = FifoSet(exec_id, stdin=a.interactive or a.tty, stderr=not a.tty)
        try:
            self.client.tasks.Exec(self.tpb.ExecProcessRequest(
                container_id=a.container, exec_id=exec_id, spec=json_any(PROCESS_URL, proc),
                terminal=a.tty, stdin=fifos.stdin, stdout=fifos.stdout, stderr=fifos.stderr))
            try:
                code = self._attach(a.container, exec_id, fifos, a.tty)
            finally:
                self.client.tasks.DeleteProcess(self.tpb.DeleteProcessRequest(
                    container_id=a.container, exec_id=exec_id))
        finally:
            fifos.close()
        return code

    # -- listing and inspection ----------------------------------------------------------------------
    def cmd_ps(self, a) -> int:
        rows = []
        for c in self.client.containers.List(self.cpb.ListContainersRequest()).containers:
            task = self.task(c.id)
            status = _status_name(task.status) if task else "created"
            if task and status == "stopped":
                status = f"exited ({task.exit_status})"
            if not a.all and (task is None or status not in ("running", "paused")):
                continue
            args = json.loads(c.spec.value or b"{}").get("process", {}).get("args", [])
            rows.append((c.id, status, str(task.pid) if task else "-", " ".join(args)))
        _table(("CONTAINER", "STATUS", "PID", "COMMAND"), rows)
        return 0

    def cmd_inspect(self, a) -> int:
        from google.protobuf import json_format
        out = []
        for name in a.containers:
            c = self.container(name)
            info = {"id": c.id, "labels": dict(c.labels), "runtime": c.runtime.name,
                    "created": c.created_at.ToJsonString(), "spec": json.loads(c.spec.value)}
            task = self.task(name)
            if task is not None:
                info["task"] = json_format.MessageToDict(task, preserving_proto_field_name=True)
                info["task"]["status"] = _status_name(task.status)
            out.append(info)
        print(json.dumps(out, indent=2))
        return 0

    def cmd_logs(self, a) -> int:
        c = self.container(a.container)
        log = c.labels.get(LOG_LABEL)
        if not log:
            raise CtlError(f"container {a.container} has no log (only -d containers keep one)")
        try:
            f = open(log, "rb")
        except OSError as e:
            raise CtlError(f"log {log}: {e.strerror}") from None
        with f:
            while True:
                data = f.read(65536)
                if data:
                    sys.stdout.buffer.write(data)
                    sys.stdout.buffer.flush()
                    continue
                if not a.follow:
                    return 0
                task = self.task(a.container)
                if task is None or _status_name(task.status) == "stopped":
                    data = f.read()
                    sys.stdout.buffer.write(data)
                    sys.stdout.buffer.flush()
                    return 0
                time.sleep(0.2)

    def cmd_stats(self, a) -> int:
        from supervisor.gen.containerd.cgroups.v1 import metrics_pb2
        filters = [f"id=={n}" for n in a.containers]
        for n in a.containers:
            self.container(n)
        resp = self.client.tasks.Metrics(self.tpb.MetricsRequest(filters=filters))
        rows = []
        for m in resp.metrics:
            data = metrics_pb2.Metrics()
            data.ParseFromString(m.data.value)
            mem = data.memory.usage
            limit = "-" if mem.limit >= 1 << 62 else _bytes(mem.limit)
            rows.append((m.id, f"{data.cpu.usage.total / 1e9:.3f}s",
                         f"{_bytes(mem.usage)} / {limit}", str(data.pids.current)))
        _table(("CONTAINER", "CPU TIME", "MEM USAGE / LIMIT", "PIDS"), rows)
        return 0

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

    # -- signals and removal ------------------------------------------------------------------------
    def _require_task(self, name: str):
        self.container(name)
        task = self.task(name)
        if task is None:
            raise CtlError(f"container {name} is not running")
        return task

    def cmd_kill(self, a) -> int:
        self._require_task(a.container)
        self.client.tasks.Kill(self.tpb.KillRequest(container_id=a.container,
                                                    signal=_signal(a.signal)))
        return 0

    def cmd_stop(self, a) -> int:
        for name in a.containers:
            self._stop(name, a.time)
            print(name)
        return 0

    def _stop(self, name: str, grace: float) -> None:
        """SIGTERM, up to `grace` seconds to exit, then SIGKILL (to every process)."""
        task = self._require_task(name)
        if _status_name(task.status) == "stopped":
            return
        if _status_name(task.status) == "paused":
            self.client.tasks.Resume(self.tpb.ResumeTaskRequest(container_id=name))
        self._kill_quietly(name, signal.SIGTERM, False)
        try:
            self.client.wait(name, timeout=grace)
            return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        self._kill_quietly(name, signal.SIGKILL, True)
        self.client.wait(name)

    def _kill_quietly(self, name: str, sig: int, all_: bool) -> None:
        try:
            self.client.tasks.Kill(self.tpb.KillRequest(container_id=name, signal=sig, all=all_))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # already finished
                raise

    def cmd_rm(self, a) -> int:
        for name in a.containers:
            self.container(name)
            self._remove(name, a.force)
            print(name)
        return 0

    def _remove(self, name: str, force: bool) -> None:
        task = self.task(name)
        if task is not None:
            status = _status_name(task.status)
            if status in ("running", "paused"):
                if not force:
                    raise CtlError(f"container {name} is {status}: stop it first or use -f")
                if status == "paused":
                    self.client.tasks.Resume(self.tpb.ResumeTaskRequest(container_id=name))
                self._kill_quietly(name, signal.SIGKILL, True)
                self.client.wait(name)
            self.client.tasks.Delete(self.tpb.DeleteTaskRequest(container_id=name))
        try:
            cont = self.client.containers.Get(self.cpb.GetContainerRequest(id=name)).container
        except grpc.RpcError:
            return
        self.client.containers.Delete(self.cpb.DeleteContainerRequest(id=name))
        from supervisor import ctl_images
        ctl_images.remove_snapshot(self, cont)
        log = cont.labels.get(LOG_LABEL)
        if log:
            try:
                os.unlink(log)
            except FileNotFoundError:
                pass

    def cmd_pause(self, a) -> int:
        self._require_task(a.container)
        self.client.tasks.Pause(self.tpb.PauseTaskRequest(container_id=a.container))
        return 0

    def cmd_resume(self, a) -> int:
        self._require_task(a.container)
        self.client.tasks.Resume(self.tpb.ResumeTaskRequest(container_id=a.container))
        return 0


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _signal(value: str) -> int:
    if value.isdigit():
        return int(value)
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise CtlError(f"unknown signal {value!r}") from None


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n}B"
        n /= 1024
    return str(n)


def _table(header, rows) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("   ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyrunc-ctl", description="docker-like client for "
                                 "pyrunc-supervisor")
    ap.add_argument("-a", "--address", default=os.environ.get("PYRUNC_SUPERVISOR_ADDRESS",
                                                              DEFAULT_ADDRESS))
    ap.add_argument("-n", "--namespace", default=os.environ.get("PYRUNC_NAMESPACE", "default"))
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name, **kw):
        return sub.add_parser(name, **kw)

    def process_opts(p):
        p.add_argument("-t", "--tty", action="store_true")
        p.add_argument("-i", "--interactive", action="store_true")
        p.add_argument("-e", "--env", action="append", default=[])
        p.add_argument("-u", "--user", default="")
        p.add_argument("-w", "--workdir", default="")

    p = add("run", help="create and start a container")
    process_opts(p)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("--name", default="")
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("--runtime", default="", help="OCI runtime binary for this container")
    p.add_argument("--log-dir", default=os.environ.get("PYRUNC_CTL_LOG_DIR", DEFAULT_LOG_DIR))
    p.add_argument("--pull", choices=("missing", "always", "never"), default="missing",
                   help="for an IMAGE: pull it when missing (default), always, or never")
    p.add_argument("--plain-http", action="store_true", help="pull over plain HTTP (localhost)")
    p.add_argument("image", metavar="ROOTFS|BUNDLE|IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = add("exec", help="run a command in a running container")
    process_opts(p)
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = add("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true")
    p = add("logs", help="print a detached container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("container")
    p = add("kill", help="signal a container")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("container")
    p = add("stop", help="SIGTERM, then SIGKILL after a grace period")
    p.add_argument("-t", "--time", type=float, default=10.0)
    p.add_argument("containers", nargs="+")
    p = add("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("containers", nargs="+")
    for name in ("pause", "resume"):
        add(name, help=f"{name} a container").add_argument("container")
    add("inspect", help="show a container as JSON").add_argument("containers", nargs="+")
    add("events", help="print events").add_argument("filters", nargs="*")
    add("stats", help="resource usage").add_argument("containers", nargs="*")
    from supervisor import ctl_images
    ctl_images.add_parsers(add)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "exec" and not args.command:
        print("pyrunc-ctl: exec needs a command", file=sys.stderr)
        return EXIT_ERROR
    ctl = Ctl(args)
    from supervisor.ctl_images import ImageError
    try:
        if not hasattr(ctl, "cmd_" + args.cmd):
            from supervisor import ctl_images
            return getattr(ctl_images, "cmd_" + args.cmd)(ctl, args)
        return getattr(ctl, "cmd_" + args.cmd)(args)
    except (CtlError, ImageError) as e:
        print(f"pyrunc-ctl: {e}", file=sys.stderr)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            print(f"pyrunc-ctl: cannot reach the supervisor at {args.address}: is "
                  "pyrunc-supervisor running?", file=sys.stderr)
        else:
            print(f"pyrunc-ctl: {e.details()}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
