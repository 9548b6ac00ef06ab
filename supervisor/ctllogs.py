"""``logs``: print a container's log file, optionally its last N lines, optionally following it.

The file is the one the shim writes the container's output to (``file://`` stdio). Following
polls the file and stops at the end of the data once the container has stopped (its writers are
closed then), so no output written just before the exit is lost.
"""
from __future__ import annotations

import os
import sys
import time


class LogError(Exception):
    pass


def _tail_offset(f, lines: int) -> int:
    """Offset of the start of the last ``lines`` lines (a trailing newline ends the last)."""
    end = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    pos, seen, block = end, 0, 8192
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step)
        if pos + step == end and data.endswith(b"\n"):
            data = data[:-1]
        for i in range(len(data) - 1, -1, -1):
            if data[i] == 0x0A:
                seen += 1
                if seen == lines:
                    return pos + i + 1
    return 0


def follow(path: str, tail: str = "all", keep_going: bool = False, running=lambda: False,
           out=None, poll: float = 0.1) -> int:
    out = out or sys.stdout.buffer
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise LogError(f'invalid value for "tail": "{tail}"')
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0  # created but never started: no output yet
    with f:
        if tail != "all" and int(tail) >= 0:
            f.seek(_tail_offset(f, int(tail)))
        while True:
            data = f.read(65536)
            if data:
                out.write(data)
                out.flush()
                continue
            if not keep_going:
                return 0
            if not running():
                out.write(f.read())
                out.flush()
                return 0
            time.sleep(poll)
