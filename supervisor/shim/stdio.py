"""Stdio of one container process: pipes or a pty on the container side, the client's FIFOs or a
log file on the other, and pumps between them.

Destinations are given as the client wrote them in the task request:
- ``""``                 nothing: the process gets /dev/null.
- ``/abs/path``          a FIFO the client created (and opened for reading / writing).
- ``file:///abs/path``   a log file, appended to; handed to the process directly, no pump.

A process may also have a json-file log (``log``, see jsonlog.py): its output is then always
pumped, each pump handing what it reads to the log's line cutter before the FIFO (or nothing)
gets it; a ``file://`` destination is ignored then (the log is the container's file).

Flow control (the container must never deadlock on a slow or absent reader, and the shim must never
buffer without bound):
- An output pump reads the container's pipe while its buffer holds less than ``CAP`` bytes, so a
  slow reader slows the container down (back-pressure) but memory stays bounded.
- A FIFO whose reader went away (write fails with EPIPE) is treated as absent: from then on
  output is read and discarded, so the container keeps running.
- A FIFO nobody has open yet (ENXIO) is a reader still on its way: clients open their end
  asynchronously (containerd's Go fifo package opens it in a goroutine, dockerd and ctr use it),
  so under load the shim can get there first.  The pump then keeps the output in its buffer
  (back-pressure beyond ``CAP``) and retries the open every ``READER_RETRY`` seconds; a reader
  that arrives within ``READER_GRACE`` gets everything from the first byte.  After that the FIFO
  counts as absent.  (Without this a fast container's output was lost under load: `docker run`
  gave the right exit code and an empty stdout.)
- Stdin FIFOs are opened O_RDWR so that the shim, not a writer's close, decides when stdin ends:
  containerd clients send CloseIO when their input ends; the shim then drains what is left and
  closes the container's stdin.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
import time

CAP = 256 << 10
CHUNK = 64 << 10
READER_RETRY = 0.01
READER_GRACE = 10.0


class StdioError(Exception):
    pass


def _open_fifo_out(path: str) -> int | None:
    """Open a client's output FIFO for writing without blocking; None if nobody reads it."""
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENXIO:
            return None
        raise StdioError(f"open {path}: {e.strerror}") from None


def _open_log(uri: str) -> int:
    path = uri[len("file://"):]
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as e:
        raise StdioError(f"open {path}: {e.strerror}") from None


