"""memory controller: ``linux.resources.memory``.

v2: limit → memory.max, reservation → memory.low, swap → memory.swap.max.  The spec's ``swap``
is a memory+swap limit (the v1 memsw meaning), v2 limits swap alone, so
``memory.swap.max = swap - limit``; -1 means ``max``.  An unlimited memory limit with no swap
value makes swap unlimited too.  swappiness, disableOOMKiller and finite kernel limits have no
v2 file: asking for them is an error.

v1: memory.limit_in_bytes, memory.memsw.limit_in_bytes, memory.soft_limit_in_bytes,
memory.kmem[.tcp].limit_in_bytes, memory.swappiness, memory.oom_control, memory.use_hierarchy.
The kernel keeps ``limit <= memsw``, so the two are written in the order that keeps it true.
"""



from ..errors import CgroupError
from . import files

# for the annotations only (no import at run time: this module is on the hot path)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resources import Memory


F = "linux.resources.memory"


def check(m: "Memory") -> None:
    """Driver-independent consistency of limit and swap."""
    if m.swap is not None and m.swap != -1 and m.limit is not None:
        if m.limit == -1:
            raise CgroupError(f"{F}.swap: a memory+swap limit needs a memory limit (limit is -1)")
        if m.swap < m.limit:
            raise CgroupError(f"{F}.swap: memory+swap limit {m.swap} is lower than "
                              f"the memory limit {m.limit}")


def swap_max_v2(swap: int | None, limit: int | None, current_max: str | None = None):
    """The memory.swap.max value for the spec's memory+swap ``swap`` (None: leave alone).

    ``current_max`` is memory.max as it is now, used when an update gives swap alone."""
    if swap is None:
        return "max" if limit == -1 else None
    if swap == -1:
        return "max"
    if limit is None:
        limit = -1 if current_max in (None, "max") else int(current_max)
    if limit == -1:
        raise CgroupError(f"{F}.swap: a memory+swap limit needs a memory limit")
    if swap < limit:
        raise CgroupError(f"{F}.swap: memory+swap limit {swap} is lower than "
                          f"the memory limit {limit}")
    return swap - limit


def _v2_value(n: int) -> str:
    return "max" if n == -1 else str(n)


def set_v2(d: str, m: "Memory", update: bool = False) -> None:
    check(m)
    if m.swappiness is not None:
        raise CgroupError(f"{F}.swappiness: not supported on cgroup v2")
    if m.disable_oom_killer:
        raise CgroupError(f"{F}.disableOOMKiller: not supported on cgroup v2")
    if m.use_hierarchy is False:
        raise CgroupError(f"{F}.useHierarchy: cgroup v2 accounting is always hierarchical")
    for key, value in (("kernel", m.kernel), ("kernelTCP", m.kernel_tcp)):
        if value not in (None, -1):
            raise CgroupError(f"{F}.{key}: kernel memory limits are not supported on cgroup v2")
    swap = swap_max_v2(m.swap, m.limit, files.read_or(d, "memory.max") if update else None)
    if swap is not None and not files.exists(d, "memory.swap.max"):
        if swap not in ("max", 0):
            raise CgroupError(f"{F}.swap: swap accounting is not enabled in this kernel")
        swap = None
    if m.limit is not None and m.limit != -1 and update and m.check_before_update:
        usage = files.read_int(d, "memory.current")
        if m.limit < usage:
            raise CgroupError(f"{F}.limit: {m.limit} is below the current usage {usage} "
                              "(checkBeforeUpdate)")
    if m.limit is not None:
        files.write(d, "memory.max", _v2_value(m.limit), f"{F}.limit")
    if swap is not None:
        files.write(d, "memory.swap.max", swap, f"{F}.swap")
    if m.reservation is not None:
        files.write(d, "memory.low", _v2_value(m.reservation), f"{F}.reservation")


