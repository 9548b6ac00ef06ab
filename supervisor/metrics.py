"""Resource statistics: the runtime's ``events --stats`` JSON as io.containerd.cgroups.v1.Metrics.

runc (and runc-compatible runtimes) report cgroup statistics in libcontainer's JSON layout; ctr and
other containerd clients expect containerd's cgroup v1 protobuf. Only the fields both sides have
are carried over.
"""
from __future__ import annotations

from supervisor.gen.containerd.cgroups.v1 import metrics_pb2 as m

_MEMORY_RAW = ("cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "unevictable",
               "inactive_anon", "active_anon", "inactive_file", "active_file",
               "hierarchical_memory_limit", "total_cache", "total_rss")
_RAW_RENAMES = {"pgpgin": "pg_pg_in", "pgpgout": "pg_pg_out", "pgfault": "pg_fault",
                "pgmajfault": "pg_maj_fault", "hierarchical_memsw_limit": "hierarchical_swap_limit"}


def _u(value) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _entry(d: dict | None) -> m.MemoryEntry:
    d = d or {}
    return m.MemoryEntry(limit=_u(d.get("limit")), usage=_u(d.get("usage")),
                         max=_u(d.get("max")), failcnt=_u(d.get("failcnt")))


def _memory(d: dict) -> m.MemoryStat:
    raw = d.get("raw") or {}
    stat = m.MemoryStat(usage=_entry(d.get("usage")), swap=_entry(d.get("swap")),
                        kernel=_entry(d.get("kernel")), kernel_tcp=_entry(d.get("kernelTCP")))
    for name in _MEMORY_RAW:
        setattr(stat, name, _u(raw.get(name)))
    for src, dst in _RAW_RENAMES.items():
        setattr(stat, dst, _u(raw.get(src)))
    if not stat.cache:
        stat.cache = _u(d.get("cache"))
    return stat


def _cpu(d: dict) -> m.CPUStat:
    usage = d.get("usage") or {}
    thr = d.get("throttling") or {}
    return m.CPUStat(
        usage=m.CPUUsage(total=_u(usage.get("total")), kernel=_u(usage.get("kernel")),
                         user=_u(usage.get("user")),
                         per_cpu=[_u(v) for v in usage.get("percpu") or []]),
        throttling=m.Throttle(periods=_u(thr.get("periods")),
                              throttled_periods=_u(thr.get("throttled_periods")),
                              throttled_time=_u(thr.get("throttled_time"))))


def from_runtime_stats(data: dict) -> m.Metrics:
    out = m.Metrics()
    pids = data.get("pids") or {}
    out.pids.CopyFrom(m.PidsStat(current=_u(pids.get("current")), limit=_u(pids.get("limit"))))
    out.cpu.CopyFrom(_cpu(data.get("cpu") or {}))
    out.memory.CopyFrom(_memory(data.get("memory") or {}))
    for size, h in (data.get("hugetlb") or {}).items():
        out.hugetlb.append(m.HugetlbStat(usage=_u(h.get("usage")), max=_u(h.get("max")),
                                         failcnt=_u(h.get("failcnt")), pagesize=size))
    return out
