"""Device access: ``linux.resources.devices`` plus the devices every container gets.

The effective rule list, applied in order (a later rule overrides an earlier one)::

    deny  a *:* rwm                  everything is denied unless allowed below
    ...   linux.resources.devices    the config's rules, in its order
    allow <devices>  rwm             only when the caller passes ``devices`` (see below)
    allow c *:* m, b *:* m           mknod is harmless without read/write
    allow c 1:3 1:5 1:7 1:8 1:9      null zero full random urandom
    allow c 5:0 5:2 136:*            tty ptmx pts (the console is a pts)

The defaults come after the config's rules (as runc does), so a config that starts with the
usual ``{"allow": false, "access": "rwm"}`` still gets a working /dev.  ``Manager.create`` takes
an optional ``devices`` list (raw ``linux.devices`` entries) whose nodes it then allows; the
runtime does not pass it (pyrunc/create.py): as with runc, a node in ``linux.devices`` is
created but opens only if ``linux.resources.devices`` allows it (engines list the nodes they
add there).

v1 writes the list to devices.deny / devices.allow, and the kernel's exception-list semantics
apply.  v2 compiles it into a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program (see :func:`compile_rules`)
attached to the cgroup with ``BPF_F_ALLOW_MULTI``; replacing the rules attaches the new program
before detaching the old ones, so access is never wider than either list during the change.
"""

from ..linux import os
from ..errors import CgroupError
from . import files
from .resources import DeviceRule

F = "linux.resources.devices"

DENY_ALL = DeviceRule(False, "a", None, None, "rwm")
DEFAULT_RULES = [
    DeviceRule(True, "c", None, None, "m"),
    DeviceRule(True, "b", None, None, "m"),
    DeviceRule(True, "c", 1, 3, "rwm"),      # /dev/null
    DeviceRule(True, "c", 1, 5, "rwm"),      # /dev/zero
    DeviceRule(True, "c", 1, 7, "rwm"),      # /dev/full
    DeviceRule(True, "c", 1, 8, "rwm"),      # /dev/random
    DeviceRule(True, "c", 1, 9, "rwm"),      # /dev/urandom
    DeviceRule(True, "c", 5, 0, "rwm"),      # /dev/tty
    DeviceRule(True, "c", 5, 2, "rwm"),      # /dev/ptmx
    DeviceRule(True, "c", 136, None, "rwm"), # /dev/pts/*
]


