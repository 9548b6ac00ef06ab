"""The shim's control socket and main loop, and the zygote that forks shims.

Start-up: bind the control socket (path-based, 0600, in the daemon's 0700 socket directory),
fork, and let the parent exit 0 so the daemon knows the socket is ready. The child starts a new
session, becomes a child subreaper (python-prctl's C module) and serves until its container is
deleted. Normally shims are not started this way but forked by a zygote (``--zygote``, see
below), which skips interpreter start-up and shares memory between shims.

A shim may exist before it has a container (the daemon keeps one spare shim warm): such a shim
exits as soon as its daemon connection closes, or after IDLE_EXIT seconds if no daemon ever
connected. Once it owns a container it outlives any daemon connection.

Events (process exits, OOM) are numbered and kept until the subscribed daemon acknowledges them;
a daemon that reconnects after a crash gets every unacknowledged event again. Events raised
while a request is handled are sent after its reply, so the daemon sees them in causal order.

Only C-level modules (_socket, _signal, select) are used: socket, signal and selectors would
bring enum and friends into every shim.
"""
from __future__ import annotations

import _signal
import _socket
import os
import sys

from supervisor import wire
from supervisor.shim.reactor import Reactor
from supervisor.shim.runtime import Reaper
from supervisor.shim.task import INIT, ShimError, Task, signal_number
from supervisor.shim import shimlog
from supervisor.shim.title import for_container, set_title

MAX_EVENTS = 10000
IDLE_EXIT = 30.0  # seconds an unclaimed, unconnected shim waits before exiting


class Conn:
    def __init__(self, shim: "Shim", sock: _socket.socket):
        self.shim = shim
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.subscribed = False
        sock.setblocking(False)
        shim.r.mark_control(self.fd)
        shim.r.on_read(self.fd, self.readable)

    def readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.inbuf += data
        try:
            frames = wire.decode_frames(self.inbuf)
        except wire.WireError:
            self.close()
            return
        for req in frames:
            self.shim.handle(self, req)

    def send(self, obj: dict) -> None:
        if self.sock is None:
            return
        self.outbuf += wire.encode(obj)
        self.writable()

    def writable(self) -> None:
        while self.outbuf and self.sock is not None:
            try:
                n = self.sock.send(self.outbuf)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return
            del self.outbuf[:n]
        if self.sock is not None:
            self.shim.r.on_write(self.fd, self.writable if self.outbuf else None)

    def close(self) -> None:
        if self.sock is None:
            return
        self.shim.r.forget(self.fd)
        self.sock.close()
        self.sock = None
        self.shim.conn_closed(self)


