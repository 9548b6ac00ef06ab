"""Thin wrappers for the syscalls Python's ``os`` module lacks, called through ctypes' core.

Every wrapper calls libc with errno captured (``FUNCFLAG_USE_ERRNO``, what ``use_errno=True``
sets) and turns a failure into ``OSError(errno, strerror, path)``, so callers handle kernel
errors like any other ``OSError`` and messages read ``mount /proc: Permission denied``.  Nothing
here has policy: the rest of the runtime decides what to call and in which order.

The functions are bound with ``_ctypes``, the C half of ctypes, not the ``ctypes`` package:
importing ``ctypes`` defines some forty types, loaders and helpers, about 2 ms on every
``pyrunc create`` on this kind of machine, and this module needs five C types and plain byte
buffers.  Structures the kernel reads are packed with :mod:`struct` and passed as ``bytes``;
structures it writes go in a :func:`buffer`.

Raw syscall numbers are for x86_64 (the only architecture this project runs on); libc symbols are
used where glibc 2.36 has them.
"""

import _ctypes
import struct

from pyrunc.linux import os

# --- calling C --------------------------------------------------------------------------------


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class _c_char(_ctypes._SimpleCData):
    _type_ = "c"


class _Function(_ctypes.CFuncPtr):
    """A libc function returning ``int``; arguments are ints (C int), the types above, ``bytes``
    or a :func:`buffer` (passed as pointers), or ``None`` (NULL)."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _PythonAPIFunction(_ctypes.CFuncPtr):
    """A function of the interpreter's C API: called with the GIL held."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_PYTHONAPI
    _restype_ = None


class _ForkingSyscall(_ctypes.CFuncPtr):
    """syscall(2) for a call that forks: the GIL stays held across it, as os.fork() holds it,
    so the child starts with the GIL its one thread owns."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO | _ctypes.FUNCFLAG_PYTHONAPI
    _restype_ = c_long


class _Libc:
    _handle = _ctypes.dlopen(None, 0)     # the libc the interpreter is linked with (and the
                                          # interpreter itself: its C API is found here too)


def _libc(name: str, restype=c_int) -> _Function:
    function = _Function((name, _Libc))
    function.restype = restype
    return function


_syscall = _libc("syscall", c_long)
get_errno = _ctypes.get_errno
address = _ctypes.addressof
_buffer_types: dict[int, type] = {}


def buffer(size: int, data: bytes = b""):
    """A zeroed writable C buffer of ``size`` bytes starting with ``data``; ``.raw`` reads it."""
    cls = _buffer_types.get(size)
    if cls is None:
        cls = _buffer_types[size] = type(f"char[{size}]", (_ctypes.Array,),
                                         {"_type_": _c_char, "_length_": size})
    buf = cls()
    if data:
        buf.raw = data + bytes(size - len(data))
    return buf


def syscall(number: int, *args) -> int:
    """The raw ``syscall(2)``: returns the kernel's result, -1 on failure (see :func:`_check`)."""
    return _syscall(number, *args)


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
_SYS_keyctl = 250
_SYS_clone3 = 435

CLONE_INTO_CGROUP = 0x200000000
_SIGCHLD = 17

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
        err = get_errno()
        raise _error_class(err)(err, op, path)
    return ret


def _b(path) -> bytes | None:
    if path is None:
        return None
    return os.fsencode(path)


# --- namespaces -------------------------------------------------------------------------------

_unshare = _libc("unshare")


