"""Control groups (config-linux.md#control-groups, #cgroups-path, resources).

Cgroup placement and limits are read on the host from /proc/<pid>/cgroup and
the cgroup files (v1 or v2, whichever hierarchy the runtime used); the device
allowlist is tested by its effect inside: opening a device node the list denies
fails with EPERM, one it allows reaches the driver (ENXIO for the unused
minor 1:200 the suite creates).
"""

from __future__ import annotations

from .. import host
from ..registry import MUST, Failed, check, expect, expect_eq
from .common import expect_create_error, field_refused, hold_probe

NODEV = {"path": "/dev/ocisuite-nodev", "type": "c", "major": 1, "minor": 200,
         "fileMode": 0o666, "uid": 0, "gid": 0}


def cgroup_probe(s) -> dict:
    """A container with cgroupsPath, pids and memory limits, seen from the host."""
    def compute():
        host.require_controller("pids")
        host.require_controller("memory")
        b = s.bundle()
        path = "/" + s.new_id()
        b.linux["cgroupsPath"] = path
        b.linux["resources"] = {"pids": {"limit": 10}, "memory": {"limit": 64 << 20}}

        def observe(pid, c):
            mine = host.cgroup_membership("self")
            theirs = host.cgroup_membership(pid)
            moved = {k: v for k, v in theirs.items() if mine.get(k) != v}
            return {
                "moved": moved,
                "dirs": host.cgroup_dirs(moved),
                "pids.max": _read(host.controller_file(pid, ("pids", "pids.max"), "pids.max")),
                "memory": _read(host.controller_file(
                    pid, ("memory", "memory.limit_in_bytes"), "memory.max")),
            }
        try:
            _, seen = hold_probe(s, b, {"self": "echo $$"}, observe)
        except Failed as exc:
            field_refused(s, exc)
        seen["left"] = [str(d) for d in seen["dirs"].values() if d.exists()]
        seen["path"] = path
        return seen
    return s.cached("cgroups", compute)


def _read(path) -> str:
    return path.read_text().strip()


@check("cgroups.path", "config-linux.md#cgroups-path", MUST,
       "an absolute cgroupsPath is taken relative to the cgroups mount point")
def cgroups_path(s):
    seen = cgroup_probe(s)
    expect(seen["moved"], "the container process shares every cgroup of the runtime")
    wrong = {k or "(v2)": v for k, v in seen["moved"].items() if v != seen["path"]}
    expect(not wrong, f"cgroups not at {seen['path']}: {wrong}")


@check("cgroups.path-removed", "runtime.md#delete", MUST,
       "delete removes the cgroups created for cgroupsPath")
def cgroups_path_removed(s):
    left = cgroup_probe(s)["left"]
    expect(not left, f"cgroups left after delete: {left}")


@check("cgroups.pids-limit", "config-linux.md#pids", MUST,
       "resources.pids.limit is the container cgroup's pids.max")
def pids_limit(s):
    expect_eq(cgroup_probe(s)["pids.max"], "10", "pids.max")


@check("cgroups.memory-limit", "config-linux.md#memory", MUST,
       "resources.memory.limit is the container cgroup's memory limit")
def memory_limit(s):
    expect_eq(cgroup_probe(s)["memory"], str(64 << 20), "memory limit")


@check("cgroups.devices-order", "config-linux.md#allowed-device-list", MUST,
       "the runtime MUST apply the allowed device list entries in the listed order")
def devices_order(s):
    b = s.bundle()
    b.linux["devices"] = [dict(NODEV)]
    b.linux["resources"] = {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 200, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 200, "access": "w"},
    ]}
    b.set_script("exec 2>&1; cat /dev/ocisuite-nodev; echo x > /dev/ocisuite-nodev; echo done")
    c = s.container(b)
    out = c.run()
    lines = [ln for ln in out.splitlines() if "ocisuite-nodev" in ln]
    expect(len(lines) == 2, f"unexpected output: {out!r}")
    read, write = lines
    expect("No such device" in read, f"read of an allowed device: {read!r} (want ENXIO)")
    expect("not permitted" in write, f"write after a later deny: {write!r} (want EPERM)")


@check("cgroups.unified-unknown", "config-linux.md#unified", MUST,
       "unified naming a controller that is not present MUST generate an error")
def unified_unknown(s):
    b = s.bundle()
    b.linux["resources"] = {"unified": {"ocisuitenone.max": "1"}}
    expect_create_error(s, b, "unified with an unknown controller")
