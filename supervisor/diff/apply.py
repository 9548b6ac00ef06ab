"""Unpack one image layer into a directory, treating the layer as hostile input.

A layer is a tar stream (plain, gzip or zstd: recognised by its magic bytes, so a wrong media type
does no harm). Extraction stays inside the target by construction:

- entry names (and hard-link targets) that are absolute or contain ``..`` are refused;
- every parent directory is opened from the root's descriptor with openat2(2)
  ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` (pyrunc.linux), and created one component at a time
  with mkdirat relative to its parent's descriptor: a path that goes through a symlink — such as
  a symlink the same layer made a moment before — is refused, so nothing is ever written through
  one; the last component is created with O_EXCL | O_NOFOLLOW (mknodat, symlinkat, linkat without
  AT_SYMLINK_FOLLOW), after removing what was there;
- owners, modes (setuid included: chown comes before chmod), times and xattrs are set through the
  parent's descriptor without following symlinks; directory times are set last;
- pax and GNU long-name headers are limited to 1 MiB (a huge header is an error, not an
  allocation); overlay's own ``trusted.overlay.*`` xattrs are never taken from a layer.

Whiteouts (``.wh.NAME``) and opaque directories (``.wh..wh..opq``) are applied in one of two
modes: ``overlay`` (the target is an overlay upper directory: a whiteout becomes a 0:0 character
device, an opaque directory gets ``trusted.overlay.opaque=y``) or ``native`` (the target holds the
whole filesystem: the path is removed, an opaque directory loses what earlier layers put there).

The result is the layer's diff ID (sha256 of the uncompressed tar) and size; the compressed digest
is checked against the descriptor on the way. Any refusal raises LayerError; what was written so
far stays in the target, which the caller discards with its snapshot.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile

from pyrunc.linux import sys as linux

CHUNK = 1 << 20
HEADER_LIMIT = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_RESOLVE = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
_LONG_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                 tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class LayerError(Exception):
    """The layer is refused (hostile or broken); the message names the entry and the reason."""


class _LimitedInfo(tarfile.TarInfo):
    """TarInfo that refuses extended headers larger than HEADER_LIMIT before reading them."""

    def _proc_member(self, tarfile_):
        if self.type in _LONG_HEADERS and self.size > HEADER_LIMIT:
            raise LayerError(f"tar header of {self.size} bytes (limit {HEADER_LIMIT})")
        return super()._proc_member(tarfile_)


class _Hashing:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, raw):
        self.raw, self.hash, self.size = raw, hashlib.sha256(), 0

    def read(self, n=-1):
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Peek:
    """The first bytes of a stream, then the rest (to sniff the compression)."""

    def __init__(self, raw, n: int = 4):
        self.raw, self.head = raw, raw.read(n)

    def read(self, n=-1):
        if self.head:
            if n is None or n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.raw.read(n - len(data))
            return data
        return self.raw.read(n)


def decompressed(stream):
    """The uncompressed bytes of a layer stream (gzip, zstd or plain, by magic)."""
    peek = _Peek(stream)
    if peek.head[:2] == b"\x1f\x8b":
        import gzip
        return gzip.GzipFile(fileobj=peek, mode="rb")
    if peek.head == b"\x28\xb5\x2f\xfd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(peek, read_across_frames=True)
    return peek


def apply_layer(stream, target: str, mode: str = "native", expected: str = "") -> tuple[str, int]:
    """Unpack the layer read from ``stream`` into ``target``; (diff ID, uncompressed size).

    ``expected`` is the compressed digest the stream must have (checked at its end)."""
    if mode not in ("native", "overlay"):
        raise ValueError(f"mode {mode!r}")
    raw = _Hashing(stream)
    plain = _Hashing(decompressed(raw))
    rootfd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            with tarfile.open(fileobj=plain, mode="r|", tarinfo=_LimitedInfo) as tar:
                _Unpacker(rootfd, mode).run(tar)
            plain.drain()
            raw.drain()
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            if isinstance(e, LayerError):
                raise
            raise LayerError(f"layer: {e}") from None
    finally:
        os.close(rootfd)
    if expected and raw.digest() != expected:
        raise LayerError(f"layer digest {raw.digest()}, expected {expected}")
    return plain.digest(), plain.size


def _parts(name: str, what: str) -> list[str]:
    if name.startswith("/"):
        raise LayerError(f"{what} {name!r}: absolute path")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise LayerError(f"{what} {name!r}: '..' leaves the layer's root")
    return parts


class _Unpacker:
    def __init__(self, rootfd: int, mode: str):
        self.rootfd, self.mode = rootfd, mode
        self.dir_times: list[tuple[str, int]] = []
        self.made: set[str] = set()  # paths this layer wrote (native opaque directories keep them)
        self.opaque: list[str] = []

    def run(self, tar) -> None:
        for ti in tar:
            parts = _parts(ti.name, "entry")
            if not parts:
                if ti.isdir():
                    self._meta(self.rootfd, ".", ti)
                continue
            try:
                self._entry(tar, ti, parts)
            except LayerError:
                raise
            except OSError as e:
                raise LayerError(f"entry {ti.name!r}: {e.strerror or e}") from None
        for path in self.opaque:
            self._clear_opaque(path)
        for path, mtime in reversed(self.dir_times):
            try:
                fd = self._open_dir(path.split("/") if path else [], create=False)
            except FileNotFoundError:
                continue  # whited out later in the same layer
            try:
                os.utime(f"/proc/self/fd/{fd}", ns=(mtime, mtime))
            finally:
                os.close(fd)

    # -- directories ------------------------------------------------------------------------------
    def _open_dir(self, parts: list[str], create: bool) -> int:
        """O_PATH fd of the directory ``parts`` under the root, never through a symlink."""
        path = "/".join(parts) or "."
        try:
            return linux.openat2(self.rootfd, path, os.O_PATH | os.O_DIRECTORY, resolve=_RESOLVE)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as e:
            raise self._path_error(path, e) from None
        fd = os.dup(self.rootfd)
        try:
            for i, name in enumerate(parts):
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                    self.made.add("/".join(parts[:i + 1]))
                except FileExistsError:
                    pass
                try:
                    nxt = linux.openat2(fd, name, os.O_PATH | os.O_DIRECTORY, resolve=_RESOLVE)
                except OSError as e:
                    raise self._path_error("/".join(parts[:i + 1]), e) from None
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _path_error(path: str, e: OSError) -> LayerError:
        if e.errno in (errno.ELOOP, errno.EXDEV):
            return LayerError(f"path {path!r} goes through a symlink: refused")
        if e.errno == errno.ENOTDIR:
            return LayerError(f"path {path!r}: a parent is not a directory")
        return LayerError(f"path {path!r}: {e.strerror}")

    # -- entries ----------------------------------------------------------------------------------
    def _entry(self, tar, ti, parts: list[str]) -> None:
        name = parts[-1]
        parent = self._open_dir(parts[:-1], create=True)
        try:
            if name == OPAQUE:
                self._opaque(parent, "/".join(parts[:-1]))
            elif name.startswith(WHITEOUT):
                self._whiteout(parent, name[len(WHITEOUT):], parts[:-1])
            else:
                self._create(tar, ti, parent, name, parts)
        finally:
            os.close(parent)

    def _opaque(self, parent: int, path: str) -> None:
        if self.mode == "overlay":
            os.setxattr(f"/proc/self/fd/{parent}", "trusted.overlay.opaque", b"y")
        else:
            self.opaque.append(path)

    def _clear_opaque(self, path: str) -> None:
        """Native mode: remove what earlier layers put in an opaque directory."""
        parts = path.split("/") if path else []
        fd = self._open_dir(parts, create=False)
        try:
            for child in os.listdir(f"/proc/self/fd/{fd}"):
                if "/".join(parts + [child]) not in self.made:
                    _remove(fd, child)
        finally:
            os.close(fd)

    def _whiteout(self, parent: int, name: str, dirparts: list[str]) -> None:
        if not name or name in (".", "..") or name.startswith(WHITEOUT):
            raise LayerError(f"whiteout {'/'.join(dirparts + [WHITEOUT + name])!r}: invalid")
        _remove(parent, name)
        if self.mode == "overlay":
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)

    def _create(self, tar, ti, parent: int, name: str, parts: list[str]) -> None:
        path = "/".join(parts)
        if ti.isdir():
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and not stat.S_ISDIR(st.st_mode):
                _remove(parent, name)
                st = None
            if st is None:
                os.mkdir(name, 0o700, dir_fd=parent)
            self.made.add(path)
            self._meta(parent, name, ti)
            self.dir_times.append((path, int(ti.mtime * 1e9)))
            return
        _remove(parent, name)
        self.made.add(path)
        if ti.isreg():
            self._file(tar, ti, parent, name)
        elif ti.issym():
            os.symlink(ti.linkname, name, dir_fd=parent)
        elif ti.islnk():
            self._hardlink(ti, parent, name)
            return  # the link shares the target's inode and metadata
        elif ti.ischr() or ti.isblk() or ti.isfifo():
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK if ti.isblk() else stat.S_IFIFO
            try:
                os.mknod(name, kind | 0o600, os.makedev(ti.devmajor, ti.devminor),
                         dir_fd=parent)
            except PermissionError:
                return  # devices need CAP_MKNOD: skipped without it
        else:
            raise LayerError(f"entry {ti.name!r}: unsupported tar type {ti.type!r}")
        self._meta(parent, name, ti)

    def _file(self, tar, ti, parent: int, name: str) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            src = tar.extractfile(ti)
            left = ti.size
            while left > 0:
                data = src.read(min(CHUNK, left))
                if not data:
                    raise LayerError(f"entry {ti.name!r}: truncated")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                left -= len(data)
        finally:
            os.close(fd)

    def _hardlink(self, ti, parent: int, name: str) -> None:
        target = _parts(ti.linkname, "hard link target")
        if not target:
            raise LayerError(f"hard link {ti.name!r}: empty target")
        try:
            tparent = self._open_dir(target[:-1], create=False)
        except FileNotFoundError:
            raise LayerError(f"hard link {ti.name!r}: target {ti.linkname!r} not in the layer") \
                from None
        try:
            os.link(target[-1], name, src_dir_fd=tparent, dst_dir_fd=parent,
                    follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(f"hard link {ti.name!r}: target {ti.linkname!r} not in the layer") \
                from None
        finally:
            os.close(tparent)

    def _meta(self, parent: int, name: str, ti) -> None:
        """Owner, then mode (setuid survives), xattrs and times, never through a symlink."""
        os.chown(name, ti.uid, ti.gid, dir_fd=parent, follow_symlinks=False)
        if ti.issym():
            os.utime(name, ns=(int(ti.mtime * 1e9),) * 2, dir_fd=parent, follow_symlinks=False)
            return
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            where = f"/proc/self/fd/{fd}"
            os.chmod(where, stat.S_IMODE(ti.mode))
            for key, value in ti.pax_headers.items():
                if key.startswith("SCHILY.xattr."):
                    attr = key[len("SCHILY.xattr."):]
                    if attr.startswith("trusted.overlay."):
                        continue
                    os.setxattr(where, attr, value.encode("utf-8", "surrogateescape"))
            if not ti.isdir():
                os.utime(where, ns=(int(ti.mtime * 1e9),) * 2)
        finally:
            os.close(fd)


def _remove(parent: int, name: str) -> None:
    """Remove ``name`` in the directory ``parent`` (a whole tree for a directory), if present."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)
