"""Namespaces: which to join, which to create, and the work a new one needs.

The stage-1 child (see :mod:`pyrunc.sync`) calls, in order:

1. :func:`join` — setns into every namespace given by ``path``; the user namespace first, so
   namespaces created afterwards belong to it;
2. ``unshare(CLONE_NEWUSER)`` if a new user namespace is asked for; the parent then writes the
   id maps (:func:`write_id_maps`) — only a process outside the namespace may;
3. :func:`unshare_rest` — every other new namespace at once;
4. :func:`write_time_offsets` — before any process enters the new time namespace.

Paths are checked by the parent before anything starts (:func:`check_paths`): a path that is not
a namespace of the stated type is a config error, as the spec requires.
"""

import fcntl
import struct

from pyrunc.linux import os
from pyrunc.errors import ConfigError, SetupError
from pyrunc.linux import sys as k

FLAGS = {
    "pid": k.CLONE_NEWPID, "network": k.CLONE_NEWNET, "mount": k.CLONE_NEWNS,
    "ipc": k.CLONE_NEWIPC, "uts": k.CLONE_NEWUTS, "user": k.CLONE_NEWUSER,
    "cgroup": k.CLONE_NEWCGROUP, "time": k.CLONE_NEWTIME,
}
PROC_NAMES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
              "user": "user", "cgroup": "cgroup", "time": "time"}
NS_GET_NSTYPE = 0xB703

# Joins in this order: user first (it owns what follows), mount last (it changes our root).
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


def check_paths(namespaces) -> None:
    for i, ns in enumerate(namespaces):
        if not ns.path:
            continue
        where = f"config.json: linux.namespaces[{i}].path"
        try:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise ConfigError(f"{where}: {ns.path}: {err.strerror}") from None
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:
            kind = None
        finally:
            os.close(fd)
        if kind != FLAGS[ns.type]:
            raise ConfigError(f"{where}: {ns.path} is not a {ns.type} namespace")


def new_flags(namespaces) -> int:
    flags = 0
    for ns in namespaces:
        if not ns.path:
            flags |= FLAGS[ns.type]
    return flags


def join(namespaces) -> None:
    by_type = {ns.type: ns for ns in namespaces if ns.path}
    for ns_type in _JOIN_ORDER:
        ns = by_type.get(ns_type)
        if ns is None:
            continue
        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            k.setns(fd, FLAGS[ns_type])
        except OSError as err:
            raise SetupError(f"join {ns_type} namespace {ns.path}: {err.strerror}") from None
        finally:
            os.close(fd)


def unshare_rest(flags: int) -> None:
    flags &= ~k.CLONE_NEWUSER
    if flags:
        try:
            k.unshare(flags)
        except OSError as err:
            raise SetupError(f"unshare namespaces: {err.strerror}") from None


def write_id_maps(pid: int, uid_maps, gid_maps) -> None:
    """Write /proc/<pid>/{uid_map,gid_map} from the parent (the child cannot map itself)."""
    for name, maps in (("uid_map", uid_maps), ("gid_map", gid_maps)):
        if not maps:
            continue
        data = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
        path = f"/proc/{pid}/{name}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)
        except OSError as err:
            raise SetupError(f"write {name} ({data.strip()!r}): {err.strerror}") from None


def write_time_offsets(offsets: dict) -> None:
    data = "".join(f"{clock} {secs} {nsecs}\n" for clock, (secs, nsecs) in offsets.items())
    try:
        fd = os.open("/proc/self/timens_offsets", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
    except OSError as err:
        raise SetupError(f"write timens_offsets: {err.strerror}") from None


def loopback_up() -> None:
    """Bring ``lo`` up in a new network namespace (SIOCSIFFLAGS on a datagram socket)."""
    import _socket
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        req = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))
    except OSError as err:
        raise SetupError(f"bring up loopback: {err.strerror}") from None
    finally:
        sock.close()


def userns_fd(uid_maps, gid_maps) -> int:
    """An fd of a new user namespace with these id maps (for id-mapped mounts).

    A short-lived child unshares the namespace; we map it, keep a handle on it, and let the
    child go: the namespace lives on as long as the fd.
    """
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(done_w)
        try:
            k.unshare(k.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise SetupError("id-mapped mount: cannot create a user namespace")
        write_id_maps(pid, uid_maps, gid_maps)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)
