"""The client side of a process's stdio: FIFOs in a private temporary directory, copied to and from
this process's own stdin/stdout/stderr by threads; and the local terminal in raw mode for ``-t``.

Readers of the output FIFOs are opened before the task is created (the shim treats an output FIFO
nobody reads as absent) and copied from once it is (the shim then holds the writers, so an empty
read is the real end of output); the stdin writer is opened after, and when local input ends the
caller sends CloseIO so the container sees end-of-file.
"""
from __future__ import annotations

import os
import select
import shutil
import sys
import tempfile
import threading


class FifoSet:
    def __init__(self, name: str, stdin: bool, stderr: bool):
        self.dir = tempfile.mkdtemp(prefix="pyrunc-ctl-")
        self.stdin = self._make(name + "-stdin") if stdin else ""
        self.stdout = self._make(name + "-stdout")
        self.stderr = self._make(name + "-stderr") if stderr else ""
        self.threads: list[threading.Thread] = []
        self.readers = [os.open(p, os.O_RDONLY | os.O_NONBLOCK) for p in (self.stdout, self.stderr)
                        if p]

    def _make(self, name: str) -> str:
        path = os.path.join(self.dir, name)
        os.mkfifo(path, 0o600)
        return path

    def start_output(self, tee: str = "") -> None:
        """Copy the output to our stdout/stderr, and (``tee``) append it to a log file too, so
        a foreground container has logs like a detached one."""
        targets = [sys.stdout.buffer, sys.stderr.buffer]
        log = None
        if tee:
            os.makedirs(os.path.dirname(tee), exist_ok=True)
            log = open(tee, "ab", buffering=0)
        lock = threading.Lock()
        for fd, out in zip(self.readers, targets):
            t = threading.Thread(target=_copy_out, args=(fd, out, log, lock), daemon=True)
            t.start()
            self.threads.append(t)

    def start_input(self, on_eof) -> None:
        if not self.stdin:
            return
        t = threading.Thread(target=_copy_in, args=(self.stdin, on_eof), daemon=True)
        t.start()

    def wait_output(self, timeout: float = 5.0) -> None:
        for t in self.threads:
            t.join(timeout)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _copy_out(fd: int, out, log=None, lock=None) -> None:
    """Copy until EOF (start after the task was created: the shim holds the writer by then)."""
    try:
        while True:
            select.select([fd], [], [])
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                return
            out.write(data)
            out.flush()
            if log is not None:
                with lock:
                    log.write(data)
    except (OSError, ValueError):
        return
    finally:
        os.close(fd)


def _copy_in(path: str, on_eof) -> None:
    from supervisor.ctlstdin import copy_until_eof
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return
    try:
        copy_until_eof(sys.stdin.buffer.fileno(), fd)
    finally:
        on_eof()


class RawTerminal:
    """Put the local terminal in raw mode for the duration (no-op if stdin is not a terminal)."""

    def __init__(self):
        self.saved = None

    def __enter__(self):
        import termios
        import tty
        if sys.stdin.isatty():
            self.saved = termios.tcgetattr(sys.stdin.fileno())
            # TCSANOW, not setraw's default TCSAFLUSH: keys typed ahead (before the container
            # was up) are kept and go to it, as with docker
            tty.setraw(sys.stdin.fileno(), termios.TCSANOW)
        return self

    def __exit__(self, *exc):
        import termios
        if self.saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def terminal_size() -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return size.columns, size.lines
