"""cpu controller (and cpuacct on v1): ``linux.resources.cpu`` except cpus/mems (see cpuset.py).

v2: shares → cpu.weight with the usual linear map of [2, 262144] onto [1, 10000]
(``1 + (shares - 2) * 9999 // 262142``: 2 → 1, 1024 → 39, 262144 → 10000); quota/period →
cpu.max (``max`` for -1; a missing half keeps the current value); burst → cpu.max.burst;
idle → cpu.idle.  The realtime scheduler has no v2 interface: realtime values are an error.

v1: cpu.shares, cpu.cfs_period_us, cpu.cfs_quota_us, cpu.cfs_burst_us, cpu.rt_period_us,
cpu.rt_runtime_us, cpu.idle.  Usage comes from cpuacct.
"""



from ..linux import os
from ..errors import CgroupError
from . import files

# for the annotations only (no import at run time: this module is on the hot path)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resources import CPU


F = "linux.resources.cpu"
SHARES_MIN, SHARES_MAX = 2, 262144
NS_PER_US = 1000


def shares_to_weight(shares: int) -> int:
    if not SHARES_MIN <= shares <= SHARES_MAX:
        raise CgroupError(f"{F}.shares: {shares} is out of range [{SHARES_MIN}, {SHARES_MAX}]")
    return 1 + (shares - SHARES_MIN) * 9999 // (SHARES_MAX - SHARES_MIN)


def cpu_max(quota: int | None, period: int | None, current: str | None) -> str | None:
    """The cpu.max line for ``quota``/``period`` (None: keep the current half)."""
    if quota is None and period is None:
        return None
    cur_quota, _, cur_period = (current or "max 100000").partition(" ")
    q = cur_quota if quota is None else ("max" if quota == -1 else str(quota))
    p = (cur_period or "100000") if period is None else str(period)
    return f"{q} {p}"


def set_v2(d: str, c: "CPU", update: bool = False) -> None:
    for key, value in (("realtimeRuntime", c.realtime_runtime),
                       ("realtimePeriod", c.realtime_period)):
        if value:
            raise CgroupError(f"{F}.{key}: the realtime scheduler cannot be limited on cgroup v2")
    if c.shares is not None:
        files.write(d, "cpu.weight", shares_to_weight(c.shares), f"{F}.shares")
    line = cpu_max(c.quota, c.period, files.read_or(d, "cpu.max"))
    if line is not None:
        field = f"{F}.quota" if c.quota is not None else f"{F}.period"
        files.write(d, "cpu.max", line, field)
    if c.burst is not None:
        files.write(d, "cpu.max.burst", c.burst, f"{F}.burst")
    if c.idle is not None:
        files.write(d, "cpu.idle", c.idle, f"{F}.idle")


def set_v1(d: str, c: "CPU", update: bool = False) -> None:
    if c.shares is not None:
        files.write(d, "cpu.shares", c.shares, f"{F}.shares")
        got = files.read_int(d, "cpu.shares")
        if got != c.shares:        # the kernel clamps instead of failing
            raise CgroupError(f"{F}.shares: {c.shares} is out of range (the kernel set {got})")
    # period and quota constrain each other (and the parent's): if the period cannot be set
    # first, set the quota first.
    writes = []
    if c.period is not None:
        writes.append(("cpu.cfs_period_us", c.period, f"{F}.period"))
    if c.quota is not None:
        writes.append(("cpu.cfs_quota_us", c.quota, f"{F}.quota"))
    _write_pair(d, writes)
    if c.burst is not None:
        files.write(d, "cpu.cfs_burst_us", c.burst, f"{F}.burst")
    rt = []
    if c.realtime_period is not None:
        rt.append(("cpu.rt_period_us", c.realtime_period, f"{F}.realtimePeriod"))
    if c.realtime_runtime is not None:
        rt.append(("cpu.rt_runtime_us", c.realtime_runtime, f"{F}.realtimeRuntime"))
    _write_pair(d, rt)
    if c.idle is not None:
        files.write(d, "cpu.idle", c.idle, f"{F}.idle")


def _write_pair(d: str, writes: list) -> None:
    if len(writes) == 2:
        try:
            files.write(d, *writes[0])
        except CgroupError:
            files.write(d, *writes[1])
            files.write(d, *writes[0])
            return
        files.write(d, *writes[1])
    elif writes:
        files.write(d, *writes[0])


# --- stats ------------------------------------------------------------------------------------

def _throttling(periods: int, throttled: int, time_ns: int) -> dict:
    out = {}
    if periods:
        out["periods"] = periods
    if throttled:
        out["throttledPeriods"] = throttled
    if time_ns:
        out["throttledTime"] = time_ns
    return out


def stats_v2(d: str) -> dict:
    st = files.flat_keyed(d, "cpu.stat")
    usage = {}
    if st.get("usage_usec"):
        usage["total"] = st["usage_usec"] * NS_PER_US
    usage["kernel"] = st.get("system_usec", 0) * NS_PER_US
    usage["user"] = st.get("user_usec", 0) * NS_PER_US
    return {"usage": usage,
            "throttling": _throttling(st.get("nr_periods", 0), st.get("nr_throttled", 0),
                                      st.get("throttled_usec", 0) * NS_PER_US)}


def stats_v1(cpu_dir: str | None, cpuacct_dir: str | None) -> dict:
    usage = {}
    if cpuacct_dir:
        total = files.read_int(cpuacct_dir, "cpuacct.usage")
        if total:
            usage["total"] = total
        percpu = [int(x) for x in (files.read_or(cpuacct_dir, "cpuacct.usage_percpu") or "").split()]
        if percpu:
            usage["percpu"] = percpu
        usage.update(_percpu_modes(cpuacct_dir))
        # cpuacct.stat counts USER_HZ ticks
        hz = os.sysconf("SC_CLK_TCK")
        st = files.flat_keyed(cpuacct_dir, "cpuacct.stat")
        usage["kernel"] = st.get("system", 0) * 1_000_000_000 // hz
        usage["user"] = st.get("user", 0) * 1_000_000_000 // hz
    else:
        usage.update(kernel=0, user=0)
    throttling = {}
    if cpu_dir:
        st = files.flat_keyed(cpu_dir, "cpu.stat")
        throttling = _throttling(st.get("nr_periods", 0), st.get("nr_throttled", 0),
                                 st.get("throttled_time", 0))
    return {"usage": usage, "throttling": throttling}


def _percpu_modes(cpuacct_dir: str) -> dict:
    """``percpu_kernel`` and ``percpu_user`` (ns) from cpuacct.usage_all, as runc reports them:
    a header line ``cpu user system``, then one line per CPU."""
    lines = (files.read_or(cpuacct_dir, "cpuacct.usage_all") or "").splitlines()[1:]
    user, kernel = [], []
    for line in lines:
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            user.append(int(fields[1]))
            kernel.append(int(fields[2]))
    return {"percpu_kernel": kernel, "percpu_user": user} if lines and user else {}


def usage_ns(stats: dict) -> int:
    """Total CPU time from a stats() dict (tests and `events` use it)."""
    return stats.get("cpu", {}).get("usage", {}).get("total", 0)

