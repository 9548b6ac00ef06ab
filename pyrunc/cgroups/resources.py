"""``linux.resources`` parsed once into typed records (``@record``, :mod:`pyrunc.record`: the
standard ``dataclasses`` module is too slow to import on the hot path).

The parser checks JSON types and the ranges the spec's schema gives (int64, uint64, uint16...),
and nothing the kernel checks better: a value the kernel refuses is reported when it is written,
under the same field path.  Every error is a :class:`~pyrunc.errors.CgroupError` whose message
starts with the field, e.g. ``linux.resources.memory.limit: must be an integer, got "1G"``.

Absent fields are ``None`` (leave the kernel's value alone).  A few zero values mean "unset" as
they do for runc and the engines that generate configs for it: ``memory.limit/reservation/swap``,
``cpu.shares/quota/period`` and ``blockIO.weight``.  ``pids.limit: 0`` is a real limit, as the
spec says.  Unknown keys are ignored (forward compatibility), like elsewhere in the config.
"""

from pyrunc.record import field, record

from ..errors import CgroupError

ROOT = "linux.resources"

INT64 = (-2**63, 2**63 - 1)
UINT64 = (0, 2**64 - 1)
UINT32 = (0, 2**32 - 1)
UINT16 = (0, 2**16 - 1)


def _fail(path: str, why: str):
    raise CgroupError(f"{path}: {why}")


def _obj(value, path: str) -> dict:
    if not isinstance(value, dict):
        _fail(path, f"must be an object, got {_show(value)}")
    return value


def _list(value, path: str) -> list:
    if not isinstance(value, list):
        _fail(path, f"must be an array, got {_show(value)}")
    return value


def _show(value) -> str:
    import json
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(d: dict, key: str, path: str, rng=INT64, required=False) -> int | None:
    value = d.get(key)
    where = f"{path}.{key}"
    if value is None:
        if required:
            _fail(where, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"must be an integer, got {_show(value)}")
    lo, hi = rng
    if not lo <= value <= hi:
        _fail(where, f"{value} is out of range [{lo}, {hi}]")
    return value


def _limit(d: dict, key: str, path: str) -> int | None:
    """An int64 byte limit where -1 means unlimited; 0 means unset."""
    value = _int(d, key, path)
    if value is not None and value < -1:
        _fail(f"{path}.{key}", f"{value} is invalid (a limit in bytes, or -1 for unlimited)")
    return None if value == 0 else value


def _bool(d: dict, key: str, path: str) -> bool | None:
    value = d.get(key)
    if value is not None and not isinstance(value, bool):
        _fail(f"{path}.{key}", f"must be a boolean, got {_show(value)}")
    return value


def _str(d: dict, key: str, path: str, required=False) -> str | None:
    value = d.get(key)
    if value is None:
        if required:
            _fail(f"{path}.{key}", "is required")
        return None
    if not isinstance(value, str):
        _fail(f"{path}.{key}", f"must be a string, got {_show(value)}")
    return value


# --- the records -----------------------------------------------------------------------------

@record
class Memory:
    limit: int | None = None             # bytes, -1 = unlimited
    reservation: int | None = None       # soft limit (v1) / memory.low (v2)
    swap: int | None = None              # memory+swap, -1 = unlimited
    kernel: int | None = None
    kernel_tcp: int | None = None
    swappiness: int | None = None
    disable_oom_killer: bool | None = None
    use_hierarchy: bool | None = None
    check_before_update: bool | None = None


@record
class CPU:
    shares: int | None = None
    quota: int | None = None             # µs per period, -1 = unlimited
    burst: int | None = None
    period: int | None = None
    realtime_runtime: int | None = None
    realtime_period: int | None = None
    cpus: str | None = None
    mems: str | None = None
    idle: int | None = None


@record
class WeightDevice:
    major: int
    minor: int
    weight: int | None = None
    leaf_weight: int | None = None


@record
class ThrottleDevice:
    major: int
    minor: int
    rate: int


@record
class BlockIO:
    weight: int | None = None
    leaf_weight: int | None = None
    weight_device: list[WeightDevice] = field(list)
    # kind ("rbps", "wbps", "riops", "wiops") -> devices
    throttle: dict[str, list[ThrottleDevice]] = field(dict)


@record
class HugepageLimit:
    page_size: str                       # "2MB", as in hugetlb.2MB.max
    limit: int


@record
class Network:
    class_id: int | None = None
    priorities: list[tuple[str, int]] = field(list)


@record
class Pids:
    limit: int                           # -1 = unlimited ("max"); 0 is a real limit


@record
class Rdma:
    device: str
    hca_handles: int | None = None
    hca_objects: int | None = None


