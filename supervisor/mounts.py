"""Mounting a list of containerd ``Mount``s (type, source, target, options) with mount(2).

One module for the shim (rootfs mounts at create) and the daemon (unmounting after a dead shim),
and later for snapshots. Options are split the way mount(8) does: the flag words (``ro``,
``nosuid``, ``bind``, ``rbind``, ``private``...) become ``MS_*`` flags, everything else (``size=``,
``lowerdir=``...) is the filesystem's data string. No ``mount(8)`` process, no joined option
strings on a command line.

Targets: a mount's ``target`` is relative to the root it is mounted under (``<bundle>/rootfs``;
empty means the root itself). It is opened with ``openat2(RESOLVE_BENEATH)`` from the root, so a
target that leaves it — ``..``, an absolute path, or a symlink that points out — is refused
(``MountError``) before anything is mounted, and the mount goes onto that very directory
(``/proc/self/fd/N``), with no window for a swap.

Overlay with many layers: the data string of mount(2) is limited to one page. Past that, the
``lowerdir`` entries are rewritten relative to their common parent directory and the mount is
made with that directory as the working directory (what containerd does too). The working
directory is the process's, so callers of ``mount_all`` must be single-threaded (the shim is).
"""
from __future__ import annotations

import errno
import os

from pyrunc.linux import sys as linux

PAGE_SIZE = os.sysconf("SC_PAGESIZE")

# word -> (flags to set, flags to clear); as mount(8) reads them.
FLAGS = {
    "defaults": (0, 0), "rw": (0, linux.MS_RDONLY), "ro": (linux.MS_RDONLY, 0),
    "nosuid": (linux.MS_NOSUID, 0), "suid": (0, linux.MS_NOSUID),
    "nodev": (linux.MS_NODEV, 0), "dev": (0, linux.MS_NODEV),
    "noexec": (linux.MS_NOEXEC, 0), "exec": (0, linux.MS_NOEXEC),
    "sync": (linux.MS_SYNCHRONOUS, 0), "async": (0, linux.MS_SYNCHRONOUS),
    "dirsync": (linux.MS_DIRSYNC, 0), "remount": (linux.MS_REMOUNT, 0),
    "mand": (linux.MS_MANDLOCK, 0), "nomand": (0, linux.MS_MANDLOCK),
    "noatime": (linux.MS_NOATIME, 0), "atime": (0, linux.MS_NOATIME),
    "nodiratime": (linux.MS_NODIRATIME, 0), "diratime": (0, linux.MS_NODIRATIME),
    "relatime": (linux.MS_RELATIME, 0), "norelatime": (0, linux.MS_RELATIME),
    "strictatime": (linux.MS_STRICTATIME, 0), "nostrictatime": (0, linux.MS_STRICTATIME),
    "bind": (linux.MS_BIND, 0), "rbind": (linux.MS_BIND | linux.MS_REC, 0),
}
PROPAGATION = {
    "private": linux.MS_PRIVATE, "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED, "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE, "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE, "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}
# Flags a bind mount takes only from a second, remounting call.
BIND_REMOUNT = (linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
                | linux.MS_NOATIME | linux.MS_NODIRATIME | linux.MS_RELATIME
                | linux.MS_STRICTATIME)


class MountError(Exception):
    """A mount that cannot be made: bad target, bad options, or the kernel's refusal."""


def parse_options(options) -> tuple[int, int, list[str]]:
    """(flags, propagation flags, data options) of a containerd option list."""
    flags, propagation, data = 0, 0, []
    for opt in options or ():
        if opt in FLAGS:
            set_, clear = FLAGS[opt]
            flags = (flags | set_) & ~clear
        elif opt in PROPAGATION:
            propagation |= PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, propagation, data


def relative_target(target: str) -> str:
    """``target`` relative to the root (containerd scopes an absolute target to it as well);
    MountError if it climbs out with ``..``."""
    rel = os.path.normpath("./" + (target or "").lstrip("/"))
    if rel == ".." or rel.startswith("../"):
        raise MountError(f"mount target {target!r}: leaves the bundle's rootfs")
    return rel


