"""``linux.resources.unified``: cgroup v2 files written verbatim.

Keys are file names ``<controller>.<name>`` in the container's cgroup.  The controller must be
enabled there (``cgroup.*`` core files need none); files that move or kill tasks or freeze the
cgroup are the runtime's business, not resources, and are refused.  Values are written as
given; the kernel judges them.
"""

from ..errors import CgroupError
from . import files

F = "linux.resources.unified"
NOT_RESOURCES = {"cgroup.procs", "cgroup.threads", "cgroup.kill", "cgroup.freeze",
                 "cgroup.events", "cgroup.controllers"}


def controllers_needed(unified: dict[str, str]) -> set[str]:
    return {key.split(".", 1)[0] for key in unified} - {"cgroup"}


def check(unified: dict[str, str], available: set[str], where: str = "") -> None:
    for key in unified:
        ctrl = key.split(".", 1)[0]
        if key in NOT_RESOURCES:
            raise CgroupError(f"{F}.{key}: is not a resource file")
        if ctrl != "cgroup" and ctrl not in available:
            have = " ".join(sorted(available)) or "none"
            raise CgroupError(f"{F}.{key}: the {ctrl} controller is not available{where} "
                              f"(available: {have})")


def set_unified(d: str, unified: dict[str, str], available: set[str], where: str = "") -> None:
    check(unified, available, where)
    for key, value in unified.items():
        files.write(d, key, value, f"{F}.{key}")
