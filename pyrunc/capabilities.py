"""Capability names, and applying process.capabilities to the init before exec.

The five sets are applied in the only order the kernel allows:

1. drop from the bounding set what is not listed (needs CAP_SETPCAP, so while still root);
2. keep permitted capabilities across the uid change (PR_SET_KEEPCAPS) — done by the caller
   around setresuid, see :mod:`pyrunc.process`;
3. capset(effective, permitted, inheritable);
4. ambient: clear, then raise each listed one (it must be permitted and inheritable).

capset is called directly (linux/sys.py) rather than through python-prctl, whose capability
table stops before CAP_CHECKPOINT_RESTORE (40), a capability engines do ask for.

Per the spec, a name that cannot be mapped to the running kernel is a warning, not an error:
:func:`unknown` lists them so the parent can log them before the init starts.
"""

from pyrunc.spec import CAPABILITIES as NAMES   # capabilities(7), in bit order

# (the syscalls, pyrunc.linux.sys, are imported where they are made: the parent of create only
# checks names, and loading ctypes' core costs it some 1.5 ms; the init has it loaded already)

NUMBERS = {name: i for i, name in enumerate(NAMES)}
_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


_last_cap: int | None = None


def last_cap() -> int:
    """The kernel's highest capability number (read once per process)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _last_cap = int(f.read())
        except OSError:
            _last_cap = len(NAMES) - 1
    return _last_cap


def unknown(caps) -> list[str]:
    """Names in any set of ``caps`` (a spec.Capabilities) this kernel cannot grant."""
    top = last_cap()
    bad = []
    for set_name in _SETS:
        for name in getattr(caps, set_name):
            if NUMBERS.get(name, top + 1) > top and name not in bad:
                bad.append(name)
    return bad


def mask(names: list[str], top: int) -> int:
    bits = 0
    for name in names:
        num = NUMBERS.get(name)
        if num is not None and num <= top:
            bits |= 1 << num
    return bits


def drop_bounding(caps) -> None:
    from pyrunc.linux import sys as k
    top = last_cap()
    keep = mask(caps.bounding, top)
    for num in range(top + 1):
        if not keep & (1 << num):
            k.prctl(k.PR_CAPBSET_DROP, num)


def apply_sets(caps) -> None:
    """capset the effective/permitted/inheritable sets, then the ambient set."""
    from pyrunc.linux import sys as k
    top = last_cap()
    permitted, inheritable = mask(caps.permitted, top), mask(caps.inheritable, top)
    k.capset(mask(caps.effective, top), permitted, inheritable)
    k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_CLEAR_ALL)
    raisable = permitted & inheritable      # the kernel's rule; the rest was warned about
    for num in range(top + 1):
        if mask(caps.ambient, top) & raisable & (1 << num):
            k.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_RAISE, num)


def runtime_bounding() -> int:
    """The capabilities this runtime itself may still grant (its own bounding set)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return (1 << (last_cap() + 1)) - 1


def restrict_to_grantable(caps) -> list[str]:
    """Drop from every set what the runtime cannot grant (config.md: a warning, not a failure —
    e.g. CAP_SYS_RESOURCE on a host that withholds it); the warnings to log."""
    have = runtime_bounding()
    missing = []
    for set_name in _SETS:
        names = getattr(caps, set_name)
        kept = [n for n in names if n not in NUMBERS or have & (1 << NUMBERS[n])]
        missing += [n for n in names if n not in kept and n not in missing]
        setattr(caps, set_name, kept)
    return [f"capability {name} cannot be granted (the runtime does not hold it); ignored"
            for name in missing]


def warnings(caps) -> list[str]:
    """What cannot be granted as asked: unknown names, ambient ones not permitted+inheritable."""
    out = [f"capability {name} is not supported by this kernel; ignored"
           for name in unknown(caps) if name in NUMBERS]      # unknown names: validate.py
    for name in caps.ambient:
        if name in NUMBERS and (name not in caps.permitted or name not in caps.inheritable):
            out.append(f"ambient capability {name} is not also permitted and inheritable; "
                       "ignored")
    return out