class Shim:
    def __init__(self, listener: _socket.socket, socket_path: str):
        self.r = Reactor()
        self.reaper = Reaper()
        self.listener = listener
        self.socket_path = socket_path
        self.conns: list[Conn] = []
        self.task: Task | None = None
        self.events: list[tuple[int, dict]] = []
        self.seq = 0
        self.exiting = False
        self.deferred: list | None = None
        listener.setblocking(False)
        self.r.mark_control(listener.fileno())
        self.r.on_read(listener.fileno(), self.accept)
        self._setup_sigchld()
        self.r.call_later(IDLE_EXIT, self._idle_check)

    # -- signals ---------------------------------------------------------------------
    def _setup_sigchld(self) -> None:
        rfd, wfd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.wake_r = rfd
        _signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        _signal.signal(_signal.SIGCHLD, lambda *_: None)
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)  # the daemon decides when a shim ends
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
        self.r.mark_control(rfd)  # reaping waits for the end of a runtime call
        self.r.on_read(rfd, self._on_signal)

    def _on_signal(self) -> None:
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        self.reaper.reap_ready()
        if self.task is not None:
            self.task.on_reaped()

    # -- connections -----------------------------------------------------------------------
    def accept(self) -> None:
        try:
            fd, _ = self.listener._accept()
        except (BlockingIOError, InterruptedError):
            return
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        self.conns.append(Conn(self, sock))

    def _idle_check(self) -> None:
        """A shim nobody ever connected to (its daemon died right after starting it) leaves."""
        if self.task is None and not self.conns:
            self.exiting = True

    def conn_closed(self, conn: Conn) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        if self.task is None and not self.conns:
            self.exiting = True  # a spare shim whose daemon went away

    def handle(self, conn: Conn, req: dict) -> None:
        op = req.get("op")
        if op == "ack":
            self.events = [(s, e) for s, e in self.events if s > int(req.get("seq", 0))]
            return
        rid = req.get("rid")
        self.deferred = []  # events raised while handling go out after the reply
        try:
            handler = getattr(self, "op_" + str(op), None)
            if handler is None:
                raise ShimError("Unimplemented", f"unknown operation {op!r}")
            result = handler(conn, req) or {}
            result.update(rid=rid, ok=True)
        except ShimError as e:
            result = {"rid": rid, "ok": False, "code": e.code, "error": str(e)}
        except (KeyError, TypeError, ValueError) as e:
            _log_traceback()
            result = {"rid": rid, "ok": False, "code": "InvalidArgument",
                      "error": f"bad {op} request: {e}"}
        except Exception as e:  # a bug must not take the container's shim down
            _log_traceback()
            result = {"rid": rid, "ok": False, "code": "Unknown", "error": f"{op}: {e}"}
        conn.send(result)
        if op == "subscribe":
            for seq, ev in self.events:
                conn.send({"event": ev, "seq": seq})
        deferred, self.deferred = self.deferred, None
        for seq, ev in deferred:
            self._push(seq, ev)

    # -- events ---------------------------------------------------------------------------
    def emit(self, event: dict) -> None:
        """Queue an event until acknowledged; send it now, or after the current reply."""
        self.seq += 1
        self.events.append((self.seq, event))
        if len(self.events) > MAX_EVENTS:
            self.events.pop(0)
        if self.deferred is not None:
            self.deferred.append((self.seq, event))
        else:
            self._push(self.seq, event)

    def _push(self, seq: int, event: dict) -> None:
        for conn in self.conns:
            if conn.subscribed:
                conn.send({"event": event, "seq": seq})

    # -- operations ---------------------------------------------------------------------------
    def _task(self) -> Task:
        if self.task is None or self.task.deleted:
            raise ShimError("NotFound", "no container in this shim")
        return self.task

    def op_hello(self, conn, req):
        return {"pid": os.getpid(), "has_task": self.task is not None}

    def op_subscribe(self, conn, req):
        conn.subscribed = True

    def op_create(self, conn, req):
        if self.task is not None:
            raise ShimError("AlreadyExists", "this shim already owns a container")
        task = Task(self.r, self.reaper, self.emit, self.socket_path + ".con", req)
        result = task.create(req)
        self.task = task
        shimlog.set_container(str(req.get("namespace", "")), task.id)
        set_title(*for_container(str(req.get("namespace", "")), task.id))
        return result

    def op_start(self, conn, req):
        return self._task().start(req.get("exec_id", INIT))

    def op_exec(self, conn, req):
        self._task().add_exec(req)

    def op_kill(self, conn, req):
        self._task().kill(req.get("exec_id", INIT), signal_number(req.get("signal", 15)),
                          bool(req.get("all")))

    def op_delete(self, conn, req):
        task = self._task()
        result = task.delete(req.get("exec_id", INIT))
        if task.deleted:
            self.exiting = True
        return result

    def op_pause(self, conn, req):
        self._task().pause()

    def op_resume(self, conn, req):
        self._task().resume()

    def op_pids(self, conn, req):
        return {"pids": self._task().pids()}

    def op_stats(self, conn, req):
        return {"stats": self._task().stats()}

    def op_update(self, conn, req):
        self._task().update(req["resources_path"])

    def op_resize(self, conn, req):
        self._task().resize(req.get("exec_id", INIT), int(req["width"]), int(req["height"]))

    def op_closeio(self, conn, req):
        self._task().close_io(req.get("exec_id", INIT))

    def op_state(self, conn, req):
        task = self._task()
        return {"id": task.id, "paused": task.paused,
                "procs": [p.describe() for p in task.procs.values()]}

    def op_shutdown(self, conn, req):
        if self.task is not None and not self.task.deleted:
            raise ShimError("FailedPrecondition", "container not deleted yet")
        self.exiting = True

    # -- loop ---------------------------------------------------------------------------------
    def done(self) -> bool:
        return self.exiting and not any(c.outbuf for c in self.conns)

    def serve(self) -> None:
        self.r.run(self.done)
        self.listener.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


def _log_traceback() -> None:
    """Unexpected errors go to the shim's log (its stderr, see shimlog.py) with their
    traceback, as one line the daemon copies into its own log."""
    import traceback
    shimlog.write("error", traceback.format_exc())


def _bind(path: str) -> _socket.socket:
    from supervisor.listen import claim
    claim(path)     # a stale socket is removed, a live one refused (OSError; supervisor/listen.py)
    old = os.umask(0o177)
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(16)
    return sock