class Pump:
    """Copies bytes from src to dst through a bounded buffer, driven by the reactor."""

    def __init__(self, reactor, src: int, dst: int | None, on_done, own_src=True, own_dst=True,
                 tap=None):
        self.r = reactor
        self.tap = tap                      # a jsonlog.Stream that sees every byte read
        self.src, self.dst = src, dst
        self.own_src, self.own_dst = own_src, own_dst
        self.buf = bytearray()
        self.src_eof = False
        self.done = False
        self.on_done = on_done
        self.awaited: str | None = None     # a FIFO whose reader is still on its way
        self.await_until = 0.0
        os.set_blocking(src, False)
        if dst is not None and not _is_regular(dst):
            os.set_blocking(dst, False)
        self.r.on_read(src, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.src, CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno not in (errno.EIO, errno.EBADF):  # EIO: pty slave side gone
                raise
            data = b""
        if not data:
            self._src_finished()
            return
        if self.tap is not None:
            self.tap.feed(data)
        if self.dst is None and self.awaited is None:
            return  # reader absent: discard
        self.buf += data
        self._flush()
        if len(self.buf) >= CAP:
            self.r.on_read(self.src, None)  # back-pressure

    def _writable(self) -> None:
        self._flush()

    def _flush(self) -> None:
        while self.buf and self.dst is not None:
            try:
                n = os.write(self.dst, self.buf)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno not in (errno.EPIPE, errno.EIO, errno.EBADF):
                    raise
                self._drop_dst()
                break
            del self.buf[:n]
        waiting = bool(self.buf) and self.dst is not None
        if self.dst is not None:
            self.r.on_write(self.dst, self._writable if waiting else None)
        if not self.src_eof and len(self.buf) < CAP:
            self.r.on_read(self.src, self._readable)
        if self.src_eof and not waiting and self.awaited is None:
            self._finish()

    def _drop_dst(self) -> None:
        """The reader went away: from now on output is discarded."""
        self.buf.clear()
        self._release_dst()

    def _release_dst(self) -> None:
        if self.own_dst:
            self.r.forget(self.dst)
            os.close(self.dst)
        else:
            self.r.on_write(self.dst, None)  # a shared fd (pty master): keep its reader
        self.dst = None

    def _release_src(self) -> None:
        if self.own_src:
            self.r.forget(self.src)
            os.close(self.src)
        else:
            self.r.on_read(self.src, None)

    def _src_finished(self) -> None:
        self.src_eof = True
        if self.tap is not None:
            self.tap.end()
        self._release_src()
        self._flush()
        if self.dst is None and self.awaited is None:
            self._finish()

    def await_reader(self, path: str) -> None:
        """``path`` had no reader when the pump was made: keep the output until one opens it
        (see the module's docstring)."""
        self.awaited = path
        self.await_until = time.monotonic() + READER_GRACE
        self.r.call_later(READER_RETRY, self._retry_open)

    def _retry_open(self) -> None:
        if self.awaited is None or self.done:
            return
        try:
            fd = _open_fifo_out(self.awaited)
        except StdioError:
            fd = None
            self.await_until = 0.0
        if fd is None:
            if time.monotonic() < self.await_until:
                self.r.call_later(READER_RETRY, self._retry_open)
                return
            self.awaited = None     # nobody came: discard from now on
            self.buf.clear()
        else:
            self.awaited = None
            self.dst = fd
            os.set_blocking(fd, False)
        self._flush()
        if self.src_eof and self.dst is None:
            self._finish()

    def end_input(self) -> None:
        """Stop reading src after taking what is already there (CloseIO on stdin)."""
        if self.src_eof:
            return
        while True:
            try:
                data = os.read(self.src, CHUNK)
            except OSError:
                break
            if not data:
                break
            if self.dst is not None:
                self.buf += data
        self._src_finished()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.dst is not None:
            self._release_dst()
        self.on_done(self)

    def abort(self) -> None:
        """Tear down at once (process deleted)."""
        self.awaited = None
        if not self.src_eof:
            self.src_eof = True
            self._release_src()
        self.buf.clear()
        self._finish()


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


class ProcessIO:
    """The stdio plumbing of one process (init or exec)."""

    def __init__(self, reactor, stdin: str, stdout: str, stderr: str, terminal: bool,
                 log: str = ""):
        self.r = reactor
        self.paths = (stdin, stdout, stderr)
        self.log_uri = log
        self.log = None                     # the JsonLog, opened with the process's stdio
        self.terminal = terminal
        self.child_fds: list[int] = []      # handed to the runtime, closed after it ran
        self.pumps: list[Pump] = []
        self.stdin_pump: Pump | None = None
        self.master: int | None = None
        self.on_outputs_done = None
        self.outputs_open = 0

    # -- before the runtime runs -------------------------------------------------
    def child_stdio(self) -> tuple[int, int, int]:
        """The fds the runtime (and through it the process) gets as 0, 1, 2."""
        if self.terminal:
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            self.child_fds.append(null)
            return null, null, null
        stdin, stdout, stderr = self.paths
        fds = (self._in_fd(stdin), self._out_fd(stdout, "stdout"),
               self._out_fd(stderr, "stderr"))
        return fds

    def _tap(self, stream: str):
        """The log's line cutter for ``stream`` (None without a log)."""
        if not self.log_uri:
            return None
        if self.log is None:
            from supervisor.shim import jsonlog
            try:
                self.log = jsonlog.JsonLog(self.log_uri)
            except jsonlog.LogError as e:
                raise StdioError(str(e)) from None
        return self.log.stream(stream)

    def _null(self) -> int:
        fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        self.child_fds.append(fd)
        return fd

    def _in_fd(self, path: str) -> int:
        if not path:
            return self._null()
        r, w = os.pipe2(os.O_CLOEXEC)
        self.child_fds.append(r)
        fifo = _open_stdin(path, w)
        self.stdin_pump = Pump(self.r, fifo, w, self._stdin_done)
        return r

    def _out_fd(self, path: str, stream: str) -> int:
        tap = self._tap(stream)
        if tap is not None and path.startswith("file://"):
            path = ""
        if not path and tap is None:
            return self._null()
        if path.startswith("file://"):
            fd = _open_log(path)
            self.child_fds.append(fd)
            return fd
        r, w = os.pipe2(os.O_CLOEXEC)
        self.child_fds.append(w)
        try:
            dst = _open_fifo_out(path) if path else None
        except StdioError:
            os.close(r)
            raise
        pump = Pump(self.r, r, dst, self._output_done, tap=tap)
        if dst is None and path:
            pump.await_reader(path)
        self._add_output(pump)
        return w

    def _add_output(self, pump: Pump) -> None:
        self.outputs_open += 1
        self.pumps.append(pump)

    def runtime_done(self) -> None:
        """The runtime has passed the child fds on (or failed): drop our copies."""
        for fd in self.child_fds:
            os.close(fd)
        self.child_fds.clear()

    # -- terminal ------------------------------------------------------------------
    def attach_master(self, master: int) -> None:
        self.master = master
        stdin, stdout, _ = self.paths
        tap = self._tap("stdout")
        if tap is not None and stdout.startswith("file://"):
            stdout = ""
        dst = None  # no stdout: the terminal's output is drained and dropped, never left to block
        if stdout:
            dst = _open_log(stdout) if stdout.startswith("file://") else _open_fifo_out(stdout)
        pump = Pump(self.r, master, dst, self._output_done, own_src=False, tap=tap)
        if dst is None and stdout and not stdout.startswith("file://"):
            pump.await_reader(stdout)
        self._add_output(pump)
        if stdin:
            fifo = _open_stdin(stdin, None)
            self.stdin_pump = Pump(self.r, fifo, master, self._stdin_done, own_dst=False)

    def resize(self, width: int, height: int) -> None:
        if not self.terminal:
            raise StdioError("process has no terminal")
        if self.master is None:
            return  # not created yet, or already gone: nothing to resize
        import fcntl
        import termios
        winsize = b"".join(v.to_bytes(2, sys.byteorder) for v in (height, width, 0, 0))
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, winsize)

    # -- lifecycle -------------------------------------------------------------------
    def close_stdin(self) -> None:
        if self.stdin_pump is not None:
            self.stdin_pump.end_input()

    def _stdin_done(self, pump: Pump) -> None:
        self.stdin_pump = None

    def _output_done(self, pump: Pump) -> None:
        self.outputs_open -= 1
        if self.outputs_open == 0:
            self._close_master()
            self._close_log()
            if self.on_outputs_done:
                self.on_outputs_done()

    def outputs_done(self) -> bool:
        return self.outputs_open == 0

    def _close_master(self) -> None:
        if self.stdin_pump is not None and self.master is not None:
            self.stdin_pump.abort()
        if self.master is not None:
            self.r.forget(self.master)
            os.close(self.master)
            self.master = None

    def close(self) -> None:
        """Tear everything down (process deleted)."""
        self.runtime_done()
        if self.stdin_pump is not None:
            self.stdin_pump.abort()
        for p in list(self.pumps):
            p.abort()
        self._close_master()
        self._close_log()

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()


def _open_stdin(path: str, pipe_w: int | None) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if pipe_w is not None:
            os.close(pipe_w)
        raise StdioError(f"open {path}: {e.strerror}") from None