@record
class DeviceRule:
    allow: bool
    type: str = "a"                      # "a", "c" or "b"
    major: int | None = None             # None = any ("*")
    minor: int | None = None
    access: str = "rwm"

    def v1_lines(self) -> list[str]:
        """``c 1:3 rwm`` — the devices.allow/deny syntax.  The kernel reads a bare ``a`` as
        "every device, every access" (and resets the list), so "all devices, some access"
        is spelled as one line per type."""
        if self.type == "a":
            return ["a"] if self.access == "rwm" else [f"c *:* {self.access}",
                                                      f"b *:* {self.access}"]
        major = "*" if self.major is None else self.major
        minor = "*" if self.minor is None else self.minor
        return [f"{self.type} {major}:{minor} {self.access}"]


@record
class Resources:
    memory: Memory | None = None
    cpu: CPU | None = None
    block_io: BlockIO | None = None
    hugepage_limits: list[HugepageLimit] = field(list)
    network: Network | None = None
    pids: Pids | None = None
    rdma: list[Rdma] = field(list)
    unified: dict[str, str] = field(dict)
    devices: list[DeviceRule] | None = None   # None: not given (keep the current rules)


# --- parsing ----------------------------------------------------------------------------------

def parse(raw: dict | None, root: str = ROOT) -> Resources:
    """Parse the raw ``linux.resources`` JSON object (``None`` → nothing to set)."""
    if raw is None:
        return Resources()
    d = _obj(raw, root)
    res = Resources()
    if d.get("memory") is not None:
        res.memory = _memory(_obj(d["memory"], f"{root}.memory"), f"{root}.memory")
    if d.get("cpu") is not None:
        res.cpu = _cpu(_obj(d["cpu"], f"{root}.cpu"), f"{root}.cpu")
    if d.get("blockIO") is not None:
        res.block_io = _block_io(_obj(d["blockIO"], f"{root}.blockIO"), f"{root}.blockIO")
    if d.get("hugepageLimits") is not None:
        res.hugepage_limits = _hugepages(d["hugepageLimits"], f"{root}.hugepageLimits")
    if d.get("network") is not None:
        res.network = _network(_obj(d["network"], f"{root}.network"), f"{root}.network")
    if d.get("pids") is not None:
        p = _obj(d["pids"], f"{root}.pids")
        limit = _int(p, "limit", f"{root}.pids", required=True)
        if limit < -1:
            _fail(f"{root}.pids.limit", f"{limit} is invalid (a number of tasks, or -1 for no limit)")
        res.pids = Pids(limit)
    if d.get("rdma") is not None:
        res.rdma = _rdma(_obj(d["rdma"], f"{root}.rdma"), f"{root}.rdma")
    if d.get("unified") is not None:
        res.unified = _unified(_obj(d["unified"], f"{root}.unified"), f"{root}.unified")
    if d.get("devices") is not None:
        res.devices = parse_device_rules(d["devices"], f"{root}.devices")
    return res


def _memory(d: dict, path: str) -> Memory:
    m = Memory(limit=_limit(d, "limit", path), reservation=_limit(d, "reservation", path),
               swap=_limit(d, "swap", path), kernel=_int(d, "kernel", path),
               kernel_tcp=_int(d, "kernelTCP", path),
               swappiness=_int(d, "swappiness", path, UINT64),
               disable_oom_killer=_bool(d, "disableOOMKiller", path),
               use_hierarchy=_bool(d, "useHierarchy", path),
               check_before_update=_bool(d, "checkBeforeUpdate", path))
    if m.swappiness is not None and m.swappiness > 100:
        _fail(f"{path}.swappiness", f"{m.swappiness} is out of range [0, 100]")
    return m


def _cpu(d: dict, path: str) -> CPU:
    c = CPU(shares=_int(d, "shares", path, UINT64) or None,
            quota=_int(d, "quota", path) or None,
            burst=_int(d, "burst", path, UINT64),
            period=_int(d, "period", path, UINT64) or None,
            realtime_runtime=_int(d, "realtimeRuntime", path),
            realtime_period=_int(d, "realtimePeriod", path, UINT64),
            cpus=_str(d, "cpus", path) or None, mems=_str(d, "mems", path) or None,
            idle=_int(d, "idle", path))
    if c.quota is not None and c.quota < -1:
        _fail(f"{path}.quota", f"{c.quota} is invalid (microseconds per period, or -1 for no limit)")
    if c.burst and c.quota and c.quota > 0 and c.burst > c.quota:
        _fail(f"{path}.burst", f"{c.burst} is larger than quota {c.quota}")
    for key in ("cpus", "mems"):
        value = getattr(c, key)
        if value is not None and not _is_cpu_list(value):
            _fail(f"{path}.{key}", f"{_show(value)} is not a list like \"0-3,7\"")
    return c


