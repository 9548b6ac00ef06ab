"""``logs``: a container's log, read as ``docker logs`` reads json-file logs.

The shim writes the log (supervisor/shim/jsonlog.py): one JSON object per line of output with
its stream and time, in ``PATH`` and, once rotated, ``PATH.1`` (newer) ... ``PATH.N`` (older).
This reads them oldest first, keeps entries from ``--since`` up to ``--until``, the last
``--tail`` of those, prints each to the stream it came from (with ``-t``, after its time as
Docker prints it: RFC3339 with nine fraction digits), and with ``-f`` follows the current file,
moving to the new one when the shim rotates it, until the container has stopped (its writers
are closed then, so nothing written before the exit is lost).

A line that is not JSON (a log written raw by an older client) is printed as it is.
"""
from __future__ import annotations

import calendar
import collections
import os
import re
import sys
import time

from supervisor.shim.jsonlog import PREFIX

_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)(?:T(\d\d)(?::(\d\d)(?::(\d\d)(?:\.(\d+))?)?)?)?"
                   r"(Z|z|[+-]\d\d:\d\d)?$")


class LogError(Exception):
    pass


def log_uri(path: str, opts: dict) -> str:
    """The ``io.pyrunc/log`` label for a log at ``path`` with ``--log-opt`` values."""
    from supervisor.ctlopts import size
    query = []
    if opts.get("max-size"):
        query.append(f"max-size={size(opts['max-size'])}")
    if opts.get("max-file"):
        query.append(f"max-file={int(opts['max-file'])}")
    return PREFIX + path + ("?" + "&".join(query) if query else "")


def log_files(path: str) -> list[str]:
    """The rotated files, oldest first (the current file not included)."""
    d, base = os.path.split(path)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    nums = sorted((int(n[len(base) + 1:]) for n in names
                   if n.startswith(base + ".") and n[len(base) + 1:].isdigit()), reverse=True)
    return [f"{path}.{n}" for n in nums]


def remove_log(path: str) -> None:
    for f in log_files(path) + [path]:
        try:
            os.unlink(f)
        except FileNotFoundError:
            pass


# -- times ---------------------------------------------------------------------------------------

