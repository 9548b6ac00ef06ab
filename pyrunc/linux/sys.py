"""Thin ctypes wrappers for the syscalls Python's ``os`` module lacks.

Every wrapper calls libc with ``use_errno=True`` and turns a failure into
``OSError(errno, strerror, path)``, so callers handle kernel errors like any other ``OSError``
and messages read ``mount /proc: Permission denied``.  Nothing here has policy: the rest of the
runtime decides what to call and in which order.

Raw syscall numbers are for x86_64 (the only architecture this project runs on); libc symbols are
used where glibc 2.36 has them.
"""

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)

# --- constants --------------------------------------------------------------------------------

# clone/unshare/setns namespace flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 0x10000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# openat2 resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# new mount API
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x00100000

# x86_64 syscall numbers not exported by glibc 2.36
_SYS_pivot_root = 155
_SYS_setns = 308
_SYS_pidfd_send_signal = 424
_SYS_pidfd_open = 434
_SYS_open_tree = 428
_SYS_move_mount = 429
_SYS_openat2 = 437
_SYS_mount_setattr = 442
_SYS_execveat = 322
_SYS_keyctl = 250

KEYCTL_JOIN_SESSION_KEYRING = 1

PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8

_syscall = libc.syscall
_syscall.restype = ctypes.c_long


class SysError(OSError):
    """An ``OSError`` that also names the operation: ``str()`` gives ``mount /proc: Permission denied``."""

    def __init__(self, err: int, op: str, path=None):
        super().__init__(err, os.strerror(err), os.fsdecode(path) if path is not None else None)
        self.op = op

    def __str__(self) -> str:
        where = f"{self.op} {self.filename}" if self.filename else self.op
        return f"{where}: {self.strerror}"


_classes: dict[int, type] = {}


def _error_class(err: int) -> type:
    """SysError, also an instance of the errno's own OSError subclass (FileNotFoundError...)."""
    cls = _classes.get(err)
    if cls is None:
        builtin = type(OSError(err, ""))
        cls = SysError if builtin is OSError else type(f"SysError_{builtin.__name__}",
                                                       (SysError, builtin), {})
        _classes[err] = cls
    return cls


