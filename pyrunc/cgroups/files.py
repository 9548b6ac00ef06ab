"""Reading and writing cgroup interface files.

A cgroup file takes one value per ``write(2)``; errors come back as errno values that only make
sense next to the value and the file, so :func:`write` puts both in the message under the
config field that asked for it::

    linux.resources.cpu.quota: write "10 100000" to /sys/fs/cgroup/x/cpu.max: Invalid argument
"""

import errno

from ..linux import os
from ..errors import CgroupError

MAX_U64 = 2**64 - 1


def write(directory: str, name: str, value, field: str) -> None:
    """Write ``value`` to ``directory/name``; a failure is a CgroupError naming ``field``."""
    path = os.path.join(directory, name)
    data = str(value)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
    except OSError as err:
        why = err.strerror
        if err.errno == errno.ENOENT:
            if not os.path.isdir(directory):
                raise CgroupError(f"{field}: cgroup {directory} does not exist") from None
            why = "not supported by this kernel or controller not enabled (no such file)"
        raise CgroupError(f"{field}: write {data!r} to {path}: {why}") from None


def read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def read_or(directory: str, name: str, default: str | None = None) -> str | None:
    try:
        return read(directory, name)
    except OSError:
        return default


def exists(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def to_int(text: str | None) -> int:
    """A counter or limit: ``max`` (or a missing file) reads as 0 for stats, like runc does
    for absent values; use :func:`limit_value` where ``max`` must be told apart."""
    if not text or text == "max":
        return 0
    return int(text)


def limit_value(text: str | None) -> int:
    """A limit file: ``max`` is the largest u64, as runc reports it."""
    if text is None:
        return 0
    return MAX_U64 if text == "max" else int(text)


def read_int(directory: str, name: str) -> int:
    return to_int(read_or(directory, name))


def flat_keyed(directory: str, name: str) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.stat, memory.events...) → dict; missing → {}."""
    out = {}
    text = read_or(directory, name, "")
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def nested_keyed(directory: str, name: str) -> list[tuple[str, dict[str, str]]]:
    """``KEY sub=value sub=value`` lines (io.stat, io.max, rdma.max) → [(KEY, {sub: value})]."""
    out = []
    for line in (read_or(directory, name, "") or "").splitlines():
        key, *pairs = line.split()
        out.append((key, dict(p.split("=", 1) for p in pairs if "=" in p)))
    return out


def procs(directory: str) -> list[int]:
    """PIDs in ``directory``'s cgroup.procs (not its children)."""
    text = read_or(directory, "cgroup.procs", "")
    return [int(p) for p in text.split()]


def subdirs(directory: str):
    """Child cgroups of ``directory``, each after the cgroups below it, as absolute paths (a
    directory that cannot be listed has none, as with os.walk)."""
    try:
        with os.scandir(directory) as entries:
            children = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for child in children:
        yield from subdirs(child)
        yield child
