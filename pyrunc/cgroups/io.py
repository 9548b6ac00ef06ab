"""Block I/O: ``linux.resources.blockIO`` → io.* (v2) or blkio.* (v1).

Weights in the spec are on the v1 scale [10, 1000].  On v2, with the BFQ scheduler's
io.bfq.weight present the value is written as is (BFQ uses that scale); otherwise it becomes
io.weight on [1, 10000] by the usual linear map ``1 + (w - 10) * 9999 // 990``.  On v1,
blkio.weight (CFQ, old kernels) or blkio.bfq.weight.  leafWeight only exists with CFQ.

Throttles: v2 io.max ``MAJ:MIN rbps=N`` (a rate of 0 means ``max``), v1
blkio.throttle.{read,write}_{bps,iops}_device ``MAJ:MIN N``.
"""



from ..errors import CgroupError
from . import files

# for the annotations only (no import at run time: this module is on the hot path)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resources import BlockIO


F = "linux.resources.blockIO"
WEIGHT_MIN, WEIGHT_MAX = 10, 1000

_V2_KEYS = {"rbps": "throttleReadBpsDevice", "wbps": "throttleWriteBpsDevice",
            "riops": "throttleReadIOPSDevice", "wiops": "throttleWriteIOPSDevice"}
_V1_FILES = {"rbps": "blkio.throttle.read_bps_device", "wbps": "blkio.throttle.write_bps_device",
             "riops": "blkio.throttle.read_iops_device",
             "wiops": "blkio.throttle.write_iops_device"}


def weight_to_v2(weight: int, field: str = f"{F}.weight") -> int:
    if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
        raise CgroupError(f"{field}: {weight} is out of range [{WEIGHT_MIN}, {WEIGHT_MAX}]")
    return 1 + (weight - WEIGHT_MIN) * 9999 // (WEIGHT_MAX - WEIGHT_MIN)


def _v2_weight_writer(d: str):
    """(file, convert) for weights on this v2 cgroup."""
    if files.exists(d, "io.bfq.weight"):
        return "io.bfq.weight", lambda w, field: w
    return "io.weight", weight_to_v2


def set_v2(d: str, b: "BlockIO", update: bool = False) -> None:
    if b.leaf_weight:
        raise CgroupError(f"{F}.leafWeight: not supported on cgroup v2")
    name, convert = _v2_weight_writer(d)
    if b.weight is not None:
        files.write(d, name, convert(b.weight, f"{F}.weight"), f"{F}.weight")
    for i, wd in enumerate(b.weight_device):
        field = f"{F}.weightDevice[{i}]"
        if wd.leaf_weight:
            raise CgroupError(f"{field}.leafWeight: not supported on cgroup v2")
        if wd.weight is not None:
            value = convert(wd.weight, f"{field}.weight")
            files.write(d, name, f"{wd.major}:{wd.minor} {value}", f"{field}.weight")
    for kind, devs in b.throttle.items():
        for i, t in enumerate(devs):
            rate = t.rate or "max"
            files.write(d, "io.max", f"{t.major}:{t.minor} {kind}={rate}",
                        f"{F}.{_V2_KEYS[kind]}[{i}]")


def set_v1(d: str, b: "BlockIO", update: bool = False) -> None:
    prefix = "blkio.bfq." if not files.exists(d, "blkio.weight") and \
        files.exists(d, "blkio.bfq.weight") else "blkio."
    if b.weight is not None:
        files.write(d, prefix + "weight", b.weight, f"{F}.weight")
    if b.leaf_weight is not None:
        files.write(d, "blkio.leaf_weight", b.leaf_weight, f"{F}.leafWeight")
    for i, wd in enumerate(b.weight_device):
        field = f"{F}.weightDevice[{i}]"
        if wd.weight is not None:
            files.write(d, prefix + "weight_device", f"{wd.major}:{wd.minor} {wd.weight}",
                        f"{field}.weight")
        if wd.leaf_weight is not None:
            files.write(d, "blkio.leaf_weight_device", f"{wd.major}:{wd.minor} {wd.leaf_weight}",
                        f"{field}.leafWeight")
    for kind, devs in b.throttle.items():
        for i, t in enumerate(devs):
            files.write(d, _V1_FILES[kind], f"{t.major}:{t.minor} {t.rate}",
                        f"{F}.{_V2_KEYS[kind]}[{i}]")


# --- stats ------------------------------------------------------------------------------------

def _entry(major: int, minor: int, op: str, value: int) -> dict:
    e = {}
    if major:
        e["major"] = major
    if minor:
        e["minor"] = minor
    e["op"] = op
    if value:
        e["value"] = value
    return e


def stats_v2(d: str) -> dict:
    service_bytes, serviced = [], []
    for dev, kv in files.nested_keyed(d, "io.stat"):
        major, _, minor = dev.partition(":")
        major, minor = int(major), int(minor or 0)
        for key, op, target in (("rbytes", "Read", service_bytes), ("wbytes", "Write", service_bytes),
                                ("rios", "Read", serviced), ("wios", "Write", serviced)):
            if key in kv:
                target.append(_entry(major, minor, op, int(kv[key])))
    out = {}
    if service_bytes:
        out["ioServiceBytesRecursive"] = service_bytes
    if serviced:
        out["ioServicedRecursive"] = serviced
    return out


def _v1_entries(d: str, name: str) -> list[dict]:
    out = []
    for line in (files.read_or(d, name) or "").splitlines():
        parts = line.split()
        if len(parts) != 3:          # "Total N"
            continue
        major, _, minor = parts[0].partition(":")
        out.append(_entry(int(major), int(minor or 0), parts[1], int(parts[2])))
    return out


def stats_v1(d: str) -> dict:
    out = {}
    for key, suffix in (("ioServiceBytesRecursive", "io_service_bytes_recursive"),
                        ("ioServicedRecursive", "io_serviced_recursive")):
        entries = _v1_entries(d, f"blkio.bfq.{suffix}") or \
            _v1_entries(d, f"blkio.throttle.{suffix}")
        if entries:
            out[key] = entries
    return out
