"""The layer between two full directory trees (the native snapshotter's copies), for Diff.Diff.

Both trees are walked side by side, names in sorted order, never following a symlink:

- a name only on the right is added (a directory with everything below it);
- a name only on the left becomes an OCI whiteout (``.wh.NAME``), and its subtree is not visited;
- a name on both sides is added again when it changed: another type, mode, owner, device,
  size, modification time, symlink target or xattrs — or, for a regular file whose times carry
  no sub-second part (a copy that kept only seconds), other contents; then directories on both
  sides are compared below.

A file changed to a directory (or back) is the right side's entry: applying it replaces what
was there. Hard links inside what is added stay hard links (tarfile records the inode). Applying
the layer onto the left tree gives the right one (apply.py), which the tests check.
"""
from __future__ import annotations

import os
import stat

from supervisor.diff.make import add_path, add_whiteout

CHUNK = 1 << 20


def emit_changes(tar, left: str, right: str) -> None:
    """Add to ``tar`` the entries that turn tree ``left`` into tree ``right``."""
    _compare(tar, left, right, "")


def _compare(tar, left: str, right: str, rel: str) -> None:
    lnames, rnames = _names(left), _names(right)
    for name in sorted(lnames | rnames):
        lpath, rpath = os.path.join(left, name), os.path.join(right, name)
        sub = os.path.join(rel, name) if rel else name
        if name not in rnames:
            add_whiteout(tar, sub, os.lstat(right).st_mtime)
            continue
        rst = os.lstat(rpath)
        lst = os.lstat(lpath) if name in lnames else None
        both_dirs = lst is not None and stat.S_ISDIR(lst.st_mode) and stat.S_ISDIR(rst.st_mode)
        if lst is None or not _same(lpath, lst, rpath, rst):
            add_path(tar, rpath, sub)
        if both_dirs:
            _compare(tar, lpath, rpath, sub)
        elif stat.S_ISDIR(rst.st_mode):
            _add_tree(tar, rpath, sub)


def _names(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except FileNotFoundError:
        return set()


def _add_tree(tar, top: str, rel: str) -> None:
    """Everything below directory ``top`` (which is already in the tar)."""
    for base, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(base, name)
            add_path(tar, path, os.path.join(rel, os.path.relpath(path, top)))


def _same(lpath: str, lst: os.stat_result, rpath: str, rst: os.stat_result) -> bool:
    if (lst.st_mode, lst.st_uid, lst.st_gid) != (rst.st_mode, rst.st_uid, rst.st_gid):
        return False
    if lst.st_mtime_ns != rst.st_mtime_ns or _xattrs(lpath) != _xattrs(rpath):
        return False
    if stat.S_ISDIR(rst.st_mode):
        return True
    if (lst.st_size, lst.st_rdev) != (rst.st_size, rst.st_rdev):
        return False
    if stat.S_ISLNK(rst.st_mode):
        return os.readlink(lpath) == os.readlink(rpath)
    if stat.S_ISREG(rst.st_mode) and rst.st_mtime_ns % 1_000_000_000 == 0:
        return _same_bytes(lpath, rpath)
    return True


def _same_bytes(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(CHUNK), fb.read(CHUNK)
            if x != y:
                return False
            if not x:
                return True


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}
