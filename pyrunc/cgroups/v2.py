"""The cgroup v2 manager: one directory in the unified hierarchy.

create:
  1. refuse a cgroup that already holds processes (it would mix two containers);
  2. mkdir -p, remembering which directories are new;
  3. enable every available controller in each ancestor's cgroup.subtree_control (best effort:
     a controller that cannot be enabled only matters if the resources need it, and then the
     error names the field);
  4. write the resources, one controller module at a time, ``unified`` last so it can refine
     anything; devices last of all (an eBPF program, default deny);
  on any failure the new directories are removed again.
"""


from _signal import SIGKILL

from ..linux import os
from ..errors import CgroupError
from . import base, files

# for the annotations only (no import at run time: this module is on the hot path)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .resources import DeviceRule, Resources


R = "linux.resources"


def needed_controllers(res: "Resources") -> dict[str, str]:
    """controller → the field that needs it."""
    need = {}
    if res.memory:
        need["memory"] = f"{R}.memory"
    if res.cpu:
        c = res.cpu
        if any(v is not None for v in (c.shares, c.quota, c.period, c.burst, c.idle)):
            need["cpu"] = f"{R}.cpu"
        if c.cpus is not None or c.mems is not None:
            need["cpuset"] = f"{R}.cpu"
    if res.block_io:
        need["io"] = f"{R}.blockIO"
    if res.hugepage_limits:
        need["hugetlb"] = f"{R}.hugepageLimits"
    if res.pids:
        need["pids"] = f"{R}.pids"
    if res.rdma:
        need["rdma"] = f"{R}.rdma"
    if res.unified:
        from . import unified
        for ctrl in unified.controllers_needed(res.unified):
            need.setdefault(ctrl, f"{R}.unified")
    return need


def enable_controllers(mount: str, path: str, wanted: set[str] | None = None) -> None:
    """Enable controllers (all available ones, or ``wanted``) for ``path`` in the
    subtree_control of each of its ancestors, from the root down."""
    rel = os.path.relpath(os.path.dirname(path), mount)
    ancestors = [mount]
    if rel != ".":
        for part in rel.split("/"):
            ancestors.append(os.path.join(ancestors[-1], part))
    for d in ancestors:
        available = set(files.read_or(d, "cgroup.controllers", "").split())
        enabled = set(files.read_or(d, "cgroup.subtree_control", "").split())
        for ctrl in sorted((available if wanted is None else available & wanted) - enabled):
            try:
                files.write(d, "cgroup.subtree_control", f"+{ctrl}", "cgroup")
            except CgroupError:
                pass     # e.g. EBUSY: tasks in an ancestor; checked against needs later


def check_available(path: str, need: dict[str, str]) -> set[str]:
    available = set(files.read_or(path, "cgroup.controllers", "").split())
    for ctrl, field in need.items():
        if ctrl not in available and field != f"{R}.unified":
            raise CgroupError(f"{field}: the {ctrl} controller is not available in {path} "
                              f"(available: {' '.join(sorted(available)) or 'none'})")
    return available


def refuse_busy(path: str) -> None:
    if os.path.isdir(path) and base.all_pids(path):
        raise CgroupError(f"cgroup: {path} already has processes in it")