def rules_for_nodes(devices: list | None) -> list[DeviceRule]:
    """Allow rules for the config's ``linux.devices`` (the nodes the runtime creates)."""
    rules = []
    for i, d in enumerate(devices or []):
        where = f"linux.devices[{i}]"
        if not isinstance(d, dict):
            raise CgroupError(f"{where}: must be an object")
        dtype = {"c": "c", "u": "c", "b": "b"}.get(d.get("type"))
        if dtype is None:               # fifos ("p") are not devices for the cgroup
            continue
        major, minor = d.get("major"), d.get("minor")
        for key, value in (("major", major), ("minor", minor)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
                raise CgroupError(f"{where}.{key}: {value!r} is not a device number")
        rules.append(DeviceRule(True, dtype, major, minor, "rwm"))
    return rules


def effective(user_rules: list[DeviceRule] | None, node_rules: list[DeviceRule]) -> list[DeviceRule]:
    return [DENY_ALL, *(user_rules or []), *node_rules, *DEFAULT_RULES]


def allowed(rules: list[DeviceRule], dtype: str, major: int, minor: int, access: str) -> bool:
    """The reference meaning of a rule list, in plain Python: for each requested access bit the
    last rule that matches the device and names the bit decides; all bits must be allowed.
    (The BPF program computes exactly this; tests compare the two.)"""
    for bit in access:
        verdict = False
        for r in rules:
            if r.type in ("a", dtype) and r.major in (None, major) and \
                    r.minor in (None, minor) and bit in r.access:
                verdict = r.allow
        if not verdict:
            return False
    return True


# --- v1 ---------------------------------------------------------------------------------------

def set_v1(d: str, user_rules: list[DeviceRule] | None, node_rules: list[DeviceRule]) -> None:
    labelled = [(DENY_ALL, F)]
    labelled += [(r, f"{F}[{i}]") for i, r in enumerate(user_rules or [])]
    labelled += [(r, "linux.devices") for r in node_rules]
    labelled += [(r, F) for r in DEFAULT_RULES]
    for rule, field in labelled:
        name = "devices.allow" if rule.allow else "devices.deny"
        for line in rule.v1_lines():
            files.write(d, name, line, field)


# --- v2: eBPF ---------------------------------------------------------------------------------

_ACCESS_BITS = {"m": 1, "r": 2, "w": 4}      # BPF_DEVCG_ACC_*
_TYPE = {"b": 1, "c": 2}                     # BPF_DEVCG_DEV_*


def _bits(access: str) -> int:
    return sum(_ACCESS_BITS[c] for c in set(access))


def compile_rules(rules: list[DeviceRule]) -> bytes:
    """The device program for ``rules`` (see :func:`allowed` for the meaning).

    Rules are visited from the last to the first, with r3 holding the requested access bits
    not decided yet: a matching allow rule clears its bits (all clear → allow); a matching deny
    rule that names a requested bit denies.  Nothing left to visit → deny.  Jumps only go
    forward, and an unconditional ``a *:* rwm`` rule ends the walk (the verifier refuses
    unreachable code, and nothing before it could matter)."""
    from ..linux.bpf import Asm, R0, R1, R2, R3, R4, R5

    a = Asm()
    a.ldx_w(R2, R1, 0)            # access_type = (access << 16) | type
    a.mov(R3, src=R2)
    a.alu("and", R2, 0xFFFF)      # r2: device type
    a.alu("rsh", R3, 16)          # r3: requested access bits
    a.ldx_w(R4, R1, 4)            # r4: major
    a.ldx_w(R5, R1, 8)            # r5: minor
    uses_allow = False
    for i, r in enumerate(reversed(rules)):
        skip = f"next{i}"
        conditional = False
        if r.type != "a":
            a.jmp("jne", R2, _TYPE[r.type], skip)
            conditional = True
            if r.major is not None:
                a.jmp("jne", R4, r.major, skip)
            if r.minor is not None:
                a.jmp("jne", R5, r.minor, skip)
        bits = _bits(r.access)
        if r.allow:
            a.alu("and", R3, ~bits)
            a.jmp("jeq", R3, 0, "allow")
            uses_allow = True
        else:
            a.jmp("jset", R3, bits, "deny")
        if conditional:
            a.label(skip)
        elif bits == 7:
            break
    a.label("deny")
    a.mov(R0, 0)
    a.exit()
    if uses_allow:
        a.label("allow")
        a.mov(R0, 1)
        a.exit()
    return a.assemble()


def set_v2(d: str, rules: list[DeviceRule]) -> None:
    """Load the program for ``rules`` and make it the only device program of ``d``."""
    from ..linux import bpf

    for i, r in enumerate(rules):
        for value in (r.major, r.minor):
            if value is not None and value >= 2**31:
                raise CgroupError(f"{F}: device number {value} is too large")
    code = compile_rules(rules)
    prog = dirfd = -1
    try:
        prog = bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, code, name="pyrunc_devices")
        dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        old = bpf.prog_query(dirfd, bpf.BPF_CGROUP_DEVICE)
        bpf.prog_attach(dirfd, prog, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI)
        for prog_id in old:
            old_fd = bpf.prog_get_fd_by_id(prog_id)
            try:
                bpf.prog_detach(dirfd, old_fd, bpf.BPF_CGROUP_DEVICE)
            finally:
                os.close(old_fd)
    except OSError as err:
        raise CgroupError(f"{F}: {err} ({d})") from None
    finally:
        for fd in (prog, dirfd):
            if fd >= 0:
                os.close(fd)


def attached_v2(d: str) -> list[int]:
    """IDs of the device programs attached to ``d`` (for tests and diagnostics)."""
    from ..linux import bpf

    dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return bpf.prog_query(dirfd, bpf.BPF_CGROUP_DEVICE)
    finally:
        os.close(dirfd)
