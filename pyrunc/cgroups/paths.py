"""Where a container's cgroup lives: ``linux.cgroupsPath``, the mounted hierarchies, our own cgroup.

``cgroupsPath`` (config-linux.md):

* absolute (``/a/b``): relative to the root of each hierarchy's mount;
* relative (``a/b``): under the runtime's own cgroup — on cgroup v1 under our cgroup in each
  hierarchy, on cgroup v2 under its *parent*, because our own cgroup holds processes and the v2
  "no internal processes" rule would stop controllers being enabled for a child of it;
* absent: ``/pyrunc/<container-id>``.

``..`` components are refused rather than resolved, so a path can never leave the hierarchy.
systemd-style ``slice:prefix:name`` paths are recognised and refused (no systemd driver yet).
"""

from ..linux import os
from ..errors import CgroupError

CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/pyrunc"

# v1 controllers we know how to use (others mounted on v1 are joined but not configured)
V1_CONTROLLERS = ("cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer",
                  "net_cls", "net_prio", "perf_event", "hugetlb", "pids", "rdma", "misc")


def clean(cgroups_path: str | None, container_id: str) -> str:
    """Validate ``cgroupsPath`` and normalise it to ``/a/b`` or ``a/b``."""
    field = "linux.cgroupsPath"
    if cgroups_path is None:
        if not container_id or "/" in container_id or container_id in (".", "..") \
                or "\0" in container_id:
            raise CgroupError(f"cgroup: container id {container_id!r} cannot name a cgroup")
        return f"{DEFAULT_PARENT}/{container_id}"
    if not isinstance(cgroups_path, str):
        raise CgroupError(f"{field}: must be a string")
    if not cgroups_path.startswith("/") and cgroups_path.count(":") == 2:
        raise CgroupError(f"{field}: {cgroups_path!r} looks like a systemd slice:prefix:name path; "
                          "the systemd cgroup driver is not supported")
    if "\0" in cgroups_path:
        raise CgroupError(f"{field}: contains a NUL byte")
    parts = [p for p in cgroups_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CgroupError(f"{field}: {cgroups_path!r} must not contain '..'")
    if not parts:
        raise CgroupError(f"{field}: {cgroups_path!r} names the root cgroup")
    prefix = "/" if cgroups_path.startswith("/") else ""
    return prefix + "/".join(parts)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def cgroup_mounts() -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount root, mount point, super options) of every cgroup/cgroup2 mount."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, superopts = (right.split() + ["", "", ""])[:3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            fields = left.split()
            out.append((fstype, _unescape(fields[3]), _unescape(fields[4]),
                        set(superopts.split(","))))
    return out


def v1_hierarchies(mounts: list | None = None) -> dict[str, tuple[str, str]]:
    """controller → (mount point, mount root) for each v1 controller that is mounted, and
    ``name=X`` → the same for named hierarchies (``name=systemd``): the container gets a
    directory there too, as runc gives it, so tools that look there find it.  ``mounts``:
    :func:`cgroup_mounts` if the caller has read them already."""
    out: dict[str, tuple[str, str]] = {}
    for fstype, root, point, opts in cgroup_mounts() if mounts is None else mounts:
        if fstype != "cgroup":
            continue
        for ctrl in V1_CONTROLLERS:
            if ctrl in opts and ctrl not in out:
                out[ctrl] = (point, root)
        for opt in opts:
            if opt.startswith("name=") and opt not in out:
                out[opt] = (point, root)
    return out


def unified_mount(mounts: list | None = None) -> tuple[str, str] | None:
    """(mount point, mount root) of the cgroup2 hierarchy, preferring the usual places."""
    found = [(point, root) for fstype, root, point, _ in
             (cgroup_mounts() if mounts is None else mounts) if fstype == "cgroup2"]
    for preferred in (CGROUP_ROOT, f"{CGROUP_ROOT}/unified"):
        for point, root in found:
            if point == preferred:
                return point, root
    return found[0] if found else None


def own_cgroups(pid: str = "self") -> dict[str, str]:
    """Our cgroup per hierarchy from /proc/<pid>/cgroup: {"memory": "/a", ..., "": "/b"}
    (``""`` is the v2 hierarchy)."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for ctrl in ctrls.split(",") if ctrls else [""]:
                out[ctrl] = path
    return out


def resolve(clean_path: str, mount_point: str, mount_root: str, own: str | None,
            v2: bool) -> str:
    """The directory of ``clean_path`` in the hierarchy mounted at ``mount_point``."""
    if clean_path.startswith("/"):
        return mount_point + clean_path
    base = own or "/"
    if v2:
        base = os.path.dirname(base.rstrip("/")) or "/"
    # our cgroup is given relative to the hierarchy's root; the mount may show a subtree of it
    if mount_root != "/" and (base == mount_root or base.startswith(mount_root + "/")):
        base = base[len(mount_root):] or "/"
    return os.path.join(mount_point + base.rstrip("/"), clean_path)


def under(path: str, mount_point: str) -> bool:
    return path.startswith(mount_point.rstrip("/") + "/") and "/../" not in path + "/"
