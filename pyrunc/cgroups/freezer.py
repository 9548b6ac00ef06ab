"""Freezing: v2 cgroup.freeze (+ ``frozen`` in cgroup.events), v1 freezer.state.

Both are asynchronous: the write asks, and the cgroup is frozen once every task has stopped.
``freeze`` waits for that; if it does not happen in time, the cgroup is thawed again and the
call fails, so a container is never left half-frozen.  On v1 a freeze that stays in FREEZING
(a task racing with fork) is retried by thawing and freezing again.
"""

import time

from ..errors import CgroupError
from . import files
from .base import SETTLE_TIMEOUT


def _wait(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def _events_frozen(d: str) -> bool:
    return files.flat_keyed(d, "cgroup.events").get("frozen") == 1


def freeze_v2(d: str, timeout: float = SETTLE_TIMEOUT) -> None:
    files.write(d, "cgroup.freeze", "1", "pause")
    if not _wait(lambda: _events_frozen(d), timeout):
        files.write(d, "cgroup.freeze", "0", "pause")
        raise CgroupError(f"pause: {d}: tasks did not freeze within {timeout:g}s")


def thaw_v2(d: str) -> None:
    files.write(d, "cgroup.freeze", "0", "resume")


def frozen_v2(d: str) -> bool:
    return files.read_or(d, "cgroup.freeze") == "1"


def freeze_v1(d: str, timeout: float = SETTLE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        files.write(d, "freezer.state", "FROZEN", "pause")
        if _wait(lambda: files.read(d, "freezer.state") == "FROZEN", 0.5):
            return
        if time.monotonic() > deadline:
            files.write(d, "freezer.state", "THAWED", "pause")
            raise CgroupError(f"pause: {d}: tasks did not freeze within {timeout:g}s")
        files.write(d, "freezer.state", "THAWED", "pause")


def thaw_v1(d: str) -> None:
    files.write(d, "freezer.state", "THAWED", "resume")
    if not _wait(lambda: files.read(d, "freezer.state") == "THAWED", SETTLE_TIMEOUT):
        raise CgroupError(f"resume: {d}: tasks did not thaw")


def frozen_v1(d: str) -> bool:
    state = files.read_or(d, "freezer.state", "THAWED")
    return state != "THAWED"
