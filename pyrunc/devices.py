"""Device nodes in the container's /dev (config-linux.md "Devices", runtime-linux.md).

The default devices (null, zero, full, random, urandom, tty) and ``linux.devices`` are created
with mknod — or, inside a user namespace where mknod of a real device is not allowed, by
bind-mounting the host's node onto an empty file.  All paths are resolved in the root (see
:mod:`pyrunc.linux.inroot`); an existing entry is kept if it is the same device, else it is
replaced (default devices) or refused (``linux.devices``, as the spec requires).

Then the links: /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr → /proc/self/fd..., and /dev/ptmx →
pts/ptmx.
"""

import stat

from pyrunc.linux import os
from pyrunc.errors import SetupError
from pyrunc.linux import inroot
from pyrunc.linux.fds import closing
from pyrunc.linux import sys as k
from pyrunc.spec import Device

DEFAULT = (
    Device("c", "/dev/null", 1, 3, 0o666, 0, 0),
    Device("c", "/dev/zero", 1, 5, 0o666, 0, 0),
    Device("c", "/dev/full", 1, 7, 0o666, 0, 0),
    Device("c", "/dev/random", 1, 8, 0o666, 0, 0),
    Device("c", "/dev/urandom", 1, 9, 0o666, 0, 0),
    Device("c", "/dev/tty", 5, 0, 0o666, 0, 0),
)
LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
         ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))

_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def create_all(rootfd: int, devices, in_userns: bool) -> None:
    configured = {d.path for d in devices}
    for dev in DEFAULT:
        if dev.path not in configured:
            _create(rootfd, dev, in_userns, replace=True)
    for i, dev in enumerate(devices):
        try:
            _create(rootfd, dev, in_userns, replace=False)
        except OSError as err:
            raise SetupError(f"linux.devices[{i}] {dev.path}: {err.strerror}") from None


def _matches(st: os.stat_result, dev: Device) -> bool:
    kind = _TYPES[dev.type]
    if stat.S_IFMT(st.st_mode) != kind:
        return False
    return kind == stat.S_IFIFO or st.st_rdev == os.makedev(dev.major, dev.minor)


def _create(rootfd: int, dev: Device, in_userns: bool, replace: bool) -> None:
    dirname, name = os.path.split(dev.path)
    parent = inroot.mkdir_all(rootfd, dirname)
    try:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if _matches(st, dev):
                _set_owner_mode(parent, name, dev)
                return
            if not replace:
                raise SetupError(f"linux.devices: {dev.path} exists and is not the requested "
                                 "device")
            os.unlink(name, dir_fd=parent)
        if in_userns and dev.type != "p":
            _bind_host_node(rootfd, parent, name, dev)
        else:
            mode = _TYPES[dev.type] | (dev.file_mode if dev.file_mode is not None else 0o666)
            os.mknod(name, mode, os.makedev(dev.major, dev.minor), dir_fd=parent)
            _set_owner_mode(parent, name, dev)
    finally:
        os.close(parent)


def _set_owner_mode(parent: int, name: str, dev: Device) -> None:
    if dev.uid is not None or dev.gid is not None:
        os.chown(name, -1 if dev.uid is None else dev.uid, -1 if dev.gid is None else dev.gid,
                 dir_fd=parent, follow_symlinks=False)


def _host_node(dev: Device) -> int:
    """An O_PATH fd on the host's node of ``dev``: the one at the same path if it is that
    device, else the first one of that type and number in /dev (a container may name a node
    its own way: ``/dev/mynull`` 1:3); SetupError if the host has none."""
    try:
        src = os.open(dev.path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        src = None
    if src is not None:
        if _matches(os.fstat(src), dev):
            return src
        os.close(src)
    for directory in ("/dev", "/dev/char", "/dev/block"):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for entry in names:
            path = os.path.join(directory, entry)
            try:
                if _matches(os.stat(path, follow_symlinks=False), dev):
                    return os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
    raise SetupError(f"device {dev.path}: the host has no {dev.type} {dev.major}:{dev.minor} "
                     "node to bind (a user namespace cannot mknod)")


def _bind_host_node(rootfd: int, parent: int, name: str, dev: Device) -> None:
    """In a user namespace: bind the host's node of that device onto a new file."""
    with closing(_host_node(dev)) as src:
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644, dir_fd=parent))
        with closing(os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=parent)) as target:
            k.mount(inroot.fd_path(src), inroot.fd_path(target), None, k.MS_BIND)


def create_links(rootfd: int) -> None:
    links = list(LINKS) + [("pts/ptmx", "/dev/ptmx")]
    devfd = inroot.mkdir_all(rootfd, "/dev")
    try:
        for target, path in links:
            name = os.path.basename(path)
            if name == "ptmx":
                _remove_if_not_link(devfd, name)
            try:
                os.symlink(target, name, dir_fd=devfd)
            except FileExistsError:
                pass
    finally:
        os.close(devfd)


def _remove_if_not_link(devfd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=devfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISLNK(st.st_mode):
        os.unlink(name, dir_fd=devfd)


def dev_null_fd() -> int:
    """An O_PATH fd of the container's /dev/null, checked to be the 1:3 character device.

    Masked paths are bind mounts of this node: if the rootfs made /dev/null a symlink or a
    regular file, a mask would become a writable bind of something else.
    """
    fd = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise SetupError("/dev/null in the container is not the null device (1:3); "
                         "refusing to use it for maskedPaths")
    return fd
