"""What pyrunc-ctl knows about a container, the way Docker names it.

Docker separates a container's ID (64 hex digits, fixed for life) from its name (unique,
changeable with ``rename``). The supervisor's container id is the Docker ID, as with dockerd on
containerd; the name and the few things Docker reports that an OCI spec does not hold (the
image as the user typed it, the command as given, restart policy, log path) are labels under
``io.pyrunc.ctl/``. A reference on the command line is resolved as Docker does: full ID, then
exact name, then unique ID prefix.

``Record`` gathers one container and its task into the plain values every view needs (state,
start/finish times, exit code), so ps, inspect and the templates read one object.
"""
from __future__ import annotations

import json
import os
import re

from supervisor import restartpolicy

PREFIX = "io.pyrunc.ctl/"
NAME = PREFIX + "name"
IMAGE = PREFIX + "image"
CMD = PREFIX + "cmd"
LOG = PREFIX + "log"
LOG_URI = "io.pyrunc/log"  # the shim's json-file log (supervisor/checks.py LOG_LABEL)
CONFIG = PREFIX + "config"
ZERO_TIME = "0001-01-01T00:00:00Z"
_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_HEX_RE = re.compile(r"^[0-9a-f]+$")

# Words for generated names (adjective_noun, as Docker does; our own short lists).
_ADJ = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nimble", "proud", "quiet", "sharp", "swift", "tender", "vivid", "witty", "zen", "bold")
_NOUN = ("otter", "falcon", "maple", "comet", "harbor", "lynx", "nebula", "pebble", "quartz",
         "raven", "spruce", "tundra", "walrus", "yarrow", "zephyr", "badger", "cedar", "dune")


class NameError_(Exception):
    """A bad or conflicting container name (the caller turns it into Docker's message)."""


def new_id() -> str:
    return os.urandom(32).hex()


def random_name() -> str:
    a, n, d = os.urandom(3)
    return f"{_ADJ[a % len(_ADJ)]}_{_NOUN[n % len(_NOUN)]}{d % 100}"


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise NameError_(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                         "are allowed")
    return name.lstrip("/")


def name_filter(name: str) -> str:
    return f'labels."{NAME}"=={name}'


def is_hex_prefix(ref: str) -> bool:
    return bool(_HEX_RE.match(ref)) and len(ref) <= 64


def config_of(labels) -> dict:
    try:
        return json.loads(labels.get(CONFIG) or "{}")
    except ValueError:
        return {}


def user_labels(labels) -> dict:
    """The user's own labels (-l), without the ones pyrunc-ctl and restart policies keep."""
    return {k: v for k, v in labels.items()
            if not k.startswith(("io.pyrunc", "containerd.io/restart."))}


def _proc_start_time(pid: int) -> float | None:
    """When a host pid started (seconds since the epoch), from /proc: the task has no such field."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            btime = next(int(ln.split()[1]) for ln in f if ln.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


class Record:
    """One container as Docker describes it (a plain class: dataclasses cost ~15 ms to import).

    status is Docker's State.Status: created, running, paused or exited."""

    def __init__(self, id: str, name: str, image: str, command: list[str], created: float,
                 labels: dict, spec: dict, config: dict):
        self.id, self.name, self.image, self.command = id, name, image, command
        self.created, self.labels, self.spec, self.config = created, labels, spec, config
        self.status = "created"
        self.pid = self.exit_code = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.extra: dict = {}

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused")


def record(container, task) -> Record:
    """Build a Record from a containers.v1 Container and its task's init Process (or None)."""
    labels = dict(container.labels)
    spec = json.loads(container.spec.value or b"{}")
    try:
        command = json.loads(labels.get(CMD) or "null")
    except ValueError:
        command = None
    if command is None:
        command = (spec.get("process") or {}).get("args") or []
    created = container.created_at.seconds + container.created_at.nanos / 1e9
    rec = Record(id=container.id, name=labels.get(NAME) or container.id, image=labels.get(IMAGE,
                 ""), command=command, created=created, labels=labels, spec=spec,
                 config=config_of(labels))
    if task is None:
        return rec
    status = {1: "created", 2: "running", 3: "exited", 4: "paused", 5: "paused"}.get(
        task.status, "created")
    rec.status, rec.pid = status, task.pid
    if status == "exited":
        rec.exit_code = task.exit_status
        rec.finished = task.exited_at.seconds + task.exited_at.nanos / 1e9
        if restartpolicy.wants_restart(labels, task.exit_status):
            rec.status = "restarting"  # the supervisor brings it back after its back-off
    elif status in ("running", "paused"):
        rec.started = _proc_start_time(task.pid)
    return rec
