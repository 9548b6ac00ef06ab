"""Paths resolved inside a root directory, never outside it.

A rootfs is untrusted: any component of a mount destination may be a symlink to ``/`` or to
``../../..``, and a process in another container sharing the rootfs may swap a directory for a
symlink at any moment.  Every lookup here goes through openat2(2) with ``RESOLVE_IN_ROOT``
relative to a file descriptor of the root, so ``..`` and absolute symlinks are resolved as if
the root were ``/``: the result is inside the root, whatever the tree looks like.

Creation is one component at a time: the parent is resolved in the root and held open, and the
new entry is created relative to that descriptor (mkdirat/mknodat/openat with O_EXCL, which never
follow a symlink in the last component).  The caller then mounts onto ``/proc/self/fd/N`` of an
``O_PATH`` descriptor of the target, so the mount lands on the object that was checked, not on
whatever the path names a moment later.
"""

import errno
import stat

from pyrunc.linux import os
from pyrunc.linux import sys as k

_RESOLVE = k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH, mode: int = 0) -> int:
    """Open ``path`` (absolute or relative, interpreted inside the root) under ``rootfd``.

    openat2 answers EAGAIN when a rename raced the lookup (it cannot then vouch for the result);
    the lookup is simply tried again.
    """
    for _ in range(32):
        try:
            return k.openat2(rootfd, path.lstrip("/") or ".", flags | os.O_CLOEXEC, mode,
                             _RESOLVE)
        except BlockingIOError:
            continue
    return k.openat2(rootfd, path.lstrip("/") or ".", flags | os.O_CLOEXEC, mode, _RESOLVE)


def fd_path(fd: int) -> str:
    """The magic-link path that names exactly the object open at ``fd``."""
    return f"/proc/self/fd/{fd}"


def components(path: str) -> list[str]:
    return [c for c in path.split("/") if c and c != "."]


def mkdir_all(rootfd: int, path: str, mode: int = 0o755) -> int:
    """Create the directory ``path`` and its parents inside the root; return an O_PATH fd of it.

    Each prefix is resolved from the root (so a symlinked component is followed the way the
    container will see it, and never out of the root); a missing component is created with
    mkdirat relative to its resolved parent.
    """
    fd = os.dup(rootfd)
    prefix = ""
    try:
        for name in components(path):
            if name == "..":
                raise OSError(errno.EINVAL, "path must not contain '..'", path)
            prefix = f"{prefix}/{name}"
            try:
                nxt = open_in_root(rootfd, prefix, os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    pass        # a dangling symlink: the open below reports it
                nxt = open_in_root(rootfd, prefix, os.O_PATH | os.O_DIRECTORY)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def create_file(rootfd: int, path: str, mode: int = 0o644) -> int:
    """Ensure a non-directory exists at ``path`` (create an empty file); O_PATH fd of it."""
    dirname, name = os.path.split(path.rstrip("/"))
    parent = mkdir_all(rootfd, dirname)
    try:
        try:
            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode, dir_fd=parent)
            os.close(fd)
        except FileExistsError:
            pass
    finally:
        os.close(parent)
    return open_in_root(rootfd, path)


def replace_with_file(rootfd: int, path: str, mode: int = 0o600) -> int:
    """A regular file (or character device) at exactly ``path``; O_PATH fd of it.

    Unlike :func:`create_file`, the last component is never followed: whatever else the image
    put there (a symlink, a fifo...) is removed first, so a mount onto the result lands on
    ``path`` itself (/dev/console).
    """
    import stat as st_mod
    dirname, name = os.path.split(path.rstrip("/"))
    parent = mkdir_all(rootfd, dirname)
    try:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not (st_mod.S_ISREG(st.st_mode) or st_mod.S_ISCHR(st.st_mode)):
            os.unlink(name, dir_fd=parent)      # a directory here is an error (EISDIR)
            st = None
        if st is None:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW |
                             os.O_CLOEXEC, mode, dir_fd=parent))
        return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    finally:
        os.close(parent)


def is_dir(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def lstat_in_root(rootfd: int, path: str) -> os.stat_result | None:
    """lstat of ``path`` inside the root (the last component is not followed); None if absent."""
    dirname, name = os.path.split(path.rstrip("/"))
    try:
        parent = open_in_root(rootfd, dirname or "/", os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    finally:
        os.close(parent)
