"""Hand-built image layers for the unpack and image tests: tar streams made with tarfile, with
the entries a test asks for (files, dirs, symlinks, hard links, devices, whiteouts, xattrs), and
compressed with gzip or zstd."""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layer:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _add(self, ti, data=None, **kw):
        for k, v in kw.items():
            setattr(ti, k, v)
        self.tar.addfile(ti, io.BytesIO(data) if data is not None else None)
        return self

    def dir(self, name, mode=0o755, **kw):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, kw.pop("mtime", 1_600_000_000)
        return self._add(ti, **kw)

    def file(self, name, data=b"", mode=0o644, xattrs=None, **kw):
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), mode, kw.pop("mtime", 1_600_000_000)
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        return self._add(ti, data, **kw)

    def symlink(self, name, target):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = tarfile.SYMTYPE, target
        return self._add(ti)

    def hardlink(self, name, target):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname = tarfile.LNKTYPE, target
        return self._add(ti)

    def chardev(self, name, major, minor):
        ti = tarfile.TarInfo(name)
        ti.type, ti.devmajor, ti.devminor, ti.mode = tarfile.CHRTYPE, major, minor, 0o666
        return self._add(ti)

    def whiteout(self, path):
        head, _, name = path.rpartition("/")
        return self.file((head + "/" if head else "") + ".wh." + name)

    def opaque(self, dirpath):
        return self.file(dirpath.rstrip("/") + "/.wh..wh..opq")

    def raw(self, data: bytes):
        self.tar.fileobj.write(data)
        return self

    def tar_bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()

    def gzip(self) -> bytes:
        return gzip.compress(self.tar_bytes(), 1)

    def zstd(self) -> bytes:
        import zstandard
        return zstandard.ZstdCompressor().compress(self.tar_bytes())


def huge_pax_header(size: int = 1 << 30) -> bytes:
    """A tar whose first member claims an extended header of ``size`` bytes."""
    ti = tarfile.TarInfo("././@PaxHeader")
    ti.type, ti.size = tarfile.XHDTYPE, size
    return ti.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 4096


def held_metadata(sv) -> list[tuple[str, str]]:
    """gRPC metadata for a namespace of the image tests' own (the session's namespace with ``i``
    added, so other tests' counts stay theirs) under one lease that never expires, so that what a
    test makes through the raw API is not garbage-collected between its calls (as ctr does with
    its own leases)."""
    lid = getattr(sv, "_hold_lease", None)
    if lid is None:
        import grpc
        from supervisor.gen.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
        lid = "svt-hold"
        with grpc.insecure_channel("unix://" + sv.sock) as ch:
            try:
                leases_pb2_grpc.LeasesStub(ch).Create(leases_pb2.CreateRequest(id=lid),
                                                      metadata=[("containerd-namespace",
                                                                 sv.ns + "i")])
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
        sv._hold_lease = lid
    return [("containerd-namespace", sv.ns + "i"), ("containerd-lease", lid)]