def set_v1(d: str, m: "Memory", update: bool = False) -> None:
    check(m)
    has_memsw = files.exists(d, "memory.memsw.limit_in_bytes")
    swap = m.swap
    if swap is None and m.limit == -1 and has_memsw:
        swap = -1
    if swap is not None and not has_memsw:
        if swap != -1:
            raise CgroupError(f"{F}.swap: swap accounting is not enabled in this kernel")
        swap = None
    if m.limit is not None and swap is not None:
        current = files.read_int(d, "memory.memsw.limit_in_bytes")
        new_limit = files.MAX_U64 if m.limit == -1 else m.limit
        if new_limit > current:          # raising the limit: raise memsw first
            files.write(d, "memory.memsw.limit_in_bytes", swap, f"{F}.swap")
            files.write(d, "memory.limit_in_bytes", m.limit, f"{F}.limit")
        else:
            files.write(d, "memory.limit_in_bytes", m.limit, f"{F}.limit")
            files.write(d, "memory.memsw.limit_in_bytes", swap, f"{F}.swap")
    elif m.limit is not None:
        files.write(d, "memory.limit_in_bytes", m.limit, f"{F}.limit")
    elif swap is not None:
        files.write(d, "memory.memsw.limit_in_bytes", swap, f"{F}.swap")
    if m.reservation is not None:
        files.write(d, "memory.soft_limit_in_bytes", m.reservation, f"{F}.reservation")
    if m.kernel is not None:
        files.write(d, "memory.kmem.limit_in_bytes", m.kernel, f"{F}.kernel")
    if m.kernel_tcp is not None:
        files.write(d, "memory.kmem.tcp.limit_in_bytes", m.kernel_tcp, f"{F}.kernelTCP")
    if m.swappiness is not None:
        files.write(d, "memory.swappiness", m.swappiness, f"{F}.swappiness")
    if m.disable_oom_killer is not None:
        files.write(d, "memory.oom_control", int(m.disable_oom_killer), f"{F}.disableOOMKiller")
    if m.use_hierarchy is not None:
        files.write(d, "memory.use_hierarchy", int(m.use_hierarchy), f"{F}.useHierarchy")


# --- OOM and stats ----------------------------------------------------------------------------

def oom_kills_v2(d: str) -> int:
    return files.flat_keyed(d, "memory.events").get("oom_kill", 0)


def oom_kills_v1(d: str) -> int:
    return files.flat_keyed(d, "memory.oom_control").get("oom_kill", 0)


def _entry(limit: int, usage: int = 0, max_usage: int = 0, failcnt: int = 0) -> dict:
    """runc's MemoryEntry: limit and failcnt always present, usage/max omitted when zero."""
    e = {"limit": limit}
    if usage:
        e["usage"] = usage
    if max_usage:
        e["max"] = max_usage
    e["failcnt"] = failcnt
    return e


def stats_v2(d: str) -> dict:
    raw = files.flat_keyed(d, "memory.stat")
    usage = files.read_int(d, "memory.current")
    events = files.flat_keyed(d, "memory.events")
    out = {}
    if raw.get("file"):
        out["cache"] = raw["file"]
    out["usage"] = _entry(files.limit_value(files.read_or(d, "memory.max")), usage,
                          files.read_int(d, "memory.peak"), events.get("max", 0))
    if files.exists(d, "memory.swap.current"):
        # runc reports v2 swap as memory+swap, the v1 meaning
        swap_max = files.limit_value(files.read_or(d, "memory.swap.max"))
        mem_max = files.limit_value(files.read_or(d, "memory.max"))
        limit = files.MAX_U64 if files.MAX_U64 in (swap_max, mem_max) else swap_max + mem_max
        out["swap"] = _entry(limit, usage + files.read_int(d, "memory.swap.current"))
    out["kernel"] = _entry(0, raw.get("kernel", 0) or raw.get("kernel_stack", 0))
    out["kernelTCP"] = _entry(0, raw.get("sock", 0))
    if raw:
        out["raw"] = raw
    return out


def stats_v1(d: str) -> dict:
    def entry(prefix: str) -> dict:
        return _entry(files.read_int(d, f"{prefix}.limit_in_bytes"),
                      files.read_int(d, f"{prefix}.usage_in_bytes"),
                      files.read_int(d, f"{prefix}.max_usage_in_bytes"),
                      files.read_int(d, f"{prefix}.failcnt"))
    raw = files.flat_keyed(d, "memory.stat")
    out = {}
    if raw.get("cache"):
        out["cache"] = raw["cache"]
    out["usage"] = entry("memory")
    out["swap"] = entry("memory.memsw")
    out["kernel"] = entry("memory.kmem")
    out["kernelTCP"] = entry("memory.kmem.tcp")
    if raw:
        out["raw"] = raw
    return out
