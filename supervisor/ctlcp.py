"""``cp``: copy files between a container and the host, never outside the container.

Docker's rules for where things land (a file onto a file, into a directory, a directory into a
directory or as a new one, ``SRC/.`` for a directory's contents), and none of its escapes:

* The container side is a directory descriptor of its root: ``/proc/<pid>/root`` of a running
  container (its own mount namespace, so volumes and tmpfs mounts are seen as inside), else the
  rootfs directory from its spec. Paths are resolved there with openat2(RESOLVE_IN_ROOT)
  (pyrunc.linux.inroot), so ``..`` and absolute or relative symlinks stay inside the root, as
  the container itself would see them.
* Below the top level, the copy walks descriptors: each entry is opened relative to its parent's
  descriptor with O_NOFOLLOW, directories with O_DIRECTORY, so a symlink in the tree is copied as
  a symlink and never followed, and a directory swapped for a symlink mid-copy fails the open
  instead of redirecting it. A symlink already at a destination name is replaced, never written
  through.
* The host side is resolved the same way from a descriptor of ``/`` (where it changes nothing).

Files keep their mode and modification time; with ``-a`` their owner too (else the copier owns
them, root for a copy into a container, as in Docker). Devices are not copied.
"""
from __future__ import annotations

import errno
import os
import stat

from pyrunc.linux import inroot

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = _DIR | os.O_NOFOLLOW


class CpError(Exception):
    pass


