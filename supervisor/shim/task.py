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

from supervisor.shim import states, stdio
from supervisor.shim.runtime import Reaper, Runtime, RuntimeError_, exit_code
from supervisor.shim.states import ShimError

DRAIN_TIMEOUT = 1.0
INIT = ""


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
    """The init (exec_id "") or an exec'd process; what it may do is its ``state``'s business
    (states.py)."""

    def __init__(self, task: "Task", exec_id: str, io: stdio.ProcessIO, spec_path: str = ""):
        self.task = task
        self.exec_id = exec_id
        self.io = io
        self.spec_path = spec_path
        self.pid = 0
        self.state: states.State = states.CREATED
        self.exit_status = 0
        self.exited_at = 0.0
        self.reported = False

    @property
    def is_init(self) -> bool:
        return self.exec_id == INIT

    @property
    def name(self) -> str:
        return self.exec_id or self.task.id

    def describe(self) -> dict:
        stdin, stdout, stderr = self.io.paths
        return {"exec_id": self.exec_id, "pid": self.pid, "status": self.state.name,
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
                               os.path.join(self.bundle, "log.json"), reaper, reactor)
        self.procs: dict[str, Process] = {}
        self.oom_file = ""
        self.oom_base = 0
        self.deleted = False
        os.makedirs(os.path.join(self.bundle, "exits"), mode=0o700, exist_ok=True)

    @property
    def paused(self) -> bool:
        init = self.procs.get(INIT)
        return init is not None and init.state is states.PAUSED

    # -- create / start ----------------------------------------------------------
    def create(self, req: dict) -> dict:
        io = stdio.ProcessIO(self.r, req.get("stdin", ""), req.get("stdout", ""),
                             req.get("stderr", ""), bool(req.get("terminal")),
                             log=req.get("log", ""))
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
        proc.state.start(proc)
        return {"pid": proc.pid}

    def start_process(self, proc: Process) -> None:
        """``runtime start`` for the init, ``runtime exec --detach`` for an exec."""
        if proc.is_init:
            self.runtime_call("start", self.id)
            return
        pidfile = os.path.join(self.bundle, f"exec-{proc.exec_id}.pid")
        args = ["exec", "--detach", "--process", proc.spec_path, "--pid-file", pidfile]
        proc.pid = self._run_with_stdio(proc, args, pidfile)

    def add_exec(self, req: dict) -> None:
        exec_id = req["exec_id"]
        init = self.get(INIT)
        if exec_id in self.procs:
            raise ShimError("AlreadyExists", f"id {exec_id}: already exists")
        init.state.require_live(init)
        spec_path = req["spec_path"]  # written by the daemon (no JSON encoder in the shim)
        if not os.path.isfile(spec_path):
            raise ShimError("InvalidArgument", f"process spec {spec_path}: no such file")
        io = stdio.ProcessIO(self.r, req.get("stdin", ""), req.get("stdout", ""),
                             req.get("stderr", ""), bool(req.get("terminal")))
        self.procs[exec_id] = Process(self, exec_id, io, spec_path)

    # -- signals, state ------------------------------------------------------------
    def kill(self, exec_id: str, sig: int, all_: bool) -> None:
        proc = self.get(exec_id)
        proc.state.kill(proc, sig, all_)

    def pause(self) -> None:
        init = self.get(INIT)
        init.state.pause(init)

    def resume(self) -> None:
        init = self.get(INIT)
        init.state.resume(init)

    def _require_live(self) -> None:
        init = self.get(INIT)
        init.state.require_live(init)

    def pids(self) -> list[dict]:
        self._require_live()
        out = self.runtime_call("ps", "--format", "json", self.id, capture=True)
        try:  # a JSON list of numbers (or null)
            pids = [int(p) for p in out.strip().strip("[]").split(",") if p.strip() not in
                    ("", "null")]
        except ValueError:
            raise ShimError("Unknown", f"runtime ps: unexpected output {out[:80]!r}") from None
        execs = {p.pid: p.exec_id for p in self.procs.values() if p.exec_id and p.pid}
        return [{"pid": pid, "exec_id": execs.get(pid, "")} for pid in pids]

    def stats(self) -> str:
        """The runtime's ``events --stats`` JSON, as text (the daemon decodes it)."""
        self._require_live()
        return self.runtime_call("events", "--stats", self.id, capture=True)

    def update(self, resources_path: str) -> None:
        self._require_live()
        self.runtime_call("update", "--resources", resources_path, self.id)

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
            if proc.pid and not proc.state.finished:
                got = self.reaper.take(proc.pid)
                if got is not None:
                    self.exited(proc, *got)

    def exited(self, proc: Process, status: int, when: float) -> None:
        proc.state.exited(proc, status, when)

    def on_exit(self, proc: Process, status: int, when: float) -> None:
        """A process has just stopped: record the exit durably, then report it (see above)."""
        proc.exit_status = exit_code(status)
        proc.exited_at = when
        record = {"pid": proc.pid, "exit_status": proc.exit_status, "exited_at": when}
        write_record_durably(os.path.join(self.bundle, "exits",
                                          exit_record_name(proc.exec_id) + ".json"), record)
        if proc.is_init:
            proc.io.close_stdin()
            self._check_oom()
        if proc.io.outputs_done():
            self._maybe_report(proc)
        else:
            self.r.call_later(DRAIN_TIMEOUT, lambda: self._maybe_report(proc, force=True))

    def _maybe_report(self, proc: Process, force: bool = False) -> None:
        if proc.reported or not proc.state.finished:
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
        proc.state.delete(proc)
        return self._result(proc)

    def delete_process(self, proc: Process, force: bool) -> None:
        """Remove an exec's files, or the container (``force``: one that was never started)."""
        if not proc.is_init:
            proc.io.close()
            del self.procs[proc.exec_id]
            for suffix in (".json", ".pid"):
                _unlink(os.path.join(self.bundle, f"exec-{proc.exec_id}{suffix}"))
            _unlink(os.path.join(self.bundle, "exits", f"exec-{proc.exec_id}.json"))
            return
        if force:
            self.runtime_call("delete", "--force", self.id)
            if not proc.state.finished:
                self.exited(proc, self.reaper.wait_for(proc.pid), time.time())
        else:
            self.runtime_call("delete", self.id)
        for p in self.procs.values():
            p.io.close()
        self._unmount_rootfs(len(self.rootfs_mounts))
        self.deleted = True

    @staticmethod
    def _result(proc: Process) -> dict:
        return {"pid": proc.pid, "exit_status": proc.exit_status, "exited_at": proc.exited_at}

    # -- helpers ---------------------------------------------------------------------------------
    def get(self, exec_id: str) -> Process:
        proc = self.procs.get(exec_id)
        if proc is None:
            raise ShimError("NotFound", f"process {exec_id or self.id} not found")
        return proc

    def runtime_call(self, cmd: str, *args: str, capture: bool = False) -> str:
        """Run ``RUNTIME cmd args...``; a failure is a ShimError with the runtime's message."""
        try:
            return self.runtime.run([cmd, *args], capture=capture)
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
    from supervisor.listen import claim
    claim(path)     # as every socket (listen.py): a stale one removed, a live one refused
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
