"""Named network namespaces: a new namespace bind-mounted on a file, so it outlives its processes.

The namespace is made by a short-lived thread of the daemon: ``unshare(CLONE_NEWNET)`` moves only
that thread into a new namespace, whose ``/proc/thread-self/ns/net`` is bind-mounted on the target
file; the thread sets its loopback up while it is there, returns to the daemon's namespace and
ends. A thread of its own (not a pool's) is used so that a thread that failed to get back can
never run anything else. No process is forked, which keeps grpc's threads out of it.

The namespace lives as long as the bind mount (or a process in it). ``remove`` detaches the mount
(MNT_DETACH: a runtime that still has it open keeps it until it closes it) and unlinks the file.
"""
from __future__ import annotations

import errno
import os
import threading

from pyrunc.linux import sys as linux


def _in_thread(name: str, enter, fn):
    """``fn()`` in a thread of its own that ``enter()`` moved into another network namespace
    (unshare or setns), and that goes back home after: only that thread ever leaves the
    daemon's namespace, and one that failed to get back never runs anything else."""
    result: list = []

    def body():
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            result.append(e)
            return
        try:
            enter()
            try:
                result.append(("ok", fn()))
            finally:
                linux.setns(home, linux.CLONE_NEWNET)
        except BaseException as e:  # reported to the caller
            result.append(e)
        finally:
            os.close(home)

    t = threading.Thread(target=body, name=name, daemon=True)
    t.start()
    t.join()
    out = result[0] if result else RuntimeError("netns thread ended without a result")
    if isinstance(out, tuple):
        return out[1]
    raise out


def _loopback_up() -> None:
    """Set ``lo`` up in this thread's namespace (netlink; lo's index is always 1)."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        ipr.link("set", index=1, state="up")


def create(path: str) -> None:
    """A new network namespace mounted on ``path`` (created; must not exist)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
    os.close(fd)

    def bind():
        linux.mount("/proc/thread-self/ns/net", path, None, linux.MS_BIND)
        _loopback_up()
    try:
        _in_thread("netns-create", lambda: linux.unshare(linux.CLONE_NEWNET), bind)
    except BaseException as err:
        remove(path)
        if isinstance(err, OSError):
            raise OSError(err.errno, f"network namespace: {err.strerror}", path) from None
        raise


def is_mounted(path: str) -> bool:
    """Whether ``path`` is a mount point (the namespace is bound there)."""
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split()[4].replace("\\040", " ") == target:
                return True
    return False


def remove(path: str) -> None:
    """Unmount and unlink ``path``; a path already gone is not an error."""
    while True:
        try:
            linux.umount2(path, linux.MNT_DETACH)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                break
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def run_inside(path: str, fn):
    """``fn()`` run in the namespace mounted on ``path``, by a thread of its own (as ``create``).
    Sockets ``fn`` makes stay in that namespace for their whole life: the containers' resolver
    binds 127.0.0.11 there this way."""
    def enter():
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(target, linux.CLONE_NEWNET)
        finally:
            os.close(target)
    return _in_thread("netns-enter", enter, fn)