def unshare(flags: int) -> None:
    _check(_unshare(c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_syscall(_SYS_setns, c_int(fd), c_int(nstype)), "setns")


# --- mounts -----------------------------------------------------------------------------------

_mount = _libc("mount")
_umount2 = _libc("umount2")


def mount(source, target, fstype, flags: int = 0, data=None) -> None:
    ret = _mount(_b(source), _b(target), _b(fstype), c_ulong(flags), _b(data))
    _check(ret, "mount", target)


def umount2(target, flags: int = 0) -> None:
    _check(_umount2(_b(target), c_int(flags)), "umount", target)


def pivot_root(new_root, put_old) -> None:
    _check(_syscall(_SYS_pivot_root, _b(new_root), _b(put_old)), "pivot_root", new_root)


def openat2(dirfd: int, path, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` under the ``RESOLVE_*`` constraints."""
    # struct open_how { u64 flags; u64 mode; u64 resolve; }
    how = struct.pack("=QQQ", flags | os.O_CLOEXEC,
                      mode if flags & (os.O_CREAT | os.O_TMPFILE) else 0, resolve)
    ret = _syscall(_SYS_openat2, c_int(dirfd), _b(path), how, c_ulong(len(how)))
    return _check(ret, "open", path)


def open_tree(dirfd: int, path, flags: int) -> int:
    ret = _syscall(_SYS_open_tree, c_int(dirfd), _b(path), c_uint(flags))
    return _check(ret, "open_tree", path)


def move_mount(from_dirfd: int, from_path, to_dirfd: int, to_path, flags: int) -> None:
    ret = _syscall(_SYS_move_mount, c_int(from_dirfd), _b(from_path),
                   c_int(to_dirfd), _b(to_path), c_uint(flags))
    _check(ret, "move_mount", to_path)


def mount_setattr(dirfd: int, path, flags: int, attr_set: int = 0, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0) -> None:
    # struct mount_attr { u64 attr_set; u64 attr_clr; u64 propagation; u64 userns_fd; }
    attr = struct.pack("=QQQQ", attr_set, attr_clr, propagation, userns_fd)
    ret = _syscall(_SYS_mount_setattr, c_int(dirfd), _b(path), c_uint(flags), attr,
                   c_ulong(len(attr)))
    _check(ret, "mount_setattr", path)


# --- processes --------------------------------------------------------------------------------

_prctl = _libc("prctl")
_sethostname = _libc("sethostname")
_setdomainname = _libc("setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ret = _prctl(c_int(option), c_ulong(arg2), c_ulong(arg3), c_ulong(arg4), c_ulong(arg5))
    return _check(ret, "prctl")


_before_fork = _PythonAPIFunction(("PyOS_BeforeFork", _Libc))
_after_fork_parent = _PythonAPIFunction(("PyOS_AfterFork_Parent", _Libc))
_after_fork_child = _PythonAPIFunction(("PyOS_AfterFork_Child", _Libc))
_clone3 = _ForkingSyscall(("syscall", _Libc))


def fork_into_cgroup(cgroup_fd: int) -> int:
    """``os.fork()`` whose child starts in the cgroup v2 directory ``cgroup_fd`` (an O_RDONLY
    directory fd): clone3(CLONE_INTO_CGROUP).  The child is placed as it is created, without
    the grace-period wait that moving a process through cgroup.procs costs.  The interpreter's
    fork hooks run around it exactly as around ``os.fork()``.  Returns 0 in the child."""
    # struct clone_args (CLONE_ARGS_SIZE_VER2): flags, pidfd, child_tid, parent_tid,
    # exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup — all u64
    args = struct.pack("=11Q", CLONE_INTO_CGROUP, 0, 0, 0, _SIGCHLD, 0, 0, 0, 0, 0, cgroup_fd)
    _before_fork()
    pid = _clone3(c_long(_SYS_clone3), args, c_ulong(len(args)))
    if pid == 0:
        _after_fork_child()
        return 0
    _after_fork_parent()
    return _check(pid, "clone3")


def pidfd_open(pid: int, flags: int = 0) -> int:
    return _check(_syscall(_SYS_pidfd_open, c_int(pid), c_uint(flags)), "pidfd_open")


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    ret = _syscall(_SYS_pidfd_send_signal, c_int(pidfd), c_int(sig), None, c_uint(0))
    _check(ret, "kill")


RLIM_INFINITY = 2**64 - 1
_setrlimit = _libc("setrlimit")


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) (the ``resource`` module would cost one more shared library per create)."""
    # struct rlimit { rlim_t rlim_cur; rlim_t rlim_max; }
    _check(_setrlimit(c_int(resource), struct.pack("=QQ", soft, hard)), "setrlimit")


def sethostname(name: str) -> None:
    data = name.encode()
    _check(_sethostname(data, c_ulong(len(data))), "sethostname")


def setdomainname(name: str) -> None:
    data = name.encode()
    _check(_setdomainname(data, c_ulong(len(data))), "setdomainname")


def join_session_keyring(name: str | None = None) -> int:
    ret = _syscall(_SYS_keyctl, c_int(KEYCTL_JOIN_SESSION_KEYRING), _b(name))
    return _check(ret, "keyctl")


# --- filesystems ------------------------------------------------------------------------------

PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994
DEVPTS_SUPER_MAGIC = 0x1CD1

_fstatfs = _libc("fstatfs")
_STATFS_SIZE = 120      # sizeof(struct statfs) on x86_64; f_type is its first field (long)


def fstatfs_type(fd: int) -> int:
    """The filesystem magic number of the file open at ``fd``."""
    buf = buffer(_STATFS_SIZE)
    _check(_fstatfs(c_int(fd), buf), "fstatfs")
    return struct.unpack_from("=q", buf.raw)[0]


# --- capabilities -----------------------------------------------------------------------------

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_capset = _libc("capset")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets from 64-bit masks."""
    # struct __user_cap_header_struct { u32 version; int pid; } and two
    # struct __user_cap_data_struct { u32 effective, permitted, inheritable; } (low, high words)
    header = struct.pack("=Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    data = b"".join(struct.pack("=III", (effective >> shift) & 0xFFFFFFFF,
                                (permitted >> shift) & 0xFFFFFFFF,
                                (inheritable >> shift) & 0xFFFFFFFF) for shift in (0, 32))
    _check(_capset(header, data), "capset")


# --- scheduling, I/O priority, memory policy, personality -------------------------------------

_SYS_ioprio_set = 251
_SYS_set_mempolicy = 238
_SYS_sched_setattr = 314
_personality = _libc("personality")


def sched_setattr(policy: int, flags: int = 0, nice: int = 0, priority: int = 0,
                  runtime: int = 0, deadline: int = 0, period: int = 0) -> None:
    # struct sched_attr { u32 size; u32 policy; u64 flags; s32 nice; u32 priority;
    #                     u64 runtime, deadline, period; u32 util_min, util_max; }
    layout = "=IIQiIQQQII"
    attr = struct.pack(layout, struct.calcsize(layout), policy, flags, nice, priority,
                       runtime, deadline, period, 0, 0)
    _check(_syscall(_SYS_sched_setattr, c_int(0), attr, c_uint(0)), "sched_setattr")


def ioprio_set(ioprio: int) -> None:
    _check(_syscall(_SYS_ioprio_set, c_int(1), c_int(0), c_int(ioprio)), "ioprio_set")


def set_mempolicy(mode: int, nodes: list[int]) -> None:
    maxnode = (max(nodes) + 1) if nodes else 0
    words = [0] * ((maxnode + 63) // 64 or 1)
    for node in nodes:
        words[node // 64] |= 1 << (node % 64)
    mask = struct.pack(f"={len(words)}Q", *words)
    _check(_syscall(_SYS_set_mempolicy, c_int(mode), mask if nodes else None,
                    c_ulong(maxnode + 1 if nodes else 0)), "set_mempolicy")


def personality(persona: int) -> None:
    _check(_personality(c_ulong(persona)), "personality")


_SYS_rt_sigaction = 13


def signal_default(sig: int) -> None:
    """rt_sigaction(sig, SIG_DFL) straight to the kernel: glibc refuses the signals it reserves
    (32, 33), which a caller may nevertheless have left ignored."""
    # struct kernel_sigaction { handler; unsigned long flags; restorer; sigset_t mask (8 bytes) }
    act = struct.pack("=QQQQ", 0, 0, 0, 0)      # SIG_DFL, no flags, no restorer, empty mask
    _check(_syscall(_SYS_rt_sigaction, c_int(sig), act, None, c_ulong(8)), "rt_sigaction")
