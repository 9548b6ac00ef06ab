"""The daemon's side of the shim channel (see wire.py), on asyncio.

One connection per shim carries requests (answered out of order, matched by ``rid``) and, after
``subscribe``, the shim's events; each event is acknowledged once the daemon has handled it. When
the connection drops, pending calls fail with Unavailable and ``on_lost`` runs: the daemon then
checks whether the shim died (see core/recovery.py).

Also here: starting a shim. ``python -S -m supervisor.shim`` keeps the shim lean (no site
initialisation); its PYTHONPATH names just this package's root and python-prctl's directory.
The launcher process exits as soon as the shim's socket listens; the shim runs in its own session
and outlives the daemon (while the daemon runs, it is the shims' subreaper, see ChildReaper).
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
import sys

from supervisor import wire
from supervisor.errors import SupervisorError, Unavailable, from_shim

PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shim_pythonpath() -> str:
    """The package root, python-prctl's directory (its C module ``_prctl`` sits beside it) and
    setproctitle's package directory (whose C module ``_setproctitle`` the shim imports alone)."""
    paths = [PKG_ROOT]
    for name in ("prctl", "setproctitle"):
        spec = importlib.util.find_spec(name)
        if spec and spec.origin:
            paths.append(os.path.dirname(spec.origin))
    return os.pathsep.join(dict.fromkeys(paths))


SHIM_PYTHONPATH = _shim_pythonpath()
SHIM_MODULES = ("__init__.py", "wire.py", "shim/__init__.py", "shim/__main__.py",
                "shim/reactor.py", "shim/stdio.py", "shim/runtime.py", "shim/states.py",
                "shim/task.py", "shim/server.py", "shim/title.py", "shim/shimlog.py", "mounts.py",
                "listen.py")


def precompile_shim() -> None:
    """Write the shim's bytecode caches now (even under PYTHONDONTWRITEBYTECODE): a shim that
    had to compile its modules from source would carry the compiler's garbage in its heap for
    life, and start slower."""
    import py_compile
    base = os.path.join(PKG_ROOT, "supervisor")
    for name in SHIM_MODULES:
        try:
            py_compile.compile(os.path.join(base, name), doraise=True)
        except (OSError, py_compile.PyCompileError):
            pass  # read-only install: the shim still works, a little bigger


class ChildReaper:
    """Reaps every child of the daemon on SIGCHLD and hands statuses to whoever waits for them.

    The daemon is a child subreaper: shims (whose launcher exits at once) and, after a shim dies,
    its orphaned container processes are reparented to the daemon, which must reap them promptly
    (a zombie container init would stall ``runc delete --force``). Statuses nobody waits for are
    kept briefly, in case the waiter registers after the child already exited.
    """
    KEEP = 1024

    def __init__(self):
        self.waiters: dict[int, asyncio.Future] = {}
        self.unclaimed: dict[int, int] = {}

    def install(self, loop) -> None:
        import signal
        loop.add_signal_handler(signal.SIGCHLD, self.reap)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            fut = self.waiters.pop(pid, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(code)
                continue
            if len(self.unclaimed) >= self.KEEP:
                self.unclaimed.pop(next(iter(self.unclaimed)))
            self.unclaimed[pid] = code

    async def wait(self, pid: int) -> int:
        if pid in self.unclaimed:
            return self.unclaimed.pop(pid)
        fut = asyncio.get_running_loop().create_future()
        self.waiters[pid] = fut
        self.reap()  # it may have exited before the waiter existed
        return await fut


REAPER = ChildReaper()


async def wait_process(pid: int) -> int:
    return await REAPER.wait(pid)


async def run_command(argv: list[str]) -> int:
    """Run a helper command quietly; its exit code (127 if it cannot start)."""
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ,
                              file_actions=[(os.POSIX_SPAWN_DUP2, null, i) for i in range(3)])
    except OSError:
        return 127
    finally:
        os.close(null)
    return await wait_process(pid)


async def spawn_shim(socket_path: str, log: str, zygote: bool = False) -> None:
    """Start a shim (or a zygote, see shim/server.py) from a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=SHIM_PYTHONPATH)
    argv = [sys.executable, "-S", "-m", "supervisor.shim", "--socket", socket_path, "--log", log]
    if zygote:
        argv.append("--zygote")
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    logfd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        pid = os.posix_spawn(sys.executable, argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, logfd, 1),
            (os.POSIX_SPAWN_DUP2, logfd, 2)])
    finally:
        os.close(null)
        os.close(logfd)
    code = await wait_process(pid)
    if code != 0:
        raise SupervisorError(f"shim failed to start (exit status {code}); see {log}")


class ShimClient:
    def __init__(self, path: str, on_event=None, on_lost=None):
        self.path = path
        self.on_event = on_event
        self.on_lost = on_lost
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.rid = 0
        self.closed = False
        self.expect_exit = False
        self.loop_task: asyncio.Task | None = None
        self.pid = 0

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_unix_connection(self.path)
        self.loop_task = asyncio.get_running_loop().create_task(self._read_loop())
        self.pid = (await self.call("hello"))["pid"]

    async def _read_loop(self) -> None:
        buf = bytearray()
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                buf += data
                for frame in wire.decode_frames(buf):
                    self._dispatch(frame)
        except (OSError, wire.WireError):
            pass
        finally:
            self._lost()

    def _dispatch(self, frame: dict) -> None:
        if "event" in frame:
            # Handled on the next loop turn, after the coroutine woken by an earlier reply in
            # this batch has run: the shim's order (reply to start, then the exit) is kept.
            if self.on_event is not None:
                asyncio.get_running_loop().call_soon(self.on_event, frame["event"])
            self._send({"op": "ack", "seq": frame.get("seq", 0)})
            return
        fut = self.pending.pop(frame.get("rid"), None)
        if fut is not None and not fut.done():
            fut.set_result(frame)

    def _send(self, obj: dict) -> None:
        if self.writer is None or self.closed:
            raise Unavailable("shim connection is closed")
        self.writer.write(wire.encode(obj))

    async def call(self, op: str, **args) -> dict:
        self.rid += 1
        rid = self.rid
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        try:
            self._send(dict(args, op=op, rid=rid))
        except Unavailable:
            self.pending.pop(rid, None)
            raise
        reply = await fut
        if reply.get("ok"):
            return reply
        raise from_shim(reply.get("code", ""), reply.get("error", "shim error"))

    def _lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(Unavailable("shim connection lost"))
        self.pending.clear()
        if self.writer is not None:
            self.writer.close()
        if self.on_lost is not None:
            self.on_lost(self)

    def close(self) -> None:
        """Drop the connection (the shim keeps running if it owns a container)."""
        self.on_lost = None
        if self.writer is not None:
            self.writer.close()
        if self.loop_task is not None:
            self.loop_task.cancel()
        self.closed = True
