"""A container's resource use, read straight from its cgroup files (v1 and v2).

The metrics exporter scrapes every running container; asking each shim to run ``RUNTIME events
--stats`` (a process per container per scrape) would cost far more than reading a handful of
files. The container's cgroups are those of its init process (``/proc/PID/cgroup``), whatever
cgroupsPath syntax made them; the hierarchies' mount points come from ``/proc/self/mountinfo``.

On cgroup v1 each controller has its own hierarchy (cpuacct, memory, pids, blkio); on v2 one
unified hierarchy has them all. A hybrid host (v1 controllers, an empty v2 mount beside them)
reads v1. What a host lacks (no pids controller, no I/O accounting) is left out, not reported
as zero. Values are in base units: seconds, bytes, counts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

UNLIMITED_V1 = 1 << 62          # memory.limit_in_bytes of an unlimited v1 cgroup is ~2^63


@dataclass
class Stats:
    cpu_seconds: float | None = None            # total CPU time, user + system
    memory_bytes: int | None = None             # current usage (v1 usage_in_bytes, v2 current)
    memory_limit_bytes: int | None = None       # None: unlimited
    pids: int | None = None
    pids_limit: int | None = None               # None: unlimited
    io: dict = field(default_factory=dict)      # read_bytes, write_bytes, reads, writes


def _mounts(mountinfo: str = "/proc/self/mountinfo") -> tuple[dict[str, str], str]:
    """({v1 controller: mount point}, the v2 mount point or '')."""
    v1, v2 = {}, ""
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = (right.split() + ["", "", ""])[:3]
            point = left.split()[4].replace("\\040", " ")
            if fstype == "cgroup2" and not v2:
                v2 = point
            elif fstype == "cgroup":
                for opt in options.split(","):
                    if opt in ("cpu", "cpuacct", "memory", "pids", "blkio", "freezer"):
                        v1.setdefault(opt, point)
    return v1, v2


_MOUNTS: tuple[dict[str, str], str] | None = None


def mounts() -> tuple[dict[str, str], str]:
    """The cgroup mount points, read once (they do not move while the daemon runs)."""
    global _MOUNTS
    if _MOUNTS is None:
        _MOUNTS = _mounts()
    return _MOUNTS


def cgroups_of(pid: int) -> tuple[dict[str, str], str]:
    """Directories of ``pid``'s cgroups: ({v1 controller: dir}, the v2 dir or '')."""
    v1_points, v2_point = mounts()
    v1, v2 = {}, ""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            rel = path.lstrip("/")
            if not controllers:
                v2 = os.path.join(v2_point, rel) if v2_point else ""
            for c in controllers.split(","):
                if c in v1_points:
                    v1[c] = os.path.join(v1_points[c], rel)
    return v1, v2


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _int(path: str) -> int | None:
    text = _read(path)
    return int(text) if text and text.lstrip("-").isdigit() else None


def _limit(path: str) -> int | None:
    """A limit file's value; None for 'max' (v2) or an effectively unlimited v1 value."""
    value = _int(path)
    return None if value is None or value >= UNLIMITED_V1 else value


def _keyed(path: str) -> dict[str, int]:
    out = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _v1_blkio(path: str) -> tuple[int, int] | None:
    """(read, write) summed over devices from a blkio ``MAJ:MIN Op N`` file."""
    text = _read(path)
    if text is None:
        return None
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                write += int(parts[2])
    return read, write


def read_v1(dirs: dict[str, str]) -> Stats:
    s = Stats()
    acct = dirs.get("cpuacct")
    if acct:
        usage = _int(os.path.join(acct, "cpuacct.usage"))
        s.cpu_seconds = usage / 1e9 if usage is not None else None
    mem = dirs.get("memory")
    if mem:
        s.memory_bytes = _int(os.path.join(mem, "memory.usage_in_bytes"))
        s.memory_limit_bytes = _limit(os.path.join(mem, "memory.limit_in_bytes"))
    pids = dirs.get("pids")
    if pids:
        s.pids = _int(os.path.join(pids, "pids.current"))
        s.pids_limit = _limit(os.path.join(pids, "pids.max"))
    blkio = dirs.get("blkio")
    if blkio:
        nbytes = _v1_blkio(os.path.join(blkio, "blkio.throttle.io_service_bytes"))
        ops = _v1_blkio(os.path.join(blkio, "blkio.throttle.io_serviced"))
        if nbytes is not None:
            s.io["read_bytes"], s.io["write_bytes"] = nbytes
        if ops is not None:
            s.io["reads"], s.io["writes"] = ops
    return s


def read_v2(d: str) -> Stats:
    s = Stats()
    cpu = _keyed(os.path.join(d, "cpu.stat"))
    if "usage_usec" in cpu:
        s.cpu_seconds = cpu["usage_usec"] / 1e6
    s.memory_bytes = _int(os.path.join(d, "memory.current"))
    s.memory_limit_bytes = _limit(os.path.join(d, "memory.max"))
    s.pids = _int(os.path.join(d, "pids.current"))
    s.pids_limit = _limit(os.path.join(d, "pids.max"))
    text = _read(os.path.join(d, "io.stat"))
    if text is not None:
        totals = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
        for line in text.splitlines():
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                if key in totals and value.isdigit():
                    totals[key] += int(value)
        s.io = {"read_bytes": totals["rbytes"], "write_bytes": totals["wbytes"],
                "reads": totals["rios"], "writes": totals["wios"]}
    return s


def for_pid(pid: int) -> Stats | None:
    """The stats of ``pid``'s cgroups (v1 when it has v1 controllers), or None if it is gone."""
    try:
        v1, v2 = cgroups_of(pid)
    except (OSError, ValueError):
        return None
    if v1:
        return read_v1(v1)
    return read_v2(v2) if v2 else Stats()
