"""The daemon's log: one line per event, at a level, as text or JSON, with the namespace and
container ID where one applies.

Formats follow containerd's (logrus): ``text`` is ``key=value`` pairs,

    time="2026-12-05T08:10:47.123456Z" level=info msg="task exit" ns=default id=web exit_status=0

and ``json`` one object per line with the same keys. Levels are ``debug`` (adds every gRPC
request, see grpclog.py), ``info`` (start, stop, container and task events, shim messages),
``warn`` and ``error``. The level can be changed while the daemon runs (:func:`set_level`, on
SIGHUP from the config file).

Built on the stdlib's logging (a logger named ``pyrunc``), so a library's own warnings land in the
same stream; callers use :func:`log` with keyword fields rather than formatting messages.
"""
from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
NAMES = {v: k for k, v in LEVELS.items()} | {logging.CRITICAL: "error"}
LOGGER = logging.getLogger("pyrunc")


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + \
        f".{int(created % 1 * 1e6):06d}Z"


def _text_value(value) -> str:
    s = value if isinstance(value, str) else json.dumps(value) if isinstance(
        value, (list, dict)) else str(value)
    if s and all(c.isalnum() or c in "-_./:@+,=" for c in s):
        return s
    return json.dumps(s, ensure_ascii=False)


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str):
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        fields = {"time": _timestamp(record.created),
                  "level": NAMES.get(record.levelno, record.levelname.lower()),
                  "msg": record.getMessage()}
        for key, value in (getattr(record, "fields", None) or {}).items():
            if value is not None:   # a field never hides the line's own time, level or msg
                fields[f"fields.{key}" if key in ("time", "level", "msg") else key] = value
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        if self.json:
            return json.dumps(fields, ensure_ascii=False, default=str)
        return " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())


def setup(level: str = "info", fmt: str = "text", stream=None) -> None:
    """Send the daemon's log to ``stream`` (stderr) at ``level`` in ``fmt``; idempotent."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    """The daemon's own lines at ``level``; libraries' (grpc's debug chatter) at warn and up."""
    LOGGER.setLevel(LEVELS[level])
    logging.getLogger().setLevel(max(LEVELS[level], logging.WARNING))


def enabled(level: str) -> bool:
    return LOGGER.isEnabledFor(LEVELS[level])


def log(level: str, msg: str, /, exc_info=False, **fields) -> None:
    """One event: ``log("info", "task exit", ns=..., id=..., exit_status=0)``; fields whose
    value is None are left out; ``exc_info=True`` adds the current exception as ``error``."""
    if LOGGER.isEnabledFor(LEVELS[level]):
        LOGGER.log(LEVELS[level], msg, exc_info=exc_info, extra={"fields": fields})


def debug(msg: str, /, **fields) -> None:
    log("debug", msg, **fields)


def info(msg: str, /, **fields) -> None:
    log("info", msg, **fields)


def warn(msg: str, /, **fields) -> None:
    log("warn", msg, **fields)


def error(msg: str, /, **fields) -> None:
    log("error", msg, **fields)
