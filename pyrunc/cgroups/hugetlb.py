"""hugetlb controller: ``linux.resources.hugepageLimits``.

The spec's ``pageSize`` ("2MB") is the name the kernel uses in the file names.  The limit goes
to both the fault-time limit and, where the kernel has it, the reservation limit (enforced at
mmap time, which the spec prefers):
v2 hugetlb.<size>.max and hugetlb.<size>.rsvd.max; v1 hugetlb.<size>.limit_in_bytes and
hugetlb.<size>.rsvd.limit_in_bytes.
"""



from ..linux import os
from ..errors import CgroupError
from . import files

# for the annotations only (no import at run time: this module is on the hot path)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resources import HugepageLimit


F = "linux.resources.hugepageLimits"


def _set(d: str, limits: "list[HugepageLimit]", limit_file: str, rsvd_file: str) -> None:
    for i, h in enumerate(limits):
        field = f"{F}[{i}]"
        name = limit_file.format(h.page_size)
        if not files.exists(d, name):
            raise CgroupError(f"{field}.pageSize: huge page size {h.page_size} is not "
                              f"supported by this kernel (no {os.path.join(d, name)})")
        files.write(d, name, h.limit, f"{field}.limit")
        rsvd = rsvd_file.format(h.page_size)
        if files.exists(d, rsvd):
            files.write(d, rsvd, h.limit, f"{field}.limit")


def set_v2(d: str, limits: "list[HugepageLimit]", update: bool = False) -> None:
    _set(d, limits, "hugetlb.{}.max", "hugetlb.{}.rsvd.max")


def set_v1(d: str, limits: "list[HugepageLimit]", update: bool = False) -> None:
    _set(d, limits, "hugetlb.{}.limit_in_bytes", "hugetlb.{}.rsvd.limit_in_bytes")


def page_sizes() -> list[str]:
    """Huge page sizes of this kernel in the cgroup file naming ("2MB", "1GB")."""
    out = []
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return out
    for n in sorted(names, key=lambda s: int(s.split("-")[1][:-2])):
        kb = int(n.split("-")[1][:-2])            # hugepages-2048kB
        for unit, div in (("GB", 1 << 20), ("MB", 1 << 10), ("KB", 1)):
            if kb % div == 0:
                out.append(f"{kb // div}{unit}")
                break
    return out


def stats_v2(d: str) -> dict:
    out = {}
    for size in page_sizes():
        if not files.exists(d, f"hugetlb.{size}.current"):
            continue
        e = {}
        usage = files.read_int(d, f"hugetlb.{size}.current")
        if usage:
            e["usage"] = usage
        e["failcnt"] = files.flat_keyed(d, f"hugetlb.{size}.events").get("max", 0)
        out[size] = e
    return out


def stats_v1(d: str) -> dict:
    out = {}
    for size in page_sizes():
        if not files.exists(d, f"hugetlb.{size}.usage_in_bytes"):
            continue
        e = {}
        usage = files.read_int(d, f"hugetlb.{size}.usage_in_bytes")
        peak = files.read_int(d, f"hugetlb.{size}.max_usage_in_bytes")
        if usage:
            e["usage"] = usage
        if peak:
            e["max"] = peak
        e["failcnt"] = files.read_int(d, f"hugetlb.{size}.failcnt")
        out[size] = e
    return out
