"""Commands on a live container's cgroup: pause, resume, ps, events, update.

Each loads the container's record, checks the move is allowed in its status (a paused container
refuses start and exec; only a running one can be paused, only a paused one resumed), and asks
the cgroup manager (:mod:`pyrunc.cgroups`) saved in the record.  Output shapes are runc's:
``ps --format json`` prints the list of host pids; ``events`` prints one JSON object per line,
``{"type": "stats", "id": ..., "data": {...}}`` and ``{"type": "oom", "id": ...}``.
"""

import sys
import time

from pyrunc import jsonio, state
from pyrunc.linux import os
from pyrunc.errors import ConfigError, StateError


def _manager(c):
    if not c.cgroup:
        why = ""
        if os.geteuid() != 0:
            why = " (rootless: no cgroup was delegated to this user; see docs/rootless.md)"
        raise StateError(f'container "{c.id}" has no cgroup{why}')
    return c.cgroup_manager()


def pause(root: str, container_id: str) -> None:
    c = state.load(root, container_id, lock=True)
    try:
        c.require("pause")
        _manager(c).freeze()
    finally:
        c.close()


def resume(root: str, container_id: str) -> None:
    c = state.load(root, container_id, lock=True)
    try:
        c.require("resume")
        _manager(c).thaw()
    finally:
        c.close()


def pids(root: str, container_id: str) -> list[int]:
    c = state.load(root, container_id)
    try:
        if c.status() == "stopped":
            return []
        if not c.cgroup:    # (rootless without a cgroup) its pid namespace's processes
            from pyrunc import container
            return sorted(container._pids_in_pidns(c))
        return sorted(_manager(c).pids())
    finally:
        c.close()


def ps(root: str, container_id: str, fmt: str, ps_args: list[str]) -> str:
    """runc's ps: ``json`` → the pids; ``table`` → the host's ``ps`` output, our lines only."""
    found = pids(root, container_id)
    if fmt == "json":
        return jsonio.dumps(found)
    if fmt != "table":
        raise ConfigError(f"ps: invalid format {fmt!r} (table or json)")
    import subprocess
    try:
        out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise StateError(f"ps: running ps failed: {err}") from None
    lines = out.splitlines()
    header = lines[0] if lines else ""
    try:
        column = header.split().index("PID")
    except ValueError:
        raise StateError("ps: the ps output has no PID column") from None
    wanted = set(map(str, found))
    return "\n".join([header] + [l for l in lines[1:]
                                 if len(l.split()) > column and l.split()[column] in wanted])


def parse_duration(text: str) -> float:
    """Go-style durations: ``5s``, ``500ms``, ``1m30s``, ``2h``."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number, i = 0.0, "", 0
    if not text:
        raise ConfigError("events: empty --interval")
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "s", "m", "h") if text.startswith(u, i)),
                    None)
        if unit is None or not number:
            raise ConfigError(f"events: invalid --interval {text!r}")
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise ConfigError(f"events: invalid --interval {text!r} (a unit is missing)")
    if total <= 0:
        raise ConfigError(f"events: --interval {text!r} must be positive")
    return total


def events(root: str, container_id: str, stats_once: bool, interval: float) -> None:
    """Print events as JSON lines until the container stops (or one stats event)."""
    c = state.load(root, container_id)
    try:
        if c.status() == "stopped":
            raise StateError(f'container "{container_id}" is not running')
        mgr = _manager(c)
        if stats_once:
            _emit({"type": "stats", "id": container_id, "data": mgr.stats()})
            return
        ooms = mgr.oom_kill_count()
        next_stats = time.monotonic()
        while c.status() != "stopped":
            count = mgr.oom_kill_count()
            if count > ooms:
                _emit({"type": "oom", "id": container_id})
                ooms = count
            if time.monotonic() >= next_stats:
                _emit({"type": "stats", "id": container_id, "data": mgr.stats()})
                next_stats += interval
            time.sleep(min(0.2, interval))
    finally:
        c.close()


def _emit(event: dict) -> None:
    sys.stdout.write(jsonio.dumps(event) + "\n")
    sys.stdout.flush()


# --- update -------------------------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def parse_size(flag: str, text: str) -> int:
    """``512m``, ``1g``, ``1048576`` or ``-1`` (unlimited), as runc's update takes them."""
    t = text.strip().lower()
    if t == "-1":
        return -1
    num = t.rstrip("bkmgt")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        raise ConfigError(f"update: {flag}: invalid size {text!r}") from None
    if unit not in _SIZE_UNITS or value < 0:
        raise ConfigError(f"update: {flag}: invalid size {text!r}")
    return int(value * _SIZE_UNITS[unit])


def _int(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"update: {flag}: {text!r} is not a number") from None


# flag -> (section, key, parser)
UPDATE_FLAGS = {
    "memory": ("memory", "limit", parse_size),
    "memory-reservation": ("memory", "reservation", parse_size),
    "memory-swap": ("memory", "swap", parse_size),
    "kernel-memory": ("memory", "kernel", parse_size),
    "kernel-memory-tcp": ("memory", "kernelTCP", parse_size),
    "cpu-shares": ("cpu", "shares", _int),
    "cpu-share": ("cpu", "shares", _int),
    "cpu-quota": ("cpu", "quota", _int),
    "cpu-period": ("cpu", "period", _int),
    "cpu-rt-period": ("cpu", "realtimePeriod", _int),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", _int),
    "cpuset-cpus": ("cpu", "cpus", lambda f, t: t),
    "cpuset-mems": ("cpu", "mems", lambda f, t: t),
    "pids-limit": ("pids", "limit", _int),
    "blkio-weight": ("blockIO", "weight", _int),
}


def resources_from_flags(flags: dict, resources_file: str) -> dict:
    """The linux.resources object an update asks for: ``-r FILE`` (``-`` for stdin) or flags."""
    if resources_file:
        try:
            if resources_file == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(resources_file, "rb") as f:
                    data = f.read()
            doc = jsonio.loads(data)
        except OSError as err:
            raise ConfigError(f"update: -r {resources_file}: {err.strerror}") from None
        except ValueError as err:
            raise ConfigError(f"update: -r {resources_file}: invalid JSON: {err}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"update: -r {resources_file}: must be a JSON object")
        return doc
    out: dict = {}
    for flag, (section, key, parse) in UPDATE_FLAGS.items():
        text = flags.get(flag)
        if text not in (None, ""):
            out.setdefault(section, {})[key] = parse(f"--{flag}", text)
    if not out:
        raise ConfigError("update: nothing to update (give -r FILE or a limit flag)")
    return out


def update(root: str, container_id: str, resources: dict) -> None:
    c = state.load(root, container_id, lock=True)
    try:
        c.require("update")
        _manager(c).update(resources)
        # record what is now in force, so that state (and a later update) knows it
        linux = c.config.setdefault("linux", {})
        merged = dict(linux.get("resources") or {})
        for section, values in resources.items():
            if isinstance(values, dict) and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], **values}
            else:
                merged[section] = values
        linux["resources"] = merged
        c.save()
    finally:
        c.close()

