"""Restart policies as labels: containerd's restart-monitor names, and the one rule deciding
whether a container whose task ended comes back (used by the supervisor's monitor,
supervisor/core/restart.py, and by pyrunc-ctl to show "Restarting"). Pure logic, cheap to import.
"""
from __future__ import annotations

POLICY = "containerd.io/restart.policy"
STATUS = "containerd.io/restart.status"
LOGURI = "containerd.io/restart.loguri"
COUNT = "io.pyrunc/restart.count"


def parse_policy(text: str) -> tuple[str, int]:
    name, _, count = (text or "").partition(":")
    try:
        return name, int(count or 0)
    except ValueError:
        return "", 0


def wants_restart(labels, exit_status: int | None, at_start: bool = False) -> bool:
    """Should a container with these labels, whose task ended with ``exit_status`` (None: no
    task at all), be started again?"""
    name, limit = parse_policy(labels.get(POLICY, ""))
    running = labels.get(STATUS) == "running"
    if name == "always":
        return running or at_start
    if name == "unless-stopped":
        return running
    if name == "on-failure":
        count = int(labels.get(COUNT) or 0)
        failed = exit_status is None or exit_status != 0
        return running and failed and (limit <= 0 or count < limit)
    return False
