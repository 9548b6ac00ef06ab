"""cpuset controller: ``linux.resources.cpu.cpus`` / ``.mems`` → cpuset.cpus / cpuset.mems.

The file names are the same on v1 and v2.  A new v1 cpuset cgroup starts with empty sets, and
a task cannot join a cgroup with no CPUs: every directory we create gets its parent's sets
first (:func:`init_v1`).
"""



from ..linux import os
from . import files

# for the annotations only (no import at run time: this module is on the hot path)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resources import CPU


F = "linux.resources.cpu"


def set_cpuset(d: str, c: "CPU", update: bool = False) -> None:
    # When both shrink and grow, mems then cpus or the reverse can matter on v1 only for
    # exclusive sets, which we never make; write cpus first like everyone else.
    if c.cpus is not None:
        files.write(d, "cpuset.cpus", c.cpus, f"{F}.cpus")
    if c.mems is not None:
        files.write(d, "cpuset.mems", c.mems, f"{F}.mems")


def init_v1(created: list[str]) -> None:
    """Copy the parent's cpus/mems into each new v1 cpuset directory, top-down.

    A parent someone else made an instant ago may still be empty: many containers started at
    once under one new parent (dockerd's ``/docker``) race, and the one that did not create the
    parent would copy its empty sets.  Empty ancestors are filled first, from the nearest
    ancestor that has sets (the same values the other creator writes)."""
    if not created:
        return
    for d in _empty_ancestors(created[0]) + list(created):
        parent = os.path.dirname(d)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not files.read_or(d, name):
                files.write(d, name, files.read(parent, name), f"cgroup {d}")


def _empty_ancestors(d: str) -> list[str]:
    """The ancestors of ``d`` with an empty cpus or mems set, top first (None read: above the
    hierarchy's root, whose sets are never empty)."""
    out = []
    parent = os.path.dirname(d)
    while parent != "/":
        cpus, mems = files.read_or(parent, "cpuset.cpus"), files.read_or(parent, "cpuset.mems")
        if cpus is None or (cpus and mems):
            break
        out.append(parent)
        parent = os.path.dirname(parent)
    out.reverse()
    return out


def _list(text: str | None) -> list[int]:
    out = []
    for part in (text or "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def stats(d: str, v2: bool) -> dict:
    cpus = files.read_or(d, "cpuset.cpus.effective" if v2 else "cpuset.effective_cpus")
    mems = files.read_or(d, "cpuset.mems.effective" if v2 else "cpuset.effective_mems")
    out = {}
    if _list(cpus):
        out["cpus"] = _list(cpus)
    out["cpu_exclusive"] = files.read_int(d, "cpuset.cpu_exclusive")
    if _list(mems):
        out["mems"] = _list(mems)
    for key in ("mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page",
                "memory_spread_slab", "memory_pressure", "sched_load_balance",
                "sched_relax_domain_level"):
        out[key] = files.read_int(d, f"cpuset.{key}")
    return out
