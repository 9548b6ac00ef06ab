"""The container a shim owns: its init process and exec'd processes.

Every exit is written to ``<bundle>/exits/<name>.json`` (written to a temporary file, fsynced and
renamed) before it is reported, so the exit status survives a daemon restart and even the shim's
own death: the daemon reads these records when it finds a shim gone.

Exits are reported (as events, see server.py) once the process's output has been drained to the
client, or after DRAIN_TIMEOUT when something else still holds its pipes open, so that a client
that waits for the exit has all the output by then.
"""
from __future__ import annotations

import _socket
import os
import sys
import time

from supervisor.shim import stdio
from supervisor.shim.runtime import Reaper, Runtime, RuntimeError_, exit_code

DRAIN_TIMEOUT = 1.0
INIT = ""


class ShimError(Exception):
    def __init__(self, code: str, msg: str):
        super().__init__(msg)
        self.code = code


def exit_record_name(exec_id: str) -> str:
    return "init" if exec_id == INIT else "exec-" + exec_id


def write_record_durably(path: str, record: dict) -> None:
    """Write a flat record of numbers as JSON: temporary file, fsync, rename, fsync the dir."""
    text = "{" + ", ".join(f'"{k}": {float(v) if isinstance(v, float) else int(v)}'
                           for k, v in record.items()) + "}"
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Process:
    def __init__(self, task: "Task", exec_id: str, io: stdio.ProcessIO, spec_path: str = ""):
        self.task = task
        self.exec_id = exec_id
        self.io = io
        self.spec_path = spec_path
        self.pid = 0
        self.status = "created"
        self.exit_status = 0
        self.exited_at = 0.0
        self.reported = False

    def describe(self) -> dict:
        status = self.status
        if status == "running" and self.exec_id == INIT and self.task.paused:
            status = "paused"
        stdin, stdout, stderr = self.io.paths
        return {"exec_id": self.exec_id, "pid": self.pid, "status": status,
                "exit_status": self.exit_status, "exited_at": self.exited_at,
                "stdin": stdin, "stdout": stdout, "stderr": stderr,
                "terminal": self.io.terminal}


