"""Control groups for containers: placement, resource limits, freezing, killing, statistics.

The runtime talks to one object per container, a :class:`Manager` (as pyrunc/create.py does)::

    mgr = new_manager(spec.linux.cgroups_path, container_id)   # creates nothing yet
    fd = mgr.make_clone_dir()             # v2: the directory the init is cloned into, or None
    mgr.create(spec.linux.resources)      # the rest, with linux.resources (a raw dict) applied
    mgr.apply(init_pid)                   # only where the init could not be born or join itself
                                          # (v1 hierarchies: it writes "0" to self_join_files())
    c.cgroup = mgr.to_state()             # kept in state.json
    ...
    mgr = load_manager(c.cgroup)          # in later commands
    mgr.freeze(); mgr.thaw(); mgr.kill_all(9); mgr.pids(); mgr.stats()
    mgr.destroy()

Two drivers implement it: :mod:`.v2` (pure cgroup v2, the design's target) and :mod:`.v1`
(legacy and hybrid hosts: one directory per v1 hierarchy, plus one in the unified hierarchy
when it is mounted).  Each controller is a module (memory, cpu, cpuset, pids, io, hugetlb,
rdma, network, devices, freezer, unified) with the v1 and v2 spelling of its settings side by
side.  ``linux.resources`` is parsed once into typed records (:mod:`.resources`).

This module is on the runtime's hot path: it imports nothing heavy, the drivers load lazily.
Every failure is a :class:`~pyrunc.errors.CgroupError` with one line naming the field or the
cgroup file and the reason.
"""

from ..linux import os
from ..errors import CgroupError

# The drivers (and .base, which they share) load when a manager is made: importing this package
# stays cheap for callers that need only part of it (the warm-up thread, frozen()).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Manager

__all__ = ["CgroupError", "detect_mode", "load_manager", "new_manager"]

CGROUP_ROOT = "/sys/fs/cgroup"


def detect_mode(root: str = CGROUP_ROOT) -> str:
    """``unified`` (pure v2), ``hybrid`` (v1 controllers + cgroup2 at <root>/unified) or
    ``legacy`` (v1 only).  Only cgroup2 has cgroup.controllers at its root."""
    if os.path.exists(f"{root}/cgroup.controllers"):
        return "unified"
    if os.path.exists(f"{root}/unified/cgroup.controllers"):
        return "hybrid"
    return "legacy"


def new_manager(cgroups_path: str | None, container_id: str) -> "Manager":
    """The manager for ``linux.cgroupsPath`` (``None`` → ``/pyrunc/<id>``); creates nothing."""
    from . import paths

    clean = paths.clean(cgroups_path, container_id)
    mode = detect_mode()
    if mode == "unified":
        from .v2 import V2Manager

        mount = paths.unified_mount()
        if mount is None:
            raise CgroupError("cgroup: cgroup2 is not mounted")
        point, root = mount
        own = paths.own_cgroups().get("")
        return V2Manager(paths.resolve(clean, point, root, own, v2=True), point)

    from .v1 import V1Manager

    mounts = paths.cgroup_mounts()      # (read once: both the v1 and the v2 ones are needed)
    hierarchies = paths.v1_hierarchies(mounts)
    if not hierarchies:
        raise CgroupError("cgroup: no cgroup hierarchy is mounted")
    own = paths.own_cgroups()
    dirs = {ctrl: paths.resolve(clean, point, root, own.get(ctrl), v2=False)
            for ctrl, (point, root) in hierarchies.items()}
    unified_dir = unified_point = None
    if mode == "hybrid":
        mount = paths.unified_mount(mounts)
        if mount is not None:
            unified_point, root = mount
            unified_dir = paths.resolve(clean, unified_point, root, own.get(""), v2=True)
    mounts = {ctrl: point for ctrl, (point, _) in hierarchies.items()}
    return V1Manager(dirs, unified_dir, unified_point, mounts=mounts)


def frozen(saved: dict) -> bool:
    """Is the container's cgroup frozen?  Read straight from the saved state's paths, without
    loading a driver: ``state`` and ``list`` ask this of every running container."""
    driver = saved.get("driver") if isinstance(saved, dict) else None
    try:
        if driver == "v2":
            with open(os.path.join(saved["path"], "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        if driver == "v1":
            if "freezer" in saved.get("dirs", {}):
                with open(os.path.join(saved["dirs"]["freezer"], "freezer.state")) as f:
                    return f.read().strip() != "THAWED"
            if saved.get("unified_dir"):
                with open(os.path.join(saved["unified_dir"], "cgroup.freeze")) as f:
                    return f.read().strip() == "1"
    except OSError:
        pass
    return False


def load_manager(saved: dict) -> "Manager":
    """Rebuild the manager ``to_state()`` described (from the container's state.json)."""
    if not isinstance(saved, dict):
        raise CgroupError("cgroup: bad saved state")
    nodes = [tuple(n) for n in saved.get("devices", [])]
    created = list(saved.get("created", []))
    driver = saved.get("driver")
    if driver == "v2":
        from .v2 import V2Manager

        _check_under(saved["mount"], [saved["path"], *created])
        return V2Manager(saved["path"], saved["mount"], created, nodes)
    if driver == "v1":
        from .v1 import V1Manager

        dirs, mounts = dict(saved["dirs"]), dict(saved.get("mounts", {}))
        for ctrl, d in dirs.items():
            _check_under(mounts.get(ctrl, CGROUP_ROOT), [d])
        roots = [*mounts.values(), saved.get("unified_mount") or CGROUP_ROOT]
        for d in created:
            if not any(d.startswith(r.rstrip("/") + "/") for r in roots):
                _check_under(CGROUP_ROOT, [d])
        if saved.get("unified_dir"):
            _check_under(saved["unified_mount"], [saved["unified_dir"]])
        return V1Manager(dirs, saved.get("unified_dir"), saved.get("unified_mount"), created,
                         nodes, mounts)
    raise CgroupError(f"cgroup: unknown driver {driver!r} in saved state")


def _check_under(mount: str, dirs: list[str]) -> None:
    """Saved paths must be plain absolute paths inside the cgroup mount (defence in depth:
    destroy removes what is listed)."""
    for d in dirs:
        if not isinstance(d, str) or os.path.normpath(d) != d or \
                not d.startswith(mount.rstrip("/") + "/"):
            raise CgroupError(f"cgroup: saved cgroup path {d!r} is not inside {mount}")
