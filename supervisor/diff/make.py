"""Make a layer from a snapshot's own directory: the opposite of apply.py, for Diff.Diff.

The snapshots' mounts say which directory is the difference: overlay mounts list their layer
directories (``upperdir`` then ``lowerdir``, top first), a bind mount its one directory. When the
right side's directories are the left side's with one more on top, that top directory is the
diff, in overlay's format; it is written as an OCI tar with overlay whiteouts (0:0 character
devices) turned into ``.wh.NAME`` entries and opaque directories (``trusted.overlay.opaque=y``)
into ``.wh..wh..opq``. The walk never follows a symlink. Other pairs (a native snapshotter's full
copies) are compared tree against tree by compare.py, which writes through the helpers here.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile

OPAQUE_XATTR = "trusted.overlay.opaque"


class DiffUnsupported(Exception):
    pass


def layer_dirs(mounts: list[dict]) -> list[str]:
    """The layer directories of a snapshot's mounts, top first."""
    if not mounts:
        return []
    if len(mounts) != 1:
        raise DiffUnsupported(f"{len(mounts)} mounts: one bind or overlay mount only")
    m = mounts[0]
    if m["type"] == "bind" or "bind" in m["options"] or "rbind" in m["options"]:
        return [m["source"]]
    if m["type"] != "overlay":
        raise DiffUnsupported(f"a {m['type']!r} mount")
    upper, lower = [], []
    for opt in m["options"]:
        if opt.startswith("upperdir="):
            upper = [opt[len("upperdir="):]]
        elif opt.startswith("lowerdir="):
            lower = opt[len("lowerdir="):].split(":")
    return upper + lower


def diff_dir(left: list[dict], right: list[dict]) -> str:
    lower, upper = layer_dirs(left), layer_dirs(right)
    if not upper or upper[1:] != lower:
        raise DiffUnsupported("the right snapshot is not the left one plus one layer")
    return upper[0]


class _Sink:
    """Counts and hashes the uncompressed tar on its way to the compressor."""

    def __init__(self, out):
        self.out, self.hash, self.size = out, hashlib.sha256(), 0

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


def write_layer(top: str, out, compress: bool = True) -> tuple[str, int]:
    """Write the layer of directory ``top`` to the binary stream ``out``; (diff ID, tar size)."""
    return write_tar(lambda tar: walk(tar, top), out, compress)


def write_tar(emit, out, compress: bool = True) -> tuple[str, int]:
    """A PAX tar (gzip'd when ``compress``) of what ``emit(tar)`` adds, written to ``out``;
    (diff ID, tar size) of the uncompressed tar."""
    gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) if compress else out
    sink = _Sink(gz)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        emit(tar)
    if compress:
        gz.close()
    return "sha256:" + sink.hash.hexdigest(), sink.size


def walk(tar, top: str) -> None:
    """Add everything below the overlay layer directory ``top``, its whiteouts and opaque
    directories in OCI form."""
    for base, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(base, name)
            rel = os.path.relpath(path, top)
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlay whiteout
                add_whiteout(tar, rel, st.st_mtime)
                continue
            add_path(tar, path, rel)
            if stat.S_ISDIR(st.st_mode) and _opaque(path):
                opq = tarfile.TarInfo(os.path.join(rel, ".wh..wh..opq"))
                opq.mtime = int(st.st_mtime)
                tar.addfile(opq)


def add_whiteout(tar, rel: str, mtime: float = 0) -> None:
    """The OCI whiteout of ``rel``: an empty ``.wh.NAME`` beside it."""
    head, tail = os.path.split(rel)
    ti = tarfile.TarInfo(os.path.join(head, ".wh." + tail))
    ti.mtime = int(mtime)
    tar.addfile(ti)


def add_path(tar, path: str, rel: str) -> None:
    """One entry for ``path`` (never followed if a symlink) named ``rel``: owner, mode, times,
    xattrs (overlay's own left out), contents; a hard link to an inode already in the tar."""
    ti = tar.gettarinfo(path, rel)
    ti.uname = ti.gname = ""
    for attr in _xattrs(path):
        if not attr.startswith("trusted.overlay."):
            value = os.getxattr(path, attr, follow_symlinks=False)
            ti.pax_headers["SCHILY.xattr." + attr] = value.decode("utf-8", "surrogateescape")
    if ti.isreg():
        with open(path, "rb") as f:
            tar.addfile(ti, f)
    else:
        tar.addfile(ti)


def _xattrs(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False