class Task:
    """One container. ``emit`` sends an event dict to the daemon (queued until acknowledged)."""

    def __init__(self, reactor, reaper: Reaper, emit, console_path: str, req: dict):
        self.r = reactor
        self.reaper = reaper
        self.emit = emit
        self.console_path = console_path
        self.id = req["id"]
        self.bundle = req["bundle"]
        self.rootfs_mounts = req.get("rootfs") or []
        self.runtime = Runtime(req["runtime"], req.get("runtime_root", ""),
                               os.path.join(self.bundle, "log.json"), reaper)
        self.procs: dict[str, Process] = {}
        self.paused = False
        self.oom_file = ""
        self.oom_base = 0
        self.deleted = False
        os.makedirs(os.path.join(self.bundle, "exits"), mode=0o700, exist_ok=True)

    # -- create / start ----------------------------------------------------------
    def create(self, req: dict) -> dict:
        io = stdio.ProcessIO(self.r, req.get("stdin", ""), req.get("stdout", ""),
                             req.get("stderr", ""), bool(req.get("terminal")))
        init = Process(self, INIT, io)
        self.procs[INIT] = init
        mounted = 0
        try:
            mounted = self._mount_rootfs()
            pidfile = os.path.join(self.bundle, "init.pid")
            args = ["create", "--bundle", self.bundle, "--pid-file", pidfile]
            init.pid = self._run_with_stdio(init, args, pidfile)
        except Exception:
            io.close()
            self._forget_failed_create()
            self._unmount_rootfs(mounted)
            del self.procs[INIT]
            raise
        self._watch_oom(init.pid)
        return {"pid": init.pid}

    def _forget_failed_create(self) -> None:
        """A failed create can leave the runtime's record behind; remove it, quietly."""
        try:
            self.runtime.run(["delete", "--force", self.id])
        except RuntimeError_:
            pass
        self.reaper.reap_ready()

    def _run_with_stdio(self, proc: Process, args: list[str], pidfile: str) -> int:
        """Run create/exec with the process's stdio (or a console socket); return its pid."""
        console = None
        try:
            if proc.io.terminal:
                console = _console_listener(self.console_path)
                args = args + ["--console-socket", self.console_path]
            try:
                child = proc.io.child_stdio()
            except stdio.StdioError as e:
                raise ShimError("InvalidArgument", str(e)) from None
            try:
                self.runtime.run(args + [self.id], stdio=child)
            finally:
                proc.io.runtime_done()
            if console is not None:
                proc.io.attach_master(_receive_master(console))
            with open(pidfile) as f:
                pid = int(f.read().strip())
        except RuntimeError_ as e:
            raise ShimError("Unknown", f"OCI runtime {args[0]} failed: {e}") from None
        except stdio.StdioError as e:
            raise ShimError("InvalidArgument", str(e)) from None
        finally:
            if console is not None:
                console.close()
                _unlink(self.console_path)
        proc.io.on_outputs_done = lambda: self._maybe_report(proc)
        early = self.reaper.take(pid)
        if early is not None:  # exited before we learnt its pid
            self.r.call_later(0, lambda: self.exited(proc, *early))
        return pid

    def start(self, exec_id: str) -> dict:
        proc = self.get(exec_id)
        if proc.status != "created":
            raise ShimError("FailedPrecondition", f"process {self._name(exec_id)} already started")
        if exec_id == INIT:
            self._runtime("start", [self.id])
        else:
            pidfile = os.path.join(self.bundle, f"exec-{exec_id}.pid")
            args = ["exec", "--detach", "--process", proc.spec_path, "--pid-file", pidfile]
            proc.pid = self._run_with_stdio(proc, args, pidfile)
        if proc.status == "created":
            proc.status = "running"
        return {"pid": proc.pid}

    def add_exec(self, req: dict) -> None:
        exec_id = req["exec_id"]
        init = self.get(INIT)
        if exec_id in self.procs:
            raise ShimError("AlreadyExists", f"id {exec_id}: already exists")
        if init.status != "running":
            raise ShimError("FailedPrecondition", f"container {self.id} is not running")
        spec_path = req["spec_path"]  # written by the daemon (no JSON encoder in the shim)
        if not os.path.isfile(spec_path):
            raise ShimError("InvalidArgument", f"process spec {spec_path}: no such file")
        io = stdio.ProcessIO(self.r, req.get("stdin", ""), req.get("stdout", ""),
                             req.get("stderr", ""), bool(req.get("terminal")))
        self.procs[exec_id] = Process(self, exec_id, io, spec_path)

    # -- signals, state ------------------------------------------------------------
    def kill(self, exec_id: str, sig: int, all_: bool) -> None:
        proc = self.get(exec_id)
        if proc.status == "stopped":
            raise ShimError("NotFound", "process already finished")
        if all_ and exec_id == INIT:
            self._runtime("kill", ["--all", self.id, str(sig)])
            return
        if proc.status == "created" and exec_id != INIT:
            raise ShimError("FailedPrecondition", f"process {exec_id} has not started")
        if exec_id == INIT and proc.status == "created":
            self._runtime("kill", [self.id, str(sig)])
            return
        try:
            os.kill(proc.pid, sig)  # still our unreaped child: the pid cannot be reused
        except ProcessLookupError:
            raise ShimError("NotFound", "process already finished") from None

    def pause(self) -> None:
        self._require_running()
        self._runtime("pause", [self.id])
        self.paused = True

    def resume(self) -> None:
        if not self.paused:
            raise ShimError("FailedPrecondition", f"container {self.id} is not paused")
        self._runtime("resume", [self.id])
        self.paused = False

    def pids(self) -> list[dict]:
        self._require_running(allow_paused=True)
        out = self._runtime("ps", ["--format", "json", self.id], capture=True)
        try:  # a JSON list of numbers (or null)
            pids = [int(p) for p in out.strip().strip("[]").split(",") if p.strip() not in
                    ("", "null")]
        except ValueError:
            raise ShimError("Unknown", f"runtime ps: unexpected output {out[:80]!r}") from None
        execs = {p.pid: p.exec_id for p in self.procs.values() if p.exec_id and p.pid}
        return [{"pid": pid, "exec_id": execs.get(pid, "")} for pid in pids]

    def stats(self) -> str:
        """The runtime's ``events --stats`` JSON, as text (the daemon decodes it)."""
        self._require_running(allow_paused=True)
        return self._runtime("events", ["--stats", self.id], capture=True)

    def update(self, resources_path: str) -> None:
        self._require_running(allow_paused=True)
        self._runtime("update", ["--resources", resources_path, self.id])

    def resize(self, exec_id: str, width: int, height: int) -> None:
        proc = self.get(exec_id)
        if not (0 <= width < 65536 and 0 <= height < 65536):
            raise ShimError("InvalidArgument", f"terminal size {width}x{height}: out of range")
        try:
            proc.io.resize(width, height)
        except stdio.StdioError as e:
            raise ShimError("FailedPrecondition", str(e)) from None
        except OSError as e:
            raise ShimError("FailedPrecondition", f"resize: {e.strerror}") from None

    def close_io(self, exec_id: str) -> None:
        self.get(exec_id).io.close_stdin()

    # -- exits ---------------------------------------------------------------------------
    def on_reaped(self) -> None:
        """Match statuses the reaper collected to our processes."""
        for proc in list(self.procs.values()):
            if proc.pid and proc.status != "stopped":
                got = self.reaper.take(proc.pid)
                if got is not None:
                    self.exited(proc, *got)

    def exited(self, proc: Process, status: int, when: float) -> None:
        if proc.status == "stopped":
            return
        proc.status = "stopped"
        proc.exit_status = exit_code(status)
        proc.exited_at = when
        record = {"pid": proc.pid, "exit_status": proc.exit_status, "exited_at": when}
        write_record_durably(os.path.join(self.bundle, "exits",
                                          exit_record_name(proc.exec_id) + ".json"), record)
        if proc.exec_id == INIT:
            self.paused = False
            proc.io.close_stdin()
            self._check_oom()
        if proc.io.outputs_done():
            self._maybe_report(proc)
        else:
            self.r.call_later(DRAIN_TIMEOUT, lambda: self._maybe_report(proc, force=True))

    def _maybe_report(self, proc: Process, force: bool = False) -> None:
        if proc.reported or proc.status != "stopped":
            return
        if not force and not proc.io.outputs_done():
            return
        proc.reported = True
        self.emit({"type": "exit", "exec_id": proc.exec_id, "pid": proc.pid,
                   "exit_status": proc.exit_status, "exited_at": proc.exited_at})

    def _watch_oom(self, pid: int) -> None:
        self.oom_file = _oom_counter_file(pid)
        self.oom_base = _read_oom_kills(self.oom_file)

    def _check_oom(self) -> None:
        if self.oom_file and _read_oom_kills(self.oom_file) > self.oom_base:
            self.emit({"type": "oom"})

    # -- delete ------------------------------------------------------------------------------
    def delete(self, exec_id: str) -> dict:
        proc = self.get(exec_id)
        if exec_id != INIT:
            if proc.status == "running":
                raise ShimError("FailedPrecondition",
                                f"process {exec_id} must be stopped before deletion: running")
            proc.io.close()
            del self.procs[exec_id]
            for suffix in (".json", ".pid"):
                _unlink(os.path.join(self.bundle, f"exec-{exec_id}{suffix}"))
            _unlink(os.path.join(self.bundle, "exits", f"exec-{exec_id}.json"))
            return self._result(proc)
        if proc.status not in ("stopped", "created"):
            raise ShimError("FailedPrecondition",
                            f"task must be stopped before deletion: {proc.describe()['status']}")
        if proc.status == "created":
            self._runtime("delete", ["--force", self.id])
            if proc.status != "stopped":
                self.exited(proc, self.reaper.wait_for(proc.pid), time.time())
        else:
            self._runtime("delete", [self.id])
        for p in self.procs.values():
            p.io.close()
        self._unmount_rootfs(len(self.rootfs_mounts))
        self.deleted = True
        return self._result(proc)

    @staticmethod
    def _result(proc: Process) -> dict:
        return {"pid": proc.pid, "exit_status": proc.exit_status, "exited_at": proc.exited_at}

    # -- helpers ---------------------------------------------------------------------------------
    def get(self, exec_id: str) -> Process:
        proc = self.procs.get(exec_id)
        if proc is None:
            raise ShimError("NotFound", f"process {self._name(exec_id)} not found")
        return proc

    def _name(self, exec_id: str) -> str:
        return exec_id or self.id

    def _require_running(self, allow_paused: bool = False) -> None:
        init = self.get(INIT)
        if init.status != "running":
            raise ShimError("FailedPrecondition", f"container {self.id} is not running")
        if self.paused and not allow_paused:
            raise ShimError("FailedPrecondition", f"container {self.id} is paused")

    def _runtime(self, cmd: str, args: list[str], capture: bool = False) -> str:
        try:
            return self.runtime.run([cmd] + args, capture=capture)
        except RuntimeError_ as e:
            raise ShimError("Unknown", f"OCI runtime {cmd} failed: {e}") from None
        finally:
            self.on_reaped()

    def _mount_rootfs(self) -> int:
        if not self.rootfs_mounts:
            return 0
        from supervisor import mounts  # only tasks with rootfs mounts pay for it
        try:
            mounts.mount_all(os.path.join(self.bundle, "rootfs"), self.rootfs_mounts)
        except mounts.MountError as e:
            raise ShimError("InvalidArgument", str(e)) from None
        return len(self.rootfs_mounts)

    def _unmount_rootfs(self, count: int) -> None:
        if not count:
            return
        from supervisor import mounts
        try:
            mounts.unmount_all(os.path.join(self.bundle, "rootfs"), self.rootfs_mounts[:count])
        except OSError:
            pass  # left for the daemon's cleanup; the bundle removal reports it