def split_arg(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` or a local path (absolute, or starting with ``.``, or without ``:``)."""
    if arg.startswith("/") or arg.startswith("."):
        return None, arg
    name, sep, path = arg.partition(":")
    return (name, path) if sep else (None, arg)


class Side:
    """One end of the copy: a root descriptor and a path inside it."""

    def __init__(self, rootfd: int, path: str, label: str):
        self.rootfd, self.path, self.label = rootfd, path, label

    def open(self, path: str, flags: int) -> int:
        return inroot.open_in_root(self.rootfd, path, flags)

    def close(self) -> None:
        os.close(self.rootfd)


def host_side(path: str) -> Side:
    full = os.path.abspath(path)
    if path.endswith("/.") or path == ".":
        full = full.rstrip("/") + "/."  # "DIR/." means the directory's contents
    elif path.endswith("/"):
        full = full.rstrip("/") + "/"   # "DIR/" must be a directory
    return Side(os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), full, path)


def container_side(root: str, path: str, label: str) -> Side:
    try:
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CpError(f"Error: cannot open the container's root: {e.strerror}") from None
    return Side(fd, "/" + path.lstrip("/"), label)


def _split(path: str) -> tuple[str, str]:
    parent, name = os.path.split(path.rstrip("/") or "/")
    return parent or "/", name


def copy(src: Side, dst: Side, follow: bool = False, archive: bool = False) -> None:
    """Copy src.path to dst.path with docker cp's placement rules."""
    contents_only = src.path.endswith("/.")
    src_path = (src.path[:-2] or "/") if contents_only else src.path
    parent_path, name = _split(src_path)
    sfd = None
    try:
        sparent = src.open(parent_path, _DIR)
    except OSError:
        raise CpError(f"Error: No such container:path: {src.label}") from None
    try:
        if follow or contents_only or not name:
            # resolved whole inside the root: a top-level symlink is followed there, not on
            # the host
            sfd = src.open(src_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            sst = os.fstat(sfd)
            name = name or "root"
        else:
            sst = os.stat(name, dir_fd=sparent, follow_symlinks=False)
        _place(sparent, name, sst, sfd, dst, contents_only, archive)
    except FileNotFoundError:
        raise CpError(f"Error: No such container:path: {src.label}") from None
    finally:
        os.close(sparent)
        if sfd is not None:
            os.close(sfd)


def _place(sparent, name, sst, sfd, dst, contents_only, archive) -> None:
    try:
        dfd = dst.open(dst.path, os.O_PATH | os.O_CLOEXEC)
        dst_st = os.fstat(dfd)
        os.close(dfd)
    except FileNotFoundError:
        dst_st = None
    is_dir = stat.S_ISDIR(sst.st_mode)
    if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
        target = dst.open(dst.path, _DIR)
        try:
            if is_dir and contents_only:
                _copy_dir_entries(sfd, target, archive)
            else:
                _copy_node(sparent, name, sst, target, name, archive, sfd)
        finally:
            os.close(target)
        return
    if dst_st is not None and is_dir:
        raise CpError(f"Error: cannot copy a directory to a file: {dst.label}")
    if dst_st is None and dst.path.endswith("/") and not is_dir:
        raise CpError(f"Error: no such directory: {dst.label}")
    dparent_path, dname = _split(dst.path)
    try:
        dparent = dst.open(dparent_path, _DIR)
    except (FileNotFoundError, NotADirectoryError):
        raise CpError(f"Error: no such directory: {os.path.dirname(dst.label) or '/'}") \
            from None
    try:
        _copy_node(sparent, name, sst, dparent, dname, archive, sfd)
    finally:
        os.close(dparent)


def _copy_node(sparent: int, name: str, sst, dparent: int, dname: str, archive: bool,
               sfd: int | None = None) -> None:
    """Copy one entry, opened relative to its parent with O_NOFOLLOW (or given open: ``sfd``,
    resolved inside the root by the caller); nothing below it is ever followed."""
    mode = sst.st_mode
    if stat.S_ISDIR(mode):
        fd = sfd if sfd is not None else os.open(name, _NOFOLLOW_DIR, dir_fd=sparent)
        try:
            dfd = _make_dir(dparent, dname)
            try:
                _copy_dir_entries(fd, dfd, archive)
                _finish(dfd, sst, archive)
            finally:
                os.close(dfd)
        finally:
            if sfd is None:
                os.close(fd)
    elif stat.S_ISREG(mode):
        fd = sfd if sfd is not None else os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=sparent)
        try:
            _copy_file(fd, sst, dparent, dname, archive)
        finally:
            if sfd is None:
                os.close(fd)
    elif stat.S_ISLNK(mode):
        target = os.readlink(name, dir_fd=sparent)
        _clear(dparent, dname)
        os.symlink(target, dname, dir_fd=dparent)
        if archive:
            os.chown(dname, sst.st_uid, sst.st_gid, dir_fd=dparent, follow_symlinks=False)
    elif stat.S_ISFIFO(mode):
        _clear(dparent, dname)
        os.mkfifo(dname, stat.S_IMODE(mode), dir_fd=dparent)
    # devices and sockets are not copied


def _copy_dir_entries(sfd: int, dfd: int, archive: bool) -> None:
    for entry in sorted(os.listdir(sfd)):
        try:
            st = os.stat(entry, dir_fd=sfd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile
        _copy_node(sfd, entry, st, dfd, entry, archive)


def _clear(dparent: int, dname: str) -> None:
    """Remove a non-directory at the destination name (a symlink is replaced, not followed)."""
    try:
        st = os.stat(dname, dir_fd=dparent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise CpError(f"Error: cannot overwrite directory {dname!r} with non-directory")
    os.unlink(dname, dir_fd=dparent)


def _make_dir(dparent: int, dname: str) -> int:
    try:
        os.mkdir(dname, 0o700, dir_fd=dparent)
    except FileExistsError:
        pass
    try:
        return os.open(dname, _NOFOLLOW_DIR, dir_fd=dparent)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CpError(f"Error: cannot overwrite non-directory {dname!r} with directory") \
                from None
        raise


def _copy_file(sfd: int, sst, dparent: int, dname: str, archive: bool) -> None:
    try:
        st = os.stat(dname, dir_fd=dparent, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            _clear(dparent, dname)
    except FileNotFoundError:
        pass
    dfd = os.open(dname, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o600, dir_fd=dparent)
    try:
        _copy_data(sfd, dfd)
        _finish(dfd, sst, archive)
    finally:
        os.close(dfd)


def _copy_data(sfd: int, dfd: int) -> None:
    """copy_file_range where the kernel can (same filesystem), else sendfile."""
    copy = os.copy_file_range
    while True:
        try:
            n = copy(sfd, dfd, 1 << 30) if copy is os.copy_file_range \
                else copy(dfd, sfd, None, 1 << 30)
        except OSError as e:
            if copy is os.copy_file_range and e.errno in (errno.EXDEV, errno.EINVAL,
                                                          errno.ENOSYS, errno.EOPNOTSUPP):
                copy = os.sendfile
                continue
            raise
        if n == 0:
            return


def _finish(fd: int, sst, archive: bool) -> None:
    if archive:
        os.fchown(fd, sst.st_uid, sst.st_gid)
    os.fchmod(fd, stat.S_IMODE(sst.st_mode))
    os.utime(fd, ns=(sst.st_atime_ns, sst.st_mtime_ns))


def cp(ctl, a) -> int:
    """The command: find the container's root through the supervisor, then copy."""
    import json

    from supervisor.ctlbase import CtlError
    src_name, src_path = split_arg(a.src)
    dst_name, dst_path = split_arg(a.dst)
    if src_name and dst_name:
        raise CtlError("copying between containers is not supported")
    if not src_name and not dst_name:
        raise CtlError("must specify at least one container source")
    ref = src_name or dst_name
    try:
        c = ctl.container(ref)
    except CtlError:
        raise CtlError(f"Error: No such container:path: {a.src if src_name else a.dst}") \
            from None
    task = ctl.task(c.id)
    running = task is not None and task.status in (2, 4, 5)
    root = f"/proc/{task.pid}/root" if running else \
        (json.loads(c.spec.value).get("root") or {}).get("path", "")
    try:
        box = container_side(root, src_path if src_name else dst_path,
                             a.src if src_name else a.dst)
        if running and ctl.task(c.id).pid != task.pid:  # the pid was recycled meanwhile
            box.close()
            raise CtlError(f"Error response from daemon: container {ref} stopped during cp")
        host = host_side(dst_path if src_name else src_path)
    except CpError as e:
        raise CtlError(str(e)) from None
    try:
        if src_name:
            copy(box, host, follow=a.follow_link, archive=a.archive)
        else:
            if not os.path.lexists(host.path):
                raise CtlError(f"lstat {host.path}: no such file or directory")
            copy(host, box, follow=a.follow_link, archive=a.archive)
    except CpError as e:
        raise CtlError(str(e)) from None
    except OSError as e:
        raise CtlError(f"Error: {e.strerror}: {e.filename or a.dst}") from None
    finally:
        box.close()
        host.close()
    return 0
