"""A detached container's stdin (``run -di``, ``create -i``), kept open for ``attach``.

Docker's daemon holds such a container's stdin open and connects each attaching client to it.
Here the container's stdin is a FIFO next to its log (``<log dir>/<ns>/<id>.stdin``) named in
the ``io.pyrunc/stdin`` label: every task of the container (``start``, ``restart``, the
supervisor's restart monitor) gets it as its stdin. The shim opens it read-write, so no client's
close ends the container's input; ``attach`` writes what it reads to it. At the client's end of
input, Docker's StdinOnce decides: a container made with ``create -i`` (or ``run -i``) has its
stdin closed (CloseIO: the process sees end-of-file), one made with ``run -di`` keeps it open
for the next client.
"""
from __future__ import annotations

import os
import stat
import sys
import threading

LABEL = "io.pyrunc/stdin"


def fifo_for(log: str) -> str:
    return (log[:-len(".log")] if log.endswith(".log") else log) + ".stdin"


def ensure(path: str) -> str:
    """The FIFO, made if missing (a stale non-FIFO file there is replaced)."""
    try:
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            return path
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)
    return path


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def copy_until_eof(src: int, fd: int) -> None:
    """Copy ``src`` into ``fd`` until end of input (or an error: a reader that went away), then
    close ``fd``: the one stdin copier of pyrunc-ctl (attach, run -i, exec -i)."""
    try:
        while True:
            data = os.read(src, 65536)
            if not data:
                break
            os.write(fd, data)
    except OSError:
        pass
    finally:
        os.close(fd)


def copy_in(path: str, on_eof, src=None) -> threading.Thread | None:
    """Copy our stdin into the container's stdin FIFO until end of input, then call
    ``on_eof``. None (nothing started) when no process holds the FIFO any more (its stdin was
    closed: a write would block for ever)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    os.set_blocking(fd, True)
    src = sys.stdin.buffer.fileno() if src is None else src

    def pump():
        copy_until_eof(src, fd)
        on_eof()
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return t