class V2Manager(base.Manager):
    driver = "v2"

    def __init__(self, path: str, mount: str, created: list[str] | None = None,
                 nodes: list | None = None):
        self.path = path
        self.mount = mount
        self.created = list(created or [])
        self.nodes = [tuple(n) for n in nodes or []]   # linux.devices: (type, major, minor)

    def to_state(self) -> dict:
        return {"driver": self.driver, "path": self.path, "mount": self.mount,
                "created": self.created,
                "devices": [list(n) for n in self.nodes]}

    def leaf_dirs(self) -> list[str]:
        return [self.path]

    # --- lifecycle ----------------------------------------------------------------------------

    # Rootless (pyrunc/rootless.py) sets this: loading the device filter (eBPF) needs
    # privileges a user lacks, and a user namespace cannot reach a device its user could not.
    skip_devices = False

    def create(self, resources: dict | None, devices: list | None = None) -> None:
        from . import devices as dev
        from .resources import parse

        res = parse(resources)
        node_rules = dev.rules_for_nodes(devices)
        if not self.cloning:        # (else checked when the directory was made)
            refuse_busy(self.path)
            if os.path.isdir(self.path) and self.frozen():
                raise CgroupError(f"cgroup: {self.path} is frozen")
        created = list(self.created)
        try:
            base.make_dirs(self.path, created)
            enable_controllers(self.mount, self.path)
            self._set(res, update=False, node_rules=node_rules)
        except BaseException:
            if self.cloning:
                self.created = created  # the init may be in it already: destroy() kills first
            else:
                self._undo(created)
            raise
        self.created = created
        self.nodes = [(r.type, r.major, r.minor) for r in node_rules]

    def _undo(self, created: list[str]) -> None:
        try:
            if self.path in created:
                base.remove_tree(self.path)
            base.remove_created_parents(created, keep={self.path})
        except CgroupError:
            pass     # the original error matters more

    def apply(self, pid: int) -> None:
        files.write(self.path, "cgroup.procs", pid, f"cgroup: add pid {pid}")

    def clone_dir(self) -> str | None:
        return self.path

    def update(self, resources: dict) -> None:
        from .resources import DeviceRule, parse

        node_rules = [DeviceRule(True, t, major, minor, "rwm") for t, major, minor in self.nodes]
        self._set(parse(resources), update=True, node_rules=node_rules)

    def _set(self, res: "Resources", update: bool, node_rules: "list[DeviceRule]") -> None:
        from . import devices as dev

        if res.network and (res.network.class_id is not None or res.network.priorities):
            raise CgroupError(f"{R}.network: net_cls/net_prio do not exist on cgroup v2")
        available = check_available(self.path, needed_controllers(res))
        d = self.path
        if res.cpu:
            from . import cpuset
            cpuset.set_cpuset(d, res.cpu, update)
        if res.memory:
            from . import memory
            memory.set_v2(d, res.memory, update)
        if res.cpu:
            from . import cpu
            cpu.set_v2(d, res.cpu, update)
        if res.block_io:
            from . import io
            io.set_v2(d, res.block_io, update)
        if res.pids:
            from . import pids
            pids.set_pids(d, res.pids, update)
        if res.hugepage_limits:
            from . import hugetlb
            hugetlb.set_v2(d, res.hugepage_limits, update)
        if res.rdma:
            from . import rdma
            rdma.set_rdma(d, res.rdma, update)
        if res.unified:
            from . import unified
            unified.set_unified(d, res.unified, available, f" in {d}")
        if (not update or res.devices is not None) and not self.skip_devices:
            dev.set_v2(d, dev.effective(res.devices, node_rules))

    # --- freezing, signals, processes ---------------------------------------------------------

    def freeze(self) -> None:
        from . import freezer
        freezer.freeze_v2(self.path)

    def thaw(self) -> None:
        from . import freezer
        freezer.thaw_v2(self.path)

    def frozen(self) -> bool:
        from . import freezer
        return freezer.frozen_v2(self.path)

    def kill_all(self, sig: int) -> None:
        if sig == SIGKILL and files.exists(self.path, "cgroup.kill"):
            files.write(self.path, "cgroup.kill", "1", "kill")
            return
        if sig == SIGKILL:      # no cgroup.kill (kernel < 5.14)
            self.signal_frozen(self.path, sig)
            return
        base.signal_all(self.path, sig)

    def pids(self) -> list[int]:
        return base.all_pids(self.path)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    # --- reporting ----------------------------------------------------------------------------

    def stats(self) -> dict:
        from . import cpu, cpuset, hugetlb, io, memory, pids
        d = self.path
        return {"cpu": cpu.stats_v2(d), "cpuset": cpuset.stats(d, v2=True),
                "memory": memory.stats_v2(d), "pids": pids.stats(d), "blkio": io.stats_v2(d),
                "hugetlb": hugetlb.stats_v2(d), "intel_rdt": {}, "network_interfaces": None}

    def oom_kill_count(self) -> int:
        from . import memory
        return memory.oom_kills_v2(self.path)

    def destroy(self) -> None:
        base.kill_and_remove(self, [self.path], self.path)
        base.remove_created_parents(self.created, keep={self.path})

