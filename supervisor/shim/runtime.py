"""Running the OCI runtime binary, and reaping every child of the shim.

The shim is a child subreaper, so besides the runtime invocations it spawns, the container's init
and exec'd processes become its children once ``runc create`` / ``runc exec --detach`` exit.
All reaping goes through one place, :class:`Reaper`: a status collected while waiting for a runtime
invocation is kept for the process it belongs to, so no exit is ever swallowed (subprocess would
mistake a child reaped elsewhere for exit code 0, which is why it is not used here).

Runtime invocations are synchronous for the shim's requests: the next request waits until the
runtime command (create, start, exec --detach, kill, delete, pause, ps, ...) has ended. But not
for the container's stdio: while the runtime runs (a hook may sleep, ``ps`` may hang on a stuck
cgroup), the shim waits on a pidfd of the runtime process inside ``Reactor.run_until``, which
keeps every stdio pump moving (see reactor.py); a command's captured output and error are read
there too, so a runtime that writes much never blocks on a full pipe.
"""
from __future__ import annotations

import os
import time


class RuntimeError_(Exception):
    """The runtime binary failed; the message is its own last error line."""


def exit_code(status: int) -> int:
    """A wait status as the exit code containerd reports (128+signal when killed)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


class Reaper:
    def __init__(self):
        self.collected: dict[int, tuple[int, float]] = {}  # pid -> (status, time)

    def reap_ready(self) -> None:
        """Collect every child that has exited, without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._keep(pid, status)

    def wait_for(self, pid: int) -> int:
        """Block until pid exits, keeping every other status collected meanwhile."""
        while pid not in self.collected:
            try:
                got, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self._keep(got, status)
        status, _ = self.collected.pop(pid, (255 << 8, time.time()))
        return status

    def _keep(self, pid: int, status: int) -> None:
        if len(self.collected) > 4096:  # strays nobody claims (host pid namespace)
            self.collected.pop(next(iter(self.collected)))
        self.collected[pid] = (status, time.time())

    def take(self, pid: int):
        return self.collected.pop(pid, None)


class Runtime:
    """One OCI runtime binary with runc's command line, its --root and a JSON log file."""

    def __init__(self, binary: str, root: str, log: str, reaper: Reaper, reactor=None):
        self.binary = binary
        self.root = root
        self.log = log
        self.reaper = reaper
        self.reactor = reactor  # None: wait for the runtime blocking (nothing else to serve)

    def argv(self, args: list[str]) -> list[str]:
        head = [self.binary]
        if self.root:
            head += ["--root", self.root]
        return head + ["--log", self.log, "--log-format", "json"] + args

    def run(self, args: list[str], stdio: tuple[int, int, int] | None = None,
            capture: bool = False) -> str:
        """Run the runtime; return its stdout if capture. Raise RuntimeError_ on failure."""
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        out_r = out_w = err_r = err_w = None
        try:
            if stdio is None:
                if capture:
                    out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                stdio = (null, out_w if capture else null, err_w)
            before = _size(self.log)
            pid = self._spawn(self.argv(args), stdio)
            for fd in (out_w, err_w):
                if fd is not None:
                    os.close(fd)
            out_w = err_w = None
            if self.reactor is None:
                out = _read_all(out_r) if out_r is not None else b""
                err = b""
            else:
                out, err = self._serve_until_exit(pid, out_r, err_r)
            status = self.reaper.wait_for(pid)
            err += _read_all(err_r, block=False) if err_r is not None else b""
        finally:
            for fd in (null, out_r, out_w, err_r, err_w):
                if fd is not None:
                    os.close(fd)
        if status != 0:
            raise RuntimeError_(self._error(before, err, status, args[0]))
        return out.decode(errors="replace")

    def _serve_until_exit(self, pid: int, out_r: int | None, err_r: int | None):
        """Run the reactor's stdio loop until the runtime has exited and its stdout (if
        captured) has ended; return what it wrote to stdout and stderr meanwhile. stderr is not
        waited for: a hook's background child may hold it open."""
        r = self.reactor
        pidfd = os.pidfd_open(pid)
        got = {out_r: [], err_r: []}
        waiting = {pidfd} | ({out_r} if out_r is not None else set())

        def reader(fd):
            def readable():
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    return
                if data:
                    got[fd].append(data)
                else:
                    r.on_read(fd, None)
                    waiting.discard(fd)
            return readable

        def exited():
            r.on_read(pidfd, None)
            waiting.discard(pidfd)

        fds = [fd for fd in (out_r, err_r) if fd is not None]
        try:
            for fd in fds:
                os.set_blocking(fd, False)
                r.on_read(fd, reader(fd))
            r.on_read(pidfd, exited)
            r.run_until(lambda: not waiting)
        finally:
            for fd in fds + [pidfd]:
                r.forget(fd)
            os.close(pidfd)
        return b"".join(got[out_r]), b"".join(got[err_r])

    def _spawn(self, argv: list[str], stdio) -> int:
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)]
        try:
            return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
        except OSError as e:
            raise RuntimeError_(f"runtime {argv[0]}: {e.strerror}") from None

    def _error(self, before: int, stderr: bytes, status: int, cmd: str) -> str:
        msg = _last_log_error(self.log, before)
        if not msg:
            lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
            msg = lines[-1].strip() if lines else ""
        if not msg:
            msg = f"{os.path.basename(self.binary)} {cmd} exited with status {exit_code(status)}"
        return msg


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _read_all(fd: int, block: bool = True) -> bytes:
    if not block:
        os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _last_log_error(path: str, offset: int) -> str:
    import json  # only on failures: json is too big to keep in every shim
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(1 << 20)
    except OSError:
        return ""
    msg = ""
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            msg = str(entry.get("msg", ""))
    return msg
