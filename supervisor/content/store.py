"""Blobs by digest, as containerd's content store keeps them.

On disk (under ``<root>/content``)::

    blobs/sha256/<hex>     complete, verified blobs (shared by every namespace)
    ingest/<key>/data      the bytes of a write in progress
    ingest/<key>/meta      its ref, namespace, expected digest and size, labels, times (JSON)

A blob only ever appears in ``blobs/`` by rename(2) of a complete ingest whose digest and size were
checked and whose data was fsync'd, so a reader never sees a partial blob, whatever kills the
daemon. What a namespace sees is its own rows of the ``content`` table (digest, size, labels,
times): a blob is visible in a namespace once committed there. The rename comes before the row, so
a crash between the two leaves an orphan blob (removed by garbage collection), never a row without
its blob.

Ingests are resumable: a write to a ref that already has data continues from the offset it
reached (the hash is recomputed from the data on disk). One ref has one writer at a time; a
second is refused with Unavailable (containerd's "ref locked"), never interleaved.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time

from supervisor.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                               Unavailable)

SCHEMA = """
CREATE TABLE IF NOT EXISTS content (
    ns TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL, labels TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (ns, digest));
"""
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


def check_digest(digest: str) -> str:
    """``digest`` if it is a sha256 digest this store can hold; InvalidArgument otherwise."""
    if not _DIGEST.match(digest or ""):
        raise InvalidArgument(f"digest {digest!r}: not a sha256 digest (sha256:<64 hex>)")
    return digest


class Info:
    __slots__ = ("digest", "size", "created", "updated", "labels")

    def __init__(self, digest, size, created, updated, labels):
        self.digest, self.size, self.created, self.updated = digest, size, created, updated
        self.labels = labels


class Status:
    __slots__ = ("ref", "offset", "total", "expected", "started", "updated")

    def __init__(self, ref, offset, total, expected, started, updated):
        self.ref, self.offset, self.total, self.expected = ref, offset, total, expected
        self.started, self.updated = started, updated


class ContentStore:
    def __init__(self, root: str, store, leases=None):
        self.root = os.path.join(root, "content")
        self.blobs = os.path.join(self.root, "blobs", "sha256")
        self.ingests = os.path.join(self.root, "ingest")
        for d in (self.blobs, self.ingests):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.store = store
        self.leases = leases
        self.db = store.db
        with store.lock:
            self.db.executescript(SCHEMA)
        self.locked: set[str] = set()  # ingest keys with a live writer

    # -- paths ----------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blobs, check_digest(digest)[len("sha256:"):])

    def _key(self, ns: str, ref: str) -> str:
        return hashlib.sha256(f"{ns}\0{ref}".encode()).hexdigest()[:40]

    # -- blobs ------------------------------------------------------------------------------------
    def info(self, ns: str, digest: str) -> Info:
        check_digest(digest)
        row = self.db.execute("SELECT size, created, updated, labels FROM content WHERE ns=? AND "
                              "digest=?", (ns, digest)).fetchone()
        if row is None:
            raise NotFound(f"content digest {digest}: not found")
        return Info(digest, row[0], row[1], row[2], json.loads(row[3]))

    def list(self, ns: str) -> list[Info]:
        rows = self.db.execute("SELECT digest, size, created, updated, labels FROM content "
                               "WHERE ns=? ORDER BY digest", (ns,))
        return [Info(d, s, c, u, json.loads(lb)) for d, s, c, u, lb in rows]

    def set_labels(self, ns: str, digest: str, labels: dict) -> Info:
        with self.store.transaction() as db:
            info = self.info(ns, digest)
            db.execute("UPDATE content SET labels=?, updated=? WHERE ns=? AND digest=?",
                       (json.dumps(labels), time.time(), ns, digest))
        return self.info(ns, digest)

    def delete(self, ns: str, digest: str) -> None:
        """Forget the blob in ``ns``; the file goes when no namespace holds it any more."""
        check_digest(digest)
        with self.store.transaction() as db:
            if db.execute("DELETE FROM content WHERE ns=? AND digest=?", (ns, digest)).rowcount == 0:
                raise NotFound(f"content digest {digest}: not found")
            if not db.execute("SELECT 1 FROM content WHERE digest=? LIMIT 1", (digest,)).fetchone():
                _unlink(self.blob_path(digest))

    def open_blob(self, ns: str, digest: str):
        """A binary file object of a blob visible in ``ns``."""
        self.info(ns, digest)
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None

    def blob_digests(self) -> set[str]:
        """Every blob on disk (for garbage collection)."""
        return {"sha256:" + name for name in os.listdir(self.blobs) if len(name) == 64}

    def remove_blob(self, digest: str) -> None:
        _unlink(self.blob_path(digest))

    # -- ingests ----------------------------------------------------------------------------------
    def _meta(self, key: str) -> dict | None:
        try:
            with open(os.path.join(self.ingests, key, "meta")) as f:
                return json.load(f)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None

    def status(self, ns: str, ref: str) -> Status:
        key = self._key(ns, ref)
        meta = self._meta(key)
        if meta is None:
            raise NotFound(f"ref {ref}: not found")
        return self._status(key, meta)

    def _status(self, key: str, meta: dict) -> Status:
        try:
            offset = os.path.getsize(os.path.join(self.ingests, key, "data"))
        except FileNotFoundError:
            offset = 0
        return Status(meta["ref"], offset, meta.get("total", 0), meta.get("expected", ""),
                      meta["started"], meta.get("updated", meta["started"]))

    def statuses(self, ns: str) -> list[Status]:
        out = []
        for key in sorted(os.listdir(self.ingests)):
            meta = self._meta(key)
            if meta is not None and meta.get("ns") == ns:
                out.append(self._status(key, meta))
        return out

    def ingest_refs(self) -> list[tuple[str, str, str]]:
        """(namespace, ref, key) of every ingest on disk, for garbage collection."""
        out = []
        for key in os.listdir(self.ingests):
            meta = self._meta(key) or {}
            out.append((meta.get("ns", ""), meta.get("ref", ""), key))
        return out

    def abort(self, ns: str, ref: str) -> None:
        key = self._key(ns, ref)
        if key in self.locked:
            raise Unavailable(f"ref {ref}: locked by another writer")
        if self._meta(key) is None and not os.path.isdir(os.path.join(self.ingests, key)):
            raise NotFound(f"ref {ref}: not found")
        self.remove_ingest(key)

    def remove_ingest(self, key: str) -> None:
        if key not in self.locked:
            shutil.rmtree(os.path.join(self.ingests, key), ignore_errors=True)

    def writer(self, ns: str, ref: str, total: int = 0, expected: str = "",
               lease: str = "") -> "Writer":
        """Open (or resume) the ingest ``ref``; AlreadyExists if ``expected`` is already held."""
        if not ref:
            raise InvalidArgument("first message must have a reference")
        if expected:
            check_digest(expected)
            if self._has(ns, expected):
                raise AlreadyExists(f"content {expected}: already exists")
        key = self._key(ns, ref)
        with self.store.lock:  # garbage collection sweeps ingests under the same lock
            if key in self.locked:
                raise Unavailable(f"ref {ref}: locked by another writer")
            self.locked.add(key)
        try:
            if lease and self.leases is not None:
                self.leases.add_resource(ns, lease, ref, "ingests")
            return Writer(self, ns, ref, key, total, expected, lease)
        except BaseException:
            self.locked.discard(key)
            raise

    def _has(self, ns: str, digest: str) -> bool:
        return self.db.execute("SELECT 1 FROM content WHERE ns=? AND digest=?",
                               (ns, digest)).fetchone() is not None

    def _commit(self, ns: str, key: str, digest: str, size: int, labels: dict,
                lease: str) -> None:
        """Move a verified ingest's data into blobs/ and record the blob in ``ns``."""
        data = os.path.join(self.ingests, key, "data")
        target = self.blob_path(digest)
        now = time.time()
        with self.store.transaction() as db:
            if self._has(ns, digest):
                raise AlreadyExists(f"content {digest}: already exists")
            if os.path.exists(target):
                _unlink(data)  # the same bytes are already on disk (another namespace)
            else:
                os.rename(data, target)
                _fsync_dir(self.blobs)
            db.execute("INSERT INTO content VALUES (?, ?, ?, ?, ?, ?)",
                       (ns, digest, size, now, now, json.dumps(labels)))
            if lease and self.leases is not None:
                self.leases.add_resource(ns, lease, digest, "content")


