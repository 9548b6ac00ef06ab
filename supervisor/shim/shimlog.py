"""The shim's log: one line per event in the shims' shared log file (``<state>/shim.log``, each
shim's stderr), which the daemon follows and copies into its own log with the level, namespace
and container ID (operate.py), so an operator reads one log.

A line is tab-separated, so the daemon splits it without a parser and a shim needs no json:

    pyrunc-shim <TAB> LEVEL <TAB> NAMESPACE <TAB> CONTAINER <TAB> PID <TAB> MESSAGE

with backslash, tab and newline in MESSAGE escaped (``\\\\``, ``\\t``, ``\\n``): a traceback is
one line. Each line is one write(2) to a file opened O_APPEND, so lines of concurrent shims never
interleave. Anything else in the file (an interpreter's crash report) is copied as it is.

Stdlib built-ins only: the shim imports this under ``python -S``.
"""
from __future__ import annotations

import os

TAG = "pyrunc-shim"
_identity = ["", ""]     # namespace, container ID: set when the shim takes its container


def set_container(namespace: str, cid: str) -> None:
    _identity[:] = [namespace, cid]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _unescape(text: str) -> str:
    out, it = [], iter(text)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            out.append({"t": "\t", "n": "\n", "\\": "\\"}.get(nxt, "\\" + nxt))
        else:
            out.append(ch)
    return "".join(out)


def write(level: str, message: str) -> None:
    """Append one line (level: debug, info, warn, error) to the shim's stderr."""
    line = "\t".join((TAG, level, _identity[0], _identity[1], str(os.getpid()),
                      _escape(message.rstrip("\n")))) + "\n"
    try:
        os.write(2, line.encode("utf-8", "replace"))
    except OSError:
        pass  # no log is no reason to fail a container


def parse(line: str) -> dict | None:
    """A line's fields (level, ns, id, pid, msg), or None if a shim did not write it."""
    parts = line.split("\t", 5)
    if len(parts) != 6 or parts[0] != TAG:
        return None
    _, level, ns, cid, pid, message = parts
    return {"level": level, "ns": ns, "id": cid, "pid": int(pid) if pid.isdigit() else None,
            "msg": _unescape(message)}
