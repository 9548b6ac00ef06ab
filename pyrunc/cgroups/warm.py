"""Start the kernel's wait for moving a process between cgroups early, off the critical path.

Every write of a pid to a ``cgroup.procs`` file takes one global lock, ``cgroup_threadgroup_rwsem``,
for writing.  It is a per-cpu rwsem: readers (fork, exit) stay on a fast path until a writer
arrives, and the writer first waits for an RCU grace period so that every reader has seen it
coming.  That wait costs 5-25 ms on this kind of machine.  ``create`` avoids moving the init at
all where it can (see :mod:`pyrunc.cgroups.base`); this module is for the moves that remain:
``pyrunc exec``'s process, and the init of a container with a user namespace.

The wait is skipped while the lock's "slow mode" is still on: for about one grace period after a
writer has left, a new writer goes straight through.  So :func:`start` launches a thread that,
while the runtime works, writes this process's own pid into the cgroup it is already in — a move
to where it is, which changes nothing but pays the grace period — and then repeats the write
every few milliseconds (half a grace period, as long as the first write waited), which keeps the
slow mode on, until :func:`stop`.  The real move then costs microseconds.  (The write holds the
global cgroup mutex while it waits: cgroup mkdirs wait with it.)

Nothing here may fail a container: any error just ends the warm-up.  The thread imports
nothing (a fork while it held the import lock would wedge the child).  Its descriptor is
close-on-exec, numbered above every descriptor the caller passes on (``--preserve-fds``,
``$LISTEN_FDS``: a free low number would pass for a preserved one), and closed by stage 1 like
every inherited one.  On hosts where cgroup2 is
mounted with ``favordynmods`` the lock never leaves slow mode and the writes are merely cheap.
"""

import _thread
import time

from ..linux import os

# The shortest pause between two writes: well inside one grace period (>= 4 ms here), so the
# slow mode never lapses; each write holds the lock for some microseconds.
INTERVAL = 0.002

_stop = None


def start(first_fd: int = 3) -> None:
    """Begin warming up (idempotent); the thread's descriptor is ``first_fd`` or above.
    Never raises."""
    global _stop
    if _stop is not None:
        return
    fd = _own_procs_file(first_fd)
    if fd is None:
        return
    _stop = _thread.allocate_lock()
    _stop.acquire()
    try:
        _thread.start_new_thread(_run, (fd, _stop))
    except RuntimeError:
        os.close(fd)
        _stop = None


def stop() -> None:
    """End the warm-up; the thread closes its descriptor and exits on its own."""
    global _stop
    if _stop is not None:
        _stop.release()
        _stop = None


def _run(fd: int, stop_lock) -> None:
    pid = str(os.getpid()).encode()
    try:
        began = time.monotonic()
        os.write(fd, pid)           # the first write waits for a grace period
        # Grace periods here last about as long as that wait: repeating at half of it keeps the
        # slow mode on without waking more often than needed (a slow VM has long ones).
        interval = max(INTERVAL, (time.monotonic() - began) / 2)
        while not stop_lock.acquire(timeout=interval):
            os.write(fd, pid)
    except OSError:
        pass
    finally:
        os.close(fd)


def _own_procs_file(first_fd: int) -> int | None:
    """An open ``cgroup.procs`` of a cgroup this process is in, or None.

    The unified hierarchy first (pure v2 at /sys/fs/cgroup, or hybrid at /sys/fs/cgroup/unified),
    then any v1 hierarchy mounted under its controllers' names.
    """
    try:
        with open("/proc/self/cgroup", "rb") as f:
            lines = f.read().decode().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _hid, controllers, path = line.split(":", 2)
        if controllers == "":
            candidates[:0] = [f"/sys/fs/cgroup{path}", f"/sys/fs/cgroup/unified{path}"]
        elif not controllers.startswith("name="):
            candidates.append(f"/sys/fs/cgroup/{controllers}{path}")
    import fcntl
    for directory in candidates:
        try:
            fd = os.open(f"{directory.rstrip('/')}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, first_fd)
        except OSError:
            return None
        finally:
            os.close(fd)
    return None
