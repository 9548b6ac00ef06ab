"""The cgroup v1 manager (legacy and hybrid hosts): one directory per mounted hierarchy.

Every mounted v1 controller hierarchy gets the container's directory (co-mounted controllers
such as ``cpu,cpuacct`` share one), so the container's processes are accounted everywhere
even for controllers it sets nothing on.  On a hybrid host the container also gets a directory
in the unified (v2) hierarchy: its processes are placed there too, which gives cgroup.kill and
lets controllers that live only on v2 (hugetlb on this project's CI machines) and
``linux.resources.unified`` be honoured there.  Controllers are enabled in the unified
hierarchy's ancestors only when the resources need them.

create: refuse busy cgroups; mkdir -p everywhere, remembering new directories; give new cpuset
directories their parent's cpus/mems (v1 starts them empty); write resources controller by
controller; devices (devices.deny ``a`` then the rules); on failure remove what was made.
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
# Where pids() looks: any hierarchy holds all of the container's processes; prefer these.
_MAIN_ORDER = ("pids", "freezer", "memory", "cpu", "devices", "cpuacct", "blkio", "cpuset")


class V1Manager(base.Manager):
    driver = "v1"

    def __init__(self, dirs: dict[str, str], unified_dir: str | None = None,
                 unified_mount: str | None = None, created: list[str] | None = None,
                 nodes: list | None = None, mounts: dict[str, str] | None = None):
        self.dirs = dict(dirs)                  # controller → directory
        self.mounts = dict(mounts or {})        # controller → mount point of its hierarchy
        self.unified_dir = unified_dir
        self.unified_mount = unified_mount
        self.created = list(created or [])
        self.nodes = [tuple(n) for n in nodes or []]   # linux.devices: (type, major, minor)

    def to_state(self) -> dict:
        return {"driver": self.driver, "dirs": self.dirs, "mounts": self.mounts,
                "unified_dir": self.unified_dir,
                "unified_mount": self.unified_mount, "created": self.created,
                "devices": [list(n) for n in self.nodes]}

    # --- where things are ---------------------------------------------------------------------

    def leaf_dirs(self) -> list[str]:
        """Every directory of the container, once each (v1 ones, then the unified one)."""
        out = []
        for d in self.dirs.values():
            if d not in out:
                out.append(d)
        if self.unified_dir:
            out.append(self.unified_dir)
        return out

    @property
    def main(self) -> str:
        for ctrl in _MAIN_ORDER:
            if ctrl in self.dirs:
                return self.dirs[ctrl]
        if self.dirs:
            return next(iter(self.dirs.values()))
        if self.unified_dir:
            return self.unified_dir
        raise CgroupError("cgroup: no cgroup hierarchy is mounted")

    def _dir(self, ctrl: str, field: str) -> str:
        d = self.dirs.get(ctrl)
        if d is None:
            raise CgroupError(f"{field}: the {ctrl} cgroup controller is not mounted")
        return d

    def _unified_available(self) -> set[str]:
        if not self.unified_mount:
            return set()
        return set(files.read_or(self.unified_mount, "cgroup.controllers", "").split())

    # --- lifecycle ----------------------------------------------------------------------------

    def create(self, resources: dict | None, devices: list | None = None) -> None:
        from . import devices as dev
        from .resources import parse

        res = parse(resources)
        node_rules = dev.rules_for_nodes(devices)
        for d in self.leaf_dirs():
            if os.path.isdir(d) and not (self.cloning and d == self.unified_dir) and \
                    base.all_pids(d):
                raise CgroupError(f"cgroup: {d} already has processes in it")
        if "freezer" in self.dirs and os.path.isdir(self.dirs["freezer"]) and self.frozen():
            raise CgroupError(f"cgroup: {self.dirs['freezer']} is frozen")
        created = list(self.created)
        try:
            for d in self.leaf_dirs():
                base.make_dirs(d, created)
            if "cpuset" in self.dirs:
                from . import cpuset
                root = self.dirs["cpuset"]
                cpuset.init_v1([c for c in created if root == c or root.startswith(c + "/")])
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
            leaves = set(self.leaf_dirs())
            for d in self.leaf_dirs():
                if d in created:
                    base.remove_tree(d)
            base.remove_created_parents(created, keep=leaves)
        except CgroupError:
            pass     # the original error matters more

    def apply(self, pid: int) -> None:
        for d in self.leaf_dirs():
            files.write(d, "cgroup.procs", pid, f"cgroup: add pid {pid}")

    def clone_dir(self) -> str | None:
        return self.unified_dir

    def self_join_files(self) -> list[str]:
        return [f"{d}/tasks" for d in dict.fromkeys(self.dirs.values())]

    def update(self, resources: dict) -> None:
        from .resources import DeviceRule, parse

        node_rules = [DeviceRule(True, t, major, minor, "rwm") for t, major, minor in self.nodes]
        self._set(parse(resources), update=True, node_rules=node_rules)

    def _set(self, res: "Resources", update: bool, node_rules: "list[DeviceRule]") -> None:
        from . import devices as dev

        v2_only = self._v2_needs(res)
        if v2_only:
            from . import v2
            v2.enable_controllers(self.unified_mount, self.unified_dir, set(v2_only))
            v2.check_available(self.unified_dir, v2_only)
        if res.cpu and (res.cpu.cpus is not None or res.cpu.mems is not None):
            from . import cpuset
            cpuset.set_cpuset(self._dir("cpuset", f"{R}.cpu"), res.cpu, update)
        if res.memory:
            from . import memory
            memory.set_v1(self._dir("memory", f"{R}.memory"), res.memory, update)
        if res.cpu and any(v is not None for v in (
                res.cpu.shares, res.cpu.quota, res.cpu.period, res.cpu.burst, res.cpu.idle,
                res.cpu.realtime_period, res.cpu.realtime_runtime)):
            from . import cpu
            cpu.set_v1(self._dir("cpu", f"{R}.cpu"), res.cpu, update)
        if res.block_io:
            from . import io
            io.set_v1(self._dir("blkio", f"{R}.blockIO"), res.block_io, update)
        if res.pids:
            from . import pids
            pids.set_pids(self._dir("pids", f"{R}.pids"), res.pids, update)
        if res.hugepage_limits:
            from . import hugetlb
            if "hugetlb" in self.dirs:
                hugetlb.set_v1(self.dirs["hugetlb"], res.hugepage_limits, update)
            else:
                hugetlb.set_v2(self.unified_dir, res.hugepage_limits, update)
        if res.rdma:
            from . import rdma
            rdma.set_rdma(self.dirs.get("rdma") or self.unified_dir, res.rdma, update)
        if res.network:
            from . import network
            if res.network.class_id is not None:
                network.set_classid(self._dir("net_cls", f"{R}.network.classID"), res.network)
            if res.network.priorities:
                network.set_priorities(self._dir("net_prio", f"{R}.network.priorities"),
                                       res.network)
        if res.unified:
            if not self.unified_dir:
                raise CgroupError(f"{R}.unified: cgroup v2 is not mounted on this host")
            from . import unified
            unified.set_unified(self.unified_dir, res.unified,
                                set(files.read_or(self.unified_dir, "cgroup.controllers",
                                                  "").split()),
                                " in the cgroup v2 hierarchy of this hybrid host")
        if not update or res.devices is not None:
            if "devices" in self.dirs:
                dev.set_v1(self.dirs["devices"], res.devices, node_rules)
            elif self.unified_dir:      # no v1 devices controller: the v2 way, on the unified dir
                dev.set_v2(self.unified_dir, dev.effective(res.devices, node_rules))
            else:
                raise CgroupError(f"{R}.devices: no devices cgroup is mounted")

    def _v2_needs(self, res: "Resources") -> dict[str, str]:
        """Controllers this v1 host only has on the unified hierarchy that ``res`` needs."""
        need = {}
        if res.hugepage_limits and "hugetlb" not in self.dirs:
            need["hugetlb"] = f"{R}.hugepageLimits"
        if res.rdma and "rdma" not in self.dirs:
            need["rdma"] = f"{R}.rdma"
        if res.unified:
            from . import unified
            for ctrl in unified.controllers_needed(res.unified):
                need.setdefault(ctrl, f"{R}.unified")
        if not need:
            return {}
        if not self.unified_dir:
            ctrl, field = next(iter(need.items()))
            raise CgroupError(f"{field}: the {ctrl} cgroup controller is not mounted")
        available = self._unified_available()
        for ctrl, field in need.items():
            if ctrl not in available and field != f"{R}.unified":
                raise CgroupError(f"{field}: the {ctrl} cgroup controller is not mounted")
        return {c: f for c, f in need.items() if c in available}

    # --- freezing, signals, processes ---------------------------------------------------------

    def freeze(self) -> None:
        from . import freezer
        if "freezer" in self.dirs:
            freezer.freeze_v1(self.dirs["freezer"])
        elif self.unified_dir:
            freezer.freeze_v2(self.unified_dir)
        else:
            raise CgroupError("pause: the freezer cgroup controller is not mounted")

    def thaw(self) -> None:
        from . import freezer
        if "freezer" in self.dirs:
            freezer.thaw_v1(self.dirs["freezer"])
        elif self.unified_dir:
            freezer.thaw_v2(self.unified_dir)
        else:
            raise CgroupError("resume: the freezer cgroup controller is not mounted")

    def frozen(self) -> bool:
        from . import freezer
        if "freezer" in self.dirs:
            return freezer.frozen_v1(self.dirs["freezer"])
        if self.unified_dir:
            return freezer.frozen_v2(self.unified_dir)
        return False

    def kill_all(self, sig: int) -> None:
        if sig == SIGKILL and self.unified_dir and \
                files.exists(self.unified_dir, "cgroup.kill"):
            files.write(self.unified_dir, "cgroup.kill", "1", "kill")
            return
        if sig == SIGKILL and "freezer" in self.dirs:
            self.signal_frozen(self.main, sig)
            return
        base.signal_all(self.main, sig)

    def pids(self) -> list[int]:
        return base.all_pids(self.main)

    def exists(self) -> bool:
        return os.path.isdir(self.main)

    # --- reporting ----------------------------------------------------------------------------

    def stats(self) -> dict:
        from . import cpu, cpuset, hugetlb, io, memory, pids
        dirs = self.dirs
        out = {"cpu": cpu.stats_v1(dirs.get("cpu"), dirs.get("cpuacct")),
               "cpuset": cpuset.stats(dirs["cpuset"], v2=False) if "cpuset" in dirs else {},
               "memory": memory.stats_v1(dirs["memory"]) if "memory" in dirs else {},
               "pids": pids.stats(dirs["pids"]) if "pids" in dirs else {},
               "blkio": io.stats_v1(dirs["blkio"]) if "blkio" in dirs else {},
               "hugetlb": {}, "intel_rdt": {}, "network_interfaces": None}
        if "hugetlb" in dirs:
            out["hugetlb"] = hugetlb.stats_v1(dirs["hugetlb"])
        elif self.unified_dir and os.path.isdir(self.unified_dir):
            out["hugetlb"] = hugetlb.stats_v2(self.unified_dir)
        return out

    def oom_kill_count(self) -> int:
        from . import memory
        return memory.oom_kills_v1(self.dirs["memory"]) if "memory" in self.dirs else 0

    def destroy(self) -> None:
        base.kill_and_remove(self, self.leaf_dirs(), self.main)
        base.remove_created_parents(self.created, keep=set(self.leaf_dirs()))