def _detach(log: str) -> None:
    os.setsid()
    os.chdir("/")
    null = os.open("/dev/null", os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if log else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        if fd > 2:
            os.close(fd)


def _become_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER) through python-prctl's C module (its Python wrapper, with
    every capability helper, is not needed here)."""
    import _prctl
    _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, 1)


USAGE = ("usage: pyrunc-shim --socket PATH [--log PATH] [--foreground | --zygote]\n"
         "       pyrunc-shim --version")


def _parse(argv: list[str]) -> dict:
    """A tiny flag parser (argparse costs memory in every shim)."""
    opts = {"socket": "", "log": "", "foreground": False, "zygote": False}
    it = iter(argv)
    for arg in it:
        if arg in ("--version", "-v"):
            from supervisor.version import line
            print(line("pyrunc-shim"))
            raise SystemExit(0)
        if arg in ("--foreground", "--zygote"):
            opts[arg[2:]] = True
        elif arg in ("--socket", "--log"):
            opts[arg[2:]] = next(it, "")
        elif arg.startswith(("--socket=", "--log=")):
            key, _, value = arg[2:].partition("=")
            opts[key] = value
        else:
            raise SystemExit(f"pyrunc-shim: unknown argument {arg!r}\n{USAGE}")
    if not opts["socket"]:
        raise SystemExit(f"pyrunc-shim: --socket is required\n{USAGE}")
    return opts


def _run_shim(listener: _socket.socket, path: str, log: str) -> None:
    """Become a shim: own session, quiet stdio, subreaper; serve until the container is gone."""
    _detach(log)
    _become_subreaper()
    set_title("spare")
    Shim(listener, path).serve()


# -- zygote -------------------------------------------------------------------------------------
# A zygote is a shim process that never owns a container: it has everything a shim needs
# imported and, on request, forks new shims. Forked shims share the zygote's memory pages
# (interpreter data, modules) copy-on-write, so each costs only the pages it changes. gc.freeze()
# keeps the collector from touching (and so copying) the inherited objects.

def _zygote(listener: _socket.socket, log: str) -> None:
    import gc
    gc.freeze()
    while True:
        try:
            fd, _ = listener._accept()
        except InterruptedError:
            continue
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        _zygote_serve(conn, listener, log)  # one daemon at a time; returns when it goes away
        conn.close()
        return


def _zygote_serve(conn: _socket.socket, listener: _socket.socket, log: str) -> None:
    buf = bytearray()
    while True:
        try:
            data = conn.recv(65536)
        except OSError:
            return
        if not data:
            return
        buf += data
        for req in wire.decode_frames(buf):
            conn.sendall(wire.encode(_zygote_spawn(req, (conn, listener), log)))


def _zygote_spawn(req: dict, inherited, log: str) -> dict:
    if req.get("op") == "hello":
        return {"rid": req.get("rid"), "ok": True, "pid": os.getpid()}
    if req.get("op") != "spawn":
        return {"rid": req.get("rid"), "ok": False, "code": "Unimplemented",
                "error": f"zygote: unknown operation {req.get('op')!r}"}
    path = req.get("socket", "")
    try:
        shim_listener = _bind(path)
    except OSError as e:
        return {"rid": req.get("rid"), "ok": False, "code": "Unknown",
                "error": f"bind {path}: {e.strerror}"}
    pid = os.fork()
    if pid == 0:  # intermediate: fork the shim and leave, so the shim is nobody's child here
        try:
            if os.fork() == 0:
                for sock in inherited:
                    sock.close()
                _run_shim(shim_listener, path, req.get("log") or log)
        except BaseException:
            _log_traceback()
        finally:
            os._exit(0)
    shim_listener.close()
    os.waitpid(pid, 0)
    return {"rid": req.get("rid"), "ok": True}


def main(argv=None) -> int:
    opts = _parse(sys.argv[1:] if argv is None else argv)
    path = opts["socket"]
    try:
        listener = _bind(path)
    except OSError as e:
        print(f"pyrunc-shim: bind {path}: {e.strerror}", file=sys.stderr)
        return 1
    if opts["foreground"]:
        _become_subreaper()
        set_title("spare")
        Shim(listener, path).serve()
        return 0
    if os.fork() != 0:
        os._exit(0)  # the socket is listening: the daemon may connect now
    if opts["zygote"]:
        _detach(opts["log"])
        set_title("zygote")
        try:
            _zygote(listener, opts["log"])
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            os._exit(0)
    _run_shim(listener, path, opts["log"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
