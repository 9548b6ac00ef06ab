"""Processes as seen through /proc, and signals sent to exactly the process meant.

A pid alone can be recycled: the state file records the init's pid *and* its start time (field 22
of ``/proc/<pid>/stat``, clock ticks since boot), and every check compares both.  Signals go through
a pidfd opened and then re-verified against the start time, so a signal can never reach a
different process that happens to reuse the pid.
"""

import select

from _signal import pidfd_send_signal

from pyrunc.linux import os


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is field 3, the state)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2:].decode().split()


def start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, started: int | None) -> bool:
    """True if ``pid`` is the process that started at ``started`` and has not exited."""
    if pid <= 0:
        return False
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def open_pidfd(pid: int, started: int | None) -> int | None:
    """A pidfd for the process ``pid`` that started at ``started``, or None if it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if started is not None and start_time(pid) != started:
        os.close(fd)
        return None
    return fd


def signal_pidfd(pidfd: int, sig: int) -> None:
    pidfd_send_signal(pidfd, sig)


def wait_exit(pidfd: int, timeout: float | None) -> bool:
    """Wait until the process behind ``pidfd`` exits; False on time-out."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else int(timeout * 1000)))


def in_user_namespace() -> bool:
    """Does this process run in a user namespace other than the initial one (as the runtime does
    under rootless podman, uid 0 of the user's namespace)?  The initial one maps every id."""
    try:
        with open("/proc/self/uid_map", "rb") as f:
            return f.read().split() != [b"0", b"0", b"4294967295"]
    except OSError:
        return False