def _check(ret: int, op: str, path=None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise _error_class(err)(err, op, path)
    return ret


def _b(path) -> bytes | None:
    if path is None:
        return None
    return os.fsencode(path)


# --- namespaces -------------------------------------------------------------------------------

def unshare(flags: int) -> None:
    _check(libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_syscall(_SYS_setns, ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


# --- mounts -----------------------------------------------------------------------------------

def mount(source, target, fstype, flags: int = 0, data=None) -> None:
    ret = libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, "mount", target)


def umount2(target, flags: int = 0) -> None:
    _check(libc.umount2(_b(target), ctypes.c_int(flags)), "umount", target)


def pivot_root(new_root, put_old) -> None:
    _check(_syscall(_SYS_pivot_root, _b(new_root), _b(put_old)), "pivot_root", new_root)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` under the ``RESOLVE_*`` constraints."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & (os.O_CREAT | os.O_TMPFILE) else 0, resolve)
    ret = _syscall(_SYS_openat2, ctypes.c_int(dirfd), _b(path), ctypes.byref(how),
                   ctypes.c_size_t(ctypes.sizeof(how)))
    return _check(ret, "open", path)


def open_tree(dirfd: int, path, flags: int) -> int:
    ret = _syscall(_SYS_open_tree, ctypes.c_int(dirfd), _b(path), ctypes.c_uint(flags))
    return _check(ret, "open_tree", path)


def move_mount(from_dirfd: int, from_path, to_dirfd: int, to_path, flags: int) -> None:
    ret = _syscall(_SYS_move_mount, ctypes.c_int(from_dirfd), _b(from_path),
                   ctypes.c_int(to_dirfd), _b(to_path), ctypes.c_uint(flags))
    _check(ret, "move_mount", to_path)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(dirfd: int, path, flags: int, attr_set: int = 0, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    attr = _MountAttr(attr_set, attr_clr, propagation, userns_fd)
    ret = _syscall(_SYS_mount_setattr, ctypes.c_int(dirfd), _b(path), ctypes.c_uint(flags),
                   ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(ret, "mount_setattr", path)


# --- processes --------------------------------------------------------------------------------

def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ret = libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                     ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))
    return _check(ret, "prctl")


def pidfd_open(pid: int, flags: int = 0) -> int:
    return _check(_syscall(_SYS_pidfd_open, ctypes.c_int(pid), ctypes.c_uint(flags)), "pidfd_open")


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    ret = _syscall(_SYS_pidfd_send_signal, ctypes.c_int(pidfd), ctypes.c_int(sig), None,
                   ctypes.c_uint(0))
    _check(ret, "kill")


def execveat(dirfd: int, path, argv, env, flags: int = 0) -> None:
    """execveat(2); returns only on failure (raising)."""
    argv_c = (ctypes.c_char_p * (len(argv) + 1))(*[os.fsencode(a) for a in argv], None)
    env_c = (ctypes.c_char_p * (len(env) + 1))(*[os.fsencode(e) for e in env], None)
    ret = _syscall(_SYS_execveat, ctypes.c_int(dirfd), _b(path), argv_c, env_c, ctypes.c_int(flags))
    _check(ret, "exec", path)


def sethostname(name: str) -> None:
    data = name.encode()
    _check(libc.sethostname(data, ctypes.c_size_t(len(data))), "sethostname")


def setdomainname(name: str) -> None:
    data = name.encode()
    _check(libc.setdomainname(data, ctypes.c_size_t(len(data))), "setdomainname")


def join_session_keyring(name: str | None = None) -> int:
    ret = _syscall(_SYS_keyctl, ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), _b(name))
    return _check(ret, "keyctl")


# --- filesystems ------------------------------------------------------------------------------

PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994
DEVPTS_SUPER_MAGIC = 0x1CD1


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long),
                ("f_blocks", ctypes.c_ulong), ("f_bfree", ctypes.c_ulong),
                ("f_bavail", ctypes.c_ulong), ("f_files", ctypes.c_ulong),
                ("f_ffree", ctypes.c_ulong), ("f_fsid", ctypes.c_int * 2),
                ("f_namelen", ctypes.c_long), ("f_frsize", ctypes.c_long),
                ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4)]


def fstatfs_type(fd: int) -> int:
    """The filesystem magic number of the file open at ``fd``."""
    buf = _StatFs()
    _check(libc.fstatfs(ctypes.c_int(fd), ctypes.byref(buf)), "fstatfs")
    return buf.f_type


# --- capabilities -----------------------------------------------------------------------------

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets from 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(libc.capset(ctypes.byref(header), data), "capset")


# --- scheduling, I/O priority, memory policy, personality -------------------------------------

_SYS_ioprio_set = 251
_SYS_set_mempolicy = 238
_SYS_sched_setattr = 314


class _SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
                ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
                ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
                ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
                ("sched_util_min", ctypes.c_uint32), ("sched_util_max", ctypes.c_uint32)]


def sched_setattr(policy: int, flags: int = 0, nice: int = 0, priority: int = 0,
                  runtime: int = 0, deadline: int = 0, period: int = 0) -> None:
    attr = _SchedAttr(ctypes.sizeof(_SchedAttr), policy, flags, nice, priority, runtime,
                      deadline, period, 0, 0)
    _check(_syscall(_SYS_sched_setattr, ctypes.c_int(0), ctypes.byref(attr), ctypes.c_uint(0)),
           "sched_setattr")


def ioprio_set(ioprio: int) -> None:
    _check(_syscall(_SYS_ioprio_set, ctypes.c_int(1), ctypes.c_int(0), ctypes.c_int(ioprio)),
           "ioprio_set")


def set_mempolicy(mode: int, nodes: list[int]) -> None:
    maxnode = (max(nodes) + 1) if nodes else 0
    words = (maxnode + 63) // 64 or 1
    mask = (ctypes.c_ulong * words)()
    for node in nodes:
        mask[node // 64] |= 1 << (node % 64)
    _check(_syscall(_SYS_set_mempolicy, ctypes.c_int(mode), mask if nodes else None,
                    ctypes.c_ulong(maxnode + 1 if nodes else 0)), "set_mempolicy")


def personality(persona: int) -> None:
    _check(libc.personality(ctypes.c_ulong(persona)), "personality")


_SYS_rt_sigaction = 13


class _KernelSigaction(ctypes.Structure):
    _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong),
                ("restorer", ctypes.c_void_p), ("mask", ctypes.c_ulong)]


def signal_default(sig: int) -> None:
    """rt_sigaction(sig, SIG_DFL) straight to the kernel: glibc refuses the signals it reserves
    (32, 33), which a caller may nevertheless have left ignored."""
    act = _KernelSigaction(None, 0, None, 0)
    _check(_syscall(_SYS_rt_sigaction, ctypes.c_int(sig), ctypes.byref(act), None,
                    ctypes.c_size_t(8)), "rt_sigaction")
