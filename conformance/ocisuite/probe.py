"""Probes: busybox shell scripts run inside a container, and parsers for what they print.

A probe is a dict of named shell snippets.  They run in order, each in a
subshell, in one `sh -c` script whose stderr is joined to stdout once at the top;
each snippet's output is framed by marker lines carrying its name and exit
status, so one container answers many questions:

    @@<@ caps
    CapInh: ...
    @@>@ caps 0

The parsers read the kernel's own text formats: /proc/<pid>/status,
/proc/<pid>/mountinfo and /proc/<pid>/limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .registry import Failed

START, END = "@@<@", "@@>@"

# Capability numbers from the kernel's uapi/linux/capability.h.
CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
CAP_NUMBER = {name: i for i, name in enumerate(CAPS)}


def script(commands: dict[str, str]) -> str:
    """One sh script running every snippet, each framed by its markers."""
    parts = ["exec 2>&1"]  # once, for good: per-snippet redirections would make sh hold extra fds
    for name, cmd in commands.items():
        parts.append(f"echo '{START} {name}'\n( {cmd}\n)\necho \"{END} {name} $?\"")
    return "\n".join(parts) + "\n"


@dataclass
class Probe:
    raw: str
    sections: dict[str, str] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str) -> "Probe":
        probe = cls(raw)
        current, lines = None, []
        for line in raw.splitlines():
            if line.startswith(START + " "):
                current, lines = line[len(START) + 1:].strip(), []
            elif line.startswith(END + " ") and current is not None:
                name, _, rc = line[len(END) + 1:].rpartition(" ")
                probe.sections[current] = "\n".join(lines)
                probe.status[current] = int(rc) if rc.lstrip("-").isdigit() else -1
                current = None
            elif current is not None:
                lines.append(line)
        return probe

    def out(self, name: str) -> str:
        if name not in self.sections:
            tail = " | ".join(self.raw.strip().splitlines()[-4:])
            raise Failed(f"probe step {name!r} produced no result (container output: {tail!r})")
        return self.sections[name]

    def rc(self, name: str) -> int:
        self.out(name)
        return self.status[name]


def run(session, bundle, commands: dict[str, str], timeout: float = 15.0, **create_kw) -> Probe:
    """Run the snippets in a container made from bundle; parse their outputs."""
    bundle.set_script(script(commands))
    return Probe.parse(session.container(bundle).run(timeout=timeout, **create_kw))


# -- /proc parsers ---------------------------------------------------------------------

def parse_status(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def cap_names(hex_mask: str) -> set[str]:
    mask = int(hex_mask, 16)
    return {CAPS[i] if i < len(CAPS) else f"cap{i}" for i in range(64) if mask >> i & 1}


@dataclass
class Mount:
    mount_id: int
    parent_id: int
    devno: str
    root: str
    point: str
    options: set[str]
    optional: list[str]
    fstype: str
    source: str
    super_options: set[str]

    def tagged(self, prefix: str) -> bool:
        return any(tag.startswith(prefix) for tag in self.optional)


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f = left.split()
        r = right.split()
        if len(f) < 6 or len(r) < 3:
            continue
        mounts.append(Mount(int(f[0]), int(f[1]), f[2], _unescape(f[3]), _unescape(f[4]),
                            set(f[5].split(",")), f[6:], r[0], r[1], set(r[2].split(","))))
    return mounts


def mount_at(mounts: list[Mount], point: str) -> Mount:
    """The topmost mount at point (the last one listed there)."""
    found = [m for m in mounts if m.point == point]
    if not found:
        raise Failed(f"nothing is mounted at {point}")
    return found[-1]


def parse_limits(text: str) -> dict[str, tuple[str, str]]:
    """'Max open files' -> ('1024', '4096') from /proc/<pid>/limits."""
    limits = {}
    for line in text.splitlines()[1:]:
        m = re.match(r"^(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)", line)
        if m:
            limits[m.group(1)] = (m.group(2), m.group(3))
    return limits
