"""Logging in runc's formats.

Engines read a runtime's log, so entries look like runc's (logrus) output:

* text: ``time="2026-01-02T03:04:05Z" level=error msg="container \\"x\\" does not exist"``
* json: ``{"level":"error","msg":"...","time":"2026-01-02T03:04:05Z"}`` — one object per line;
  containerd's shim reads the last error from this file.

Without ``--log`` entries go to stderr.  With ``--log FILE`` they go to the file, and an error is
also printed to stderr as a plain line, as runc does, so a person at a terminal still sees it.
The file is opened lazily: a command that logs nothing never touches it.
"""

import sys
import time

from pyrunc.linux import os

_path: str | None = None
_json_format = False
_debug = False
_fd: int | None = None


def configure(path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
    global _path, _json_format, _debug, _fd
    _path, _json_format, _debug, _fd = path or None, fmt == "json", debug, None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _format(level: str, msg: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if _json_format:
        from pyrunc import jsonio
        return jsonio.dumps({"level": level, "msg": msg, "time": stamp}) + "\n"
    return f"time={_quote(stamp)} level={level} msg={_quote(msg)}\n"


def _write_file(line: str) -> None:
    global _fd
    try:
        if _fd is None:
            _fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.write(_fd, line.encode())
    except OSError as err:
        sys.stderr.write(f"pyrunc: log {_path}: {err.strerror}\n")


def _emit(level: str, msg: str) -> None:
    line = _format(level, msg)
    if _path is None:
        sys.stderr.write(line)
        sys.stderr.flush()
    else:
        _write_file(line)


_t0 = time.monotonic()


def debugging() -> bool:
    """Is --debug on?"""
    return _debug


def debug(msg: str) -> None:
    if _debug:
        _emit("debug", f"[{os.getpid()} +{(time.monotonic() - _t0) * 1000:.1f}ms] {msg}")


def info(msg: str) -> None:
    _emit("info", msg)


def warn(msg: str) -> None:
    _emit("warning", msg)


def error(msg: str) -> None:
    """Log an error; with a log file, also print the bare message on stderr."""
    _emit("error", msg)
    if _path is not None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