def _console_listener(path: str) -> _socket.socket:
    _unlink(path)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1)
    return sock


def _receive_master(listener: _socket.socket) -> int:
    """Accept the runtime's connection and take the pty master it sends (SCM_RIGHTS)."""
    listener.settimeout(5)
    try:
        fd, _ = listener._accept()
    except OSError as e:
        raise stdio.StdioError(f"console socket: {e}") from None
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
    try:
        conn.settimeout(5)
        _, ancdata, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(4))
    except OSError as e:
        raise stdio.StdioError(f"console socket: {e}") from None
    finally:
        conn.close()
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
            master = int.from_bytes(data[:4], sys.byteorder, signed=True)
            os.set_inheritable(master, False)
            return master
    raise stdio.StdioError("console socket: runtime sent no terminal")


def _oom_counter_file(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return f"/sys/fs/cgroup/memory{path}/memory.oom_control"
    for line in lines:
        if line.startswith("0::"):
            base = "/sys/fs/cgroup" + line[3:]
            if os.path.exists(base + "/memory.events"):
                return base + "/memory.events"
    return ""


def _read_oom_kills(path: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


NSIG = 65


def signal_number(value) -> int:
    sig = int(value)
    if not 0 <= sig < NSIG:
        raise ShimError("InvalidArgument", f"signal {sig}: out of range")
    return sig