def open_target(root: str, target: str) -> int:
    """An O_PATH fd of ``root/target`` that cannot be outside ``root``, symlinks included."""
    rel = relative_target(target)
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return linux.openat2(rootfd, rel, os.O_PATH,
                             resolve=linux.RESOLVE_BENEATH | linux.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno == errno.EXDEV:
            raise MountError(f"mount target {target!r}: leaves the bundle's rootfs") from None
        raise MountError(f"mount target {target!r}: {e.strerror}") from None
    finally:
        os.close(rootfd)


def mount_one(root: str, m: dict) -> None:
    """Make one mount under ``root``; MountError names the source and the reason."""
    mtype = m.get("type") or "none"
    source = m.get("source") or "none"
    flags, propagation, data = parse_options(m.get("options"))
    if mtype == "bind":
        flags |= linux.MS_BIND
    target = m.get("target") or ""
    try:
        fd = open_target(root, target)
        try:
            _mount(source, f"/proc/self/fd/{fd}", mtype, flags, data)
        finally:
            os.close(fd)
        if not propagation and not (flags & linux.MS_BIND and flags & BIND_REMOUNT):
            return
        try:
            fd = open_target(root, target)  # now the new mount's root, not what it covers
            try:
                _settle(f"/proc/self/fd/{fd}", flags, propagation)
            finally:
                os.close(fd)
        except BaseException:
            unmount_all(root, [m])
            raise
    except OSError as e:
        raise MountError(f"mount {source} on rootfs: {e.strerror}") from None


def _settle(where: str, flags: int, propagation: int) -> None:
    """The second calls: a bind mount's own flags (ro, nosuid...), then propagation."""
    if flags & linux.MS_BIND and flags & BIND_REMOUNT:
        linux.mount("none", where, None, (flags & BIND_REMOUNT) | linux.MS_BIND | linux.MS_REMOUNT)
    if propagation:
        linux.mount("none", where, None, propagation)


def _mount(source: str, where: str, mtype: str, flags: int, data: list[str]) -> None:
    if flags & linux.MS_BIND:
        linux.mount(source, where, None, flags & (linux.MS_BIND | linux.MS_REC))
        return
    text = ",".join(data)
    if len(text) < PAGE_SIZE or mtype != "overlay":
        linux.mount(source, where, mtype, flags, text or None)
        return
    base, data = compact_lowerdir(data)
    if len(",".join(data)) >= PAGE_SIZE:
        raise OSError(errno.E2BIG, "overlay options longer than a page, even relative")
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(base)
        linux.mount(source, where, mtype, flags, ",".join(data))
    finally:
        os.fchdir(cwd)
        os.close(cwd)


def compact_lowerdir(data: list[str]) -> tuple[str, list[str]]:
    """The common parent of the lowerdirs, and the options with lowerdirs relative to it."""
    out, base = [], "/"
    for opt in data:
        if opt.startswith("lowerdir="):
            dirs = opt[len("lowerdir="):].split(":")
            base = os.path.commonpath([os.path.dirname(d) for d in dirs])
            opt = "lowerdir=" + ":".join(os.path.relpath(d, base) for d in dirs)
        out.append(opt)
    return base, out


def mount_all(root: str, mounts: list[dict]) -> None:
    """Make every mount in order; on a failure, undo the ones made and raise MountError."""
    done = []
    try:
        for m in mounts:
            mount_one(root, m)
            done.append(m)
    except BaseException:
        unmount_all(root, done)
        raise


def unmount_all(root: str, mounts: list[dict] | int) -> None:
    """Undo ``mount_all`` (latest first), quietly skipping what is not mounted; a busy mount is
    detached. ``mounts`` may be a count of mounts stacked on ``root`` itself."""
    if isinstance(mounts, int):
        mounts = [{}] * mounts
    for m in reversed(mounts):
        target = os.path.normpath(os.path.join(root, relative_target(m.get("target") or "")))
        try:
            linux.umount2(target, linux.UMOUNT_NOFOLLOW)
        except OSError as e:
            if e.errno == errno.EBUSY:
                _quiet_umount(target, linux.MNT_DETACH | linux.UMOUNT_NOFOLLOW)
            elif e.errno not in (errno.EINVAL, errno.ENOENT):
                raise


def _quiet_umount(target: str, flags: int) -> None:
    try:
        linux.umount2(target, flags)
    except OSError:
        pass
