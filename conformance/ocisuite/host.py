"""Host-side observations and helpers: namespaces, processes, mounts, cgroups.

The runtime namespace is the suite's own (the suite starts the runtime), so a
container's namespaces are compared with /proc/self/ns/*.  Cgroup directories
are found from the host's mountinfo: a v1 hierarchy by its controllers in the
super options, the v2 hierarchy by its fstype.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .probe import parse_mountinfo
from .registry import Failed, Skipped

NS_FLAGS = {"pid": "--pid", "network": "--net", "ipc": "--ipc", "uts": "--uts",
            "mount": "--mount", "cgroup": "--cgroup", "user": "--user", "time": "--time"}
NS_FILE = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
           "cgroup": "cgroup", "user": "user", "time": "time"}


def ns_link(pid, ns_type: str) -> str:
    """e.g. 'net:[4026531840]' for the namespace type of the spec ('network')."""
    return os.readlink(f"/proc/{pid}/ns/{NS_FILE[ns_type]}")


def kernel_has_ns(ns_type: str) -> bool:
    return os.path.exists(f"/proc/self/ns/{NS_FILE[ns_type]}")


def require_ns(ns_type: str) -> None:
    if not kernel_has_ns(ns_type):
        raise Skipped(f"host: the kernel has no {ns_type} namespace")


def namespace_holder(session, types: list[str], hostname: str | None = None) -> int:
    """A sleeping host process in new namespaces of the given types; its pid."""
    script = f"hostname {hostname}; exec sleep 600" if hostname else "exec sleep 600"
    flags = [NS_FLAGS[t] for t in types]
    if "pid" in types:
        flags.append("--fork")
    proc = session.spawn(["unshare", *flags, "--", "/bin/sh", "-c", script])
    deadline = time.monotonic() + 5
    pid = proc.pid
    while time.monotonic() < deadline:
        if "pid" in types:  # the sleeper is unshare's child
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            children = kids.read_text().split() if kids.exists() else []
            pid = int(children[0]) if children else 0
        if pid and _comm(pid) == "sleep":
            return pid
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    raise Failed(f"could not start a namespace holder with {flags}")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """True for a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes_inside(path: Path) -> list[int]:
    """Pids whose root directory or cwd lies under path (a container left behind)."""
    found = []
    target = str(path)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for link in ("root", "cwd"):
            try:
                dest = os.readlink(f"/proc/{entry}/{link}")
            except OSError:
                continue
            if dest == target or dest.startswith(target + "/"):
                found.append(int(entry))
                break
    return found


def mounts_under(path: Path) -> list[str]:
    """Mount points in the suite's mount namespace at or below path."""
    target = str(path)
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    return [m.point for m in mounts if m.point == target or m.point.startswith(target + "/")]


# -- cgroups ----------------------------------------------------------------------------

def cgroup_membership(pid) -> dict[str, str]:
    """hierarchy key ('memory', 'cpu,cpuacct', 'name=systemd', '' for v2) -> path."""
    result = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        result[controllers] = path
    return result


def cgroup_mount(controllers: str) -> Path | None:
    """Where the hierarchy of those controllers is mounted on the host."""
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    for m in mounts:
        if controllers == "" and m.fstype == "cgroup2":
            return Path(m.point)
        if controllers and m.fstype == "cgroup" and \
                set(controllers.split(",")) <= m.super_options:
            return Path(m.point)
    return None


def cgroup_mountpoints() -> list[Path]:
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    return [Path(m.point) for m in mounts if m.fstype in ("cgroup", "cgroup2")]


def remove_cgroups_named(prefix: str, depth: int = 4) -> list[str]:
    """Kill what is left in, and remove, cgroups whose name starts with prefix
    (a runtime killed on a time-out cannot clean up after itself)."""
    removed = []
    for base in cgroup_mountpoints():
        for dirpath, dirnames, _ in os.walk(base):
            if len(Path(dirpath).relative_to(base).parts) >= depth:
                dirnames[:] = []
                continue
            for name in [d for d in dirnames if d.startswith(prefix)]:
                dirnames.remove(name)
                if _remove_cgroup_tree(Path(dirpath) / name):
                    removed.append(str(Path(dirpath) / name))
    return removed


def _remove_cgroup_tree(path: Path) -> bool:
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        _remove_cgroup_tree(child)
    for _ in range(50):
        try:
            for pid in (path / "cgroup.procs").read_text().split():
                os.kill(int(pid), 9)
        except OSError:
            pass
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return False
        except OSError:
            time.sleep(0.02)
    return False


def cgroup_dirs(membership: dict[str, str]) -> dict[str, Path]:
    """hierarchy key -> host directory of that cgroup."""
    dirs = {}
    for key, path in membership.items():
        base = cgroup_mount(key)
        if base is not None:
            dirs[key] = base / path.lstrip("/")
    return dirs


def controller_file(pid: int, v1: tuple[str, str], v2: str) -> Path:
    """The file of the cgroup of pid: (v1 controller, v1 file) or the v2 file name."""
    membership = cgroup_membership(pid)
    for key, path in membership.items():
        if v1[0] in key.split(","):
            base = cgroup_mount(key)
            if base and (base / path.lstrip("/") / v1[1]).exists():
                return base / path.lstrip("/") / v1[1]
    if "" in membership:
        base = cgroup_mount("")
        if base and (base / membership[""].lstrip("/") / v2).exists():
            return base / membership[""].lstrip("/") / v2
    raise Failed(f"no {v1[0]} cgroup file ({v1[1]} / {v2}) for pid {pid}: {membership}")


def require_controller(name: str) -> None:
    known = Path("/proc/cgroups").read_text()
    if not any(line.split()[0] == name and line.split()[3] == "1"
               for line in known.splitlines()[1:]):
        raise Skipped(f"host: no {name} cgroup controller")
