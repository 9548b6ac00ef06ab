"""A container's log as Docker's json-file driver keeps it: one JSON object per line of output,
``{"log": "...\\n", "stream": "stdout"|"stderr", "time": RFC3339Nano}``, rotated by size.

A container asks for it with the ``io.pyrunc/log`` label (pyrunc-ctl sets it), whose value is
``json-file:///abs/path[?max-size=BYTES&max-file=N]``; the daemon passes it to the shim with
the init process's create. The shim then reads the container's stdout and stderr itself (pipes,
or the pty) and writes each line here, as well as to the client's FIFOs when there are any, so
the log is the same whether a client is attached, the container runs detached, or the restart
monitor brought it back.

Lines are cut at ``\\n``; a line longer than 16 KiB is written in 16 KiB pieces without one,
and what is left at end of output is written as it is (Docker does the same). Rotation follows
Docker: before an entry is written, a file that has reached ``max-size`` becomes ``PATH.1``
(``PATH.1`` becomes ``PATH.2``...), keeping ``max-file`` files in all; with ``max-file=1`` the
file is truncated instead. Readers (supervisor/ctllogs.py) read ``PATH.N`` ... ``PATH.1``,
``PATH`` in that order.
"""
from __future__ import annotations

import os
import time

from _json import encode_basestring  # the C encoder alone: the json package costs imports

PREFIX = "json-file://"
PIECE = 16 << 10


class LogError(Exception):
    pass


def parse(uri: str) -> tuple[str, int, int]:
    """(path, max size in bytes or 0 for none, max files) of a ``json-file://`` URI."""
    if not uri.startswith(PREFIX):
        raise LogError(f"log {uri!r}: not a {PREFIX} URI")
    path, _, query = uri[len(PREFIX):].partition("?")
    if not path.startswith("/"):
        raise LogError(f"log {uri!r}: path must be absolute")
    opts = dict(kv.partition("=")[::2] for kv in query.split("&") if kv)
    try:
        size, files = int(opts.get("max-size") or 0), int(opts.get("max-file") or 1)
    except ValueError:
        raise LogError(f"log {uri!r}: max-size and max-file must be numbers") from None
    if size < 0 or files < 1:
        raise LogError(f"log {uri!r}: max-size must be >= 0 and max-file >= 1")
    return path, size, files


def timestamp(ns: int) -> str:
    """RFC3339Nano in UTC, as Go writes it (trailing zeros of the fraction dropped)."""
    sec, frac = divmod(ns, 1_000_000_000)
    digits = f"{frac:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + (
        "." + digits if digits else "") + "Z"


class JsonLog:
    def __init__(self, uri: str):
        self.path, self.max_size, self.max_file = parse(uri)
        self.fd = self._open(0)
        self.size = os.fstat(self.fd).st_size

    def _open(self, extra: int) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                           | extra, 0o640)
        except OSError as e:
            raise LogError(f"open {self.path}: {e.strerror}") from None

    def stream(self, name: str) -> "Stream":
        return Stream(self, name)

    def write(self, stream: str, data: bytes) -> None:
        if self.fd < 0:
            return
        if self.max_size and self.size >= self.max_size:
            self._rotate()
        text = encode_basestring(data.decode("utf-8", "replace"))
        line = f'{{"log":{text},"stream":"{stream}","time":"{timestamp(time.time_ns())}"}}\n'
        raw = line.encode()
        try:
            os.write(self.fd, raw)
        except OSError:
            return  # a full disk loses log lines, never the container
        self.size += len(raw)

    def _rotate(self) -> None:
        try:
            if self.max_file < 2:
                os.ftruncate(self.fd, 0)
            else:
                for i in range(self.max_file - 1, 1, -1):
                    try:
                        os.rename(f"{self.path}.{i - 1}", f"{self.path}.{i}")
                    except FileNotFoundError:
                        pass
                os.rename(self.path, self.path + ".1")
                os.close(self.fd)
                self.fd = self._open(os.O_TRUNC)
        except (OSError, LogError):
            return  # keep writing where we are
        self.size = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Stream:
    """One output stream's line cutter in front of the shared log."""

    def __init__(self, log: JsonLog, name: str):
        self.log, self.name, self.rest = log, name, b""

    def feed(self, data: bytes) -> None:
        buf = self.rest + data if self.rest else data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self.log.write(self.name, buf[start:nl + 1])
            start = nl + 1
        while len(buf) - start >= PIECE:
            self.log.write(self.name, buf[start:start + PIECE])
            start += PIECE
        self.rest = buf[start:]

    def end(self) -> None:
        if self.rest:
            self.log.write(self.name, self.rest)
            self.rest = b""