def _is_cpu_list(text: str) -> bool:
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and (not hi.isdigit() or int(hi) < int(lo))):
            return False
    return True


def _block_io(d: dict, path: str) -> BlockIO:
    b = BlockIO(weight=_int(d, "weight", path, UINT16) or None,
                leaf_weight=_int(d, "leafWeight", path, UINT16))
    for i, raw in enumerate(_list(d.get("weightDevice") or [], f"{path}.weightDevice")):
        where = f"{path}.weightDevice[{i}]"
        e = _obj(raw, where)
        wd = WeightDevice(_int(e, "major", where, required=True), _int(e, "minor", where, required=True),
                          _int(e, "weight", where, UINT16), _int(e, "leafWeight", where, UINT16))
        if wd.weight is None and wd.leaf_weight is None:
            _fail(where, "needs weight or leafWeight")
        b.weight_device.append(wd)
    for key, kind in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        devs = []
        for i, raw in enumerate(_list(d.get(key) or [], f"{path}.{key}")):
            where = f"{path}.{key}[{i}]"
            e = _obj(raw, where)
            devs.append(ThrottleDevice(_int(e, "major", where, required=True),
                                       _int(e, "minor", where, required=True),
                                       _int(e, "rate", where, UINT64, required=True)))
        if devs:
            b.throttle[kind] = devs
    return b


def _hugepages(raw, path: str) -> list[HugepageLimit]:
    out = []
    for i, item in enumerate(_list(raw, path)):
        where = f"{path}[{i}]"
        e = _obj(item, where)
        size = _str(e, "pageSize", where, required=True)
        if not (len(size) >= 3 and size[-1] == "B" and size[-2] in "KMG" and size[:-2].isdigit()
                and size[0] != "0"):
            _fail(f"{where}.pageSize", f"{_show(size)} is not a size like \"2MB\"")
        out.append(HugepageLimit(size, _int(e, "limit", where, UINT64, required=True)))
    return out


def _network(d: dict, path: str) -> Network:
    n = Network(class_id=_int(d, "classID", path, UINT32))
    for i, item in enumerate(_list(d.get("priorities") or [], f"{path}.priorities")):
        where = f"{path}.priorities[{i}]"
        e = _obj(item, where)
        n.priorities.append((_str(e, "name", where, required=True),
                             _int(e, "priority", where, UINT32, required=True)))
    return n


def _rdma(d: dict, path: str) -> list[Rdma]:
    out = []
    for name, item in d.items():
        where = f"{path}.{name}"
        if not name or any(c.isspace() for c in name):
            _fail(where, "is not a device name")
        e = _obj(item, where)
        r = Rdma(name, _int(e, "hcaHandles", where, UINT32), _int(e, "hcaObjects", where, UINT32))
        if r.hca_handles is None and r.hca_objects is None:
            _fail(where, "needs hcaHandles or hcaObjects")
        out.append(r)
    return out


def _unified(d: dict, path: str) -> dict[str, str]:
    out = {}
    for key, value in d.items():
        where = f"{path}.{key}"
        ctrl, dot, name = key.partition(".")
        if not dot or not ctrl or not name or "/" in key or key.startswith("."):
            _fail(where, "is not a cgroup file name like \"memory.high\"")
        if not isinstance(value, str):
            _fail(where, f"must be a string, got {_show(value)}")
        out[key] = value
    return out


def parse_device_rules(raw, path: str = f"{ROOT}.devices") -> list[DeviceRule]:
    rules = []
    for i, item in enumerate(_list(raw, path)):
        where = f"{path}[{i}]"
        e = _obj(item, where)
        allow = _bool(e, "allow", where)
        if allow is None:
            _fail(f"{where}.allow", "is required")
        dtype = _str(e, "type", where) or "a"
        if dtype not in ("a", "b", "c"):
            _fail(f"{where}.type", f"{_show(dtype)} is not one of \"a\", \"b\", \"c\"")
        major = _int(e, "major", where, INT64)
        minor = _int(e, "minor", where, INT64)
        for key, value in (("major", major), ("minor", minor)):
            # -1 is how some engines spell "any"
            if value is not None and not -1 <= value < 2**31:
                _fail(f"{where}.{key}", f"{value} is not a device number")
        access = _str(e, "access", where)
        if access is None or access == "":
            access = "rwm"
        if not set(access) <= set("rwm"):
            _fail(f"{where}.access", f"{_show(access)} is not a combination of r, w and m")
        access = "".join(c for c in "rwm" if c in access)
        if dtype == "a":                # "a" is every device, whatever the numbers say
            major = minor = None
        rules.append(DeviceRule(allow, dtype, None if major in (None, -1) else major,
                                None if minor in (None, -1) else minor, access))
    return rules