def parse_time(value: str, what: str, now_ns: int | None = None) -> int | None:
    """Docker's --since/--until value in ns since the epoch: a Go duration before now (10m,
    1h30m), an RFC3339-like time (no zone: local time), or Unix seconds[.fraction]."""
    if not value:
        return None
    now_ns = time.time_ns() if now_ns is None else now_ns
    if value != "0" and _DURATION.match(value):
        sign = -1 if value.startswith("-") else 1
        ns = sum(int(float(n) * _UNIT_NS[u]) for n, u in _PART.findall(value))
        return now_ns - sign * ns
    m = _TIME.match(value)
    if m:
        y, mo, d, hh, mm, ss, frac, zone = m.groups()
        fields = (int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        try:
            if zone:
                secs = calendar.timegm(fields + (0, 0, 0))
                if zone not in "Zz":
                    off = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
                    secs -= off if zone[0] == "+" else -off
            else:
                secs = int(time.mktime(fields + (0, 0, -1)))
        except (ValueError, OverflowError):
            raise LogError(f'invalid value for "{what}": parsing time "{value}": out of range') \
                from None
        return secs * 1_000_000_000 + int(((frac or "") + "000000000")[:9])
    if "-" not in value and re.match(r"^\d+(\.\d+)?$", value):
        sec, _, frac = value.partition(".")
        return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
    raise LogError(f'invalid value for "{what}": failed to parse value as time or duration: '
                   f'"{value}"')


_epoch_of_second: dict[str, int] = {}


def entry_ns(stamp: str) -> int:
    """ns since the epoch of a log entry's time (RFC3339Nano, UTC)."""
    head = stamp[:19]
    secs = _epoch_of_second.get(head)
    if secs is None:
        secs = calendar.timegm((int(head[:4]), int(head[5:7]), int(head[8:10]),
                                int(head[11:13]), int(head[14:16]), int(head[17:19]), 0, 0, 0))
        if len(_epoch_of_second) > 4096:
            _epoch_of_second.clear()
        _epoch_of_second[head] = secs
    frac = stamp[20:-1] if len(stamp) > 20 and stamp[19] == "." else ""
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def shown_time(stamp: str) -> str:
    """Docker's ``-t`` form: nine fraction digits always."""
    frac = stamp[20:-1] if len(stamp) > 20 and stamp[19] == "." else ""
    return f"{stamp[:19]}.{(frac + '000000000')[:9]}Z"


# -- reading ---------------------------------------------------------------------------------------

def _entry(line: bytes):
    """(stream, text bytes, time or "") of one line of the file."""
    import json
    try:
        d = json.loads(line)
        return d.get("stream", "stdout"), d.get("log", "").encode(), d.get("time", "")
    except (ValueError, AttributeError):
        return "stdout", line, ""


class _Printer:
    def __init__(self, out, err, timestamps: bool, since, until):
        self.out, self.err = out, err
        self.timestamps, self.since, self.until = timestamps, since, until

    def keep(self, entry) -> bool:
        if (self.since is None and self.until is None) or not entry[2]:
            return True
        t = entry_ns(entry[2])
        return (self.since is None or t >= self.since) and (self.until is None or t <= self.until)

    def show(self, entry) -> None:
        stream, text, stamp = entry
        dst = self.err if stream == "stderr" else self.out
        if self.timestamps and stamp:
            text = shown_time(stamp).encode() + b" " + text
        dst.write(text)
        dst.flush()


def _lines(f, pending: bytearray):
    """Complete lines read from ``f`` (a half-written last line waits in ``pending``)."""
    data = f.read()
    if not data:
        return []
    pending += data
    cut = pending.rfind(b"\n")
    if cut < 0:
        return []
    lines = bytes(pending[:cut]).split(b"\n")
    del pending[:cut + 1]
    return lines


def follow(path: str, tail: str = "all", keep_going: bool = False, running=lambda: False,
           out=None, poll: float = 0.1, timestamps: bool = False, since: str = "",
           until: str = "", err=None) -> int:
    printer = _Printer(out or sys.stdout.buffer, err or sys.stderr.buffer, timestamps,
                       parse_time(since, "since"), parse_time(until, "until"))
    count = int(tail) if tail.lstrip("-").isdigit() else -1  # docker: anything else is all
    try:
        cur = open(path, "rb")
    except FileNotFoundError:
        return 0  # created but never started: no output yet
    pending = bytearray()
    with cur:
        kept = collections.deque(maxlen=count) if count >= 0 else collections.deque()
        for name in log_files(path):
            try:
                with open(name, "rb") as f:
                    lines = f.read().split(b"\n")
            except FileNotFoundError:
                continue
            kept.extend(e for e in map(_entry, filter(None, lines)) if printer.keep(e))
        kept.extend(e for e in map(_entry, filter(None, _lines(cur, pending)))
                    if printer.keep(e))
        for e in kept:
            printer.show(e)
        if not keep_going:
            return 0
        return _follow(path, cur, pending, printer, running, poll)


def _follow(path, cur, pending, printer, running, poll) -> int:
    while True:
        lines = _lines(cur, pending)
        for e in map(_entry, filter(None, lines)):
            if printer.keep(e):
                printer.show(e)
        if lines:
            continue
        try:
            rotated = os.stat(path).st_ino != os.fstat(cur.fileno()).st_ino
        except FileNotFoundError:
            rotated = False
        if rotated:  # the shim moved this file to PATH.1: go on with the new one
            cur.close()
            cur = open(path, "rb")
            pending.clear()
            continue
        if not running():
            for e in map(_entry, filter(None, _lines(cur, pending) + [bytes(pending)])):
                if printer.keep(e):
                    printer.show(e)
            cur.close()
            return 0
        time.sleep(poll)
