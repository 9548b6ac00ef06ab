"""Run the runtime from a read-only view of its interpreter (the CVE-2019-5736 class).

A runtime process that enters a container — the init before it execs the user's program, the
process ``pyrunc exec`` starts — runs the host's Python interpreter.  Its ``/proc/<pid>/exe`` is
then a handle on that host file, and a hostile container can reach it: the classic trick makes
the container's program a script starting ``#!/proc/self/exe``, so the kernel runs the host
interpreter inside the container, whose ``/proc/self/exe`` the attacker opens and later writes
to, once no process executes it any more.

``pyrunc create``, ``run`` and ``exec`` therefore re-execute themselves first, once, from a
detached read-only bind mount of the interpreter: ``open_tree(OPEN_TREE_CLONE)`` of the binary,
``mount_setattr(MOUNT_ATTR_RDONLY)``, ``execveat(AT_EMPTY_PATH)``.  The mount is attached
nowhere, so nothing in any container can find it by path, and every process forked afterwards
has an ``exe`` on it: opening it for writing fails with EROFS.  It costs one more interpreter
start-up on those three commands; the other commands never enter a container.

``make setup`` avoids that cost: the venv holds its own copies of the interpreter
(``venv --copies``), made immutable (``chattr +i``) — no one, root included, can open them for
writing — and a process whose exe is immutable needs no re-exec.  Where neither works (an
unprivileged caller, a filesystem without the attribute), pyrunc goes on unsealed: it then has
nothing a container could not already reach.
"""

import sys

from pyrunc.linux import os

_MARK = "_PYRUNC_SEALED"


FS_IOC_GETFLAGS = 0x80086601
FS_IMMUTABLE_FL = 0x10


def _exe_is_immutable() -> bool:
    """``make setup`` installs the venv's interpreter copies immutable (chattr +i): nobody,
    root included, can open them for writing, so there is nothing to seal."""
    import fcntl
    import struct
    try:
        fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8))[0]
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(flags & FS_IMMUTABLE_FL)


def ensure_sealed() -> None:
    """Re-exec from a read-only interpreter unless this process's exe is safe already."""
    mark = os.getenv(_MARK)
    if mark is not None:
        os.unsetenv(_MARK)      # (it must not reach hooks or the container)
    if mark == "1" or _exe_is_immutable():
        return
    from pyrunc.linux import sys as k
    try:
        exe = os.path.realpath("/proc/self/exe")
        fd = k.open_tree(k.AT_FDCWD, exe, k.OPEN_TREE_CLONE | k.OPEN_TREE_CLOEXEC)
    except OSError:
        return
    try:
        k.mount_setattr(fd, "", k.AT_EMPTY_PATH,
                        k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NOSUID | k.MOUNT_ATTR_NODEV)
        env = dict(os.environ)
        env[_MARK] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(fd, sys.orig_argv, env)   # fexecve: execveat(fd, "", AT_EMPTY_PATH)
    except OSError:
        os.close(fd)        # carry on unsealed rather than fail