class Writer:
    """One client's hold on an ingest: writes at the current offset, commit, close."""

    def __init__(self, cs: ContentStore, ns: str, ref: str, key: str, total: int,
                 expected: str, lease: str):
        self.cs, self.ns, self.ref, self.key, self.lease = cs, ns, ref, key, lease
        self.dir = os.path.join(cs.ingests, key)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        meta = cs._meta(key)
        now = time.time()
        if meta is None:
            meta = {"ns": ns, "ref": ref, "started": now, "updated": now, "total": 0,
                    "expected": ""}
        self.meta = meta
        self.set_target(total, expected)
        self.fd = os.open(os.path.join(self.dir, "data"),
                          os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.offset = os.fstat(self.fd).st_size
        self.hasher = self._rehash(self.offset)
        self.labels: dict = {}

    def set_target(self, total: int, expected: str) -> None:
        if total > 0:
            self.meta["total"] = total
        if expected:
            self.meta["expected"] = check_digest(expected)
        self._save_meta()

    def _save_meta(self) -> None:
        tmp = os.path.join(self.dir, "meta.tmp")
        with open(tmp, "w") as f:
            json.dump(self.meta, f)
        os.rename(tmp, os.path.join(self.dir, "meta"))

    def _rehash(self, upto: int):
        h = hashlib.sha256()
        pos = 0
        while pos < upto:
            chunk = os.pread(self.fd, min(CHUNK, upto - pos), pos)
            if not chunk:
                break
            h.update(chunk)
            pos += len(chunk)
        return h

    def status(self) -> Status:
        return Status(self.ref, self.offset, self.meta.get("total", 0),
                      self.meta.get("expected", ""), self.meta["started"],
                      self.meta.get("updated", self.meta["started"]))

    def truncate(self, offset: int) -> None:
        os.ftruncate(self.fd, offset)
        self.offset = offset
        self.hasher = self._rehash(offset)

    def write(self, data: bytes) -> None:
        total = self.meta.get("total", 0)
        if total and self.offset + len(data) > total:
            raise FailedPrecondition(f"ref {self.ref}: write past the expected size {total}")
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.offset)
            self.hasher.update(view[:n])
            self.offset += n
            view = view[n:]
        self.meta["updated"] = time.time()

    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()

    def commit(self, labels: dict | None = None) -> str:
        """Verify size and digest, make the blob visible; its digest."""
        total, expected = self.meta.get("total", 0), self.meta.get("expected", "")
        if total and self.offset != total:
            raise FailedPrecondition(f"unexpected commit size {self.offset}, expected {total}")
        digest = self.digest()
        if expected and digest != expected:
            self.discard()  # wrong bytes are never worth resuming
            raise FailedPrecondition(f"unexpected commit digest {digest}, expected {expected}")
        os.fsync(self.fd)
        try:
            self.cs._commit(self.ns, self.key, digest, self.offset, labels or {}, self.lease)
        except AlreadyExists:
            self.discard()
            raise
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return digest

    def discard(self) -> None:
        """Close and remove the ingest."""
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        if self.fd >= 0 and os.path.isdir(self.dir):
            try:
                self._save_meta()
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1
        self.cs.locked.discard(self.key)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
