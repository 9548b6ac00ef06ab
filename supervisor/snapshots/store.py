"""Snapshots by key, as containerd's snapshotters keep them, with the metadata in sqlite.

A snapshot is one row (namespace, snapshotter, key, parent, kind, labels, times, usage) and one
directory ``<root>/snapshots/<snapshotter>/snapshots/<id>/`` holding ``fs/`` (its files; for
overlay the upper directory) and, for overlay, ``work/``. Ids are the rows' integer ids, so a
snapshot keeps its directory when Commit renames it from its active key to its committed name;
parents are rows too, so a chain of any depth is a walk up the ``parent`` column.

Kinds are containerd's: ACTIVE (writable, from Prepare), VIEW (read-only, from View) and COMMITTED
(from Commit: immutable, the only kind that may be a parent). A snapshot with children cannot be
removed.

Crash safety: the row is inserted and the directory made inside one transaction (a crash before
the commit leaves a directory without a row); Remove deletes the row first and the directory
after. ``cleanup`` removes every directory that has no row, and runs at every start, so kill -9
at any point leaves nothing a restart does not clean.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time

from supervisor.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT NOT NULL, snapshotter TEXT NOT NULL,
    key TEXT NOT NULL, parent INTEGER, kind INTEGER NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL, labels TEXT NOT NULL DEFAULT '{}', size INTEGER NOT NULL DEFAULT 0,
    inodes INTEGER NOT NULL DEFAULT 0, UNIQUE (ns, snapshotter, key));
"""
VIEW, ACTIVE, COMMITTED = 1, 2, 3
KIND_NAMES = {VIEW: "View", ACTIVE: "Active", COMMITTED: "Committed"}


class Info:
    __slots__ = ("id", "name", "parent", "kind", "created", "updated", "labels", "size",
                 "inodes")

    def __init__(self, row, parent_name: str = ""):
        (self.id, _ns, _sn, self.name, _pid, self.kind, self.created, self.updated, labels,
         self.size, self.inodes) = row
        self.labels = json.loads(labels)
        self.parent = parent_name


class Snapshots:
    """The snapshots of one snapshotter (``layout``: overlay.Layout or native.Layout)."""

    def __init__(self, root: str, store, layout, leases=None):
        self.name = layout.name
        self.layout = layout
        self.base = os.path.join(root, "snapshots", self.name, "snapshots")
        os.makedirs(self.base, mode=0o700, exist_ok=True)
        self.store, self.db, self.leases = store, store.db, leases
        with store.lock:
            self.db.executescript(SCHEMA)

    # -- lookups ----------------------------------------------------------------------------------
    def dir(self, sid: int) -> str:
        return os.path.join(self.base, str(sid))

    def fs(self, sid: int) -> str:
        return os.path.join(self.dir(sid), "fs")

    def _row(self, ns: str, key: str):
        return self.db.execute("SELECT * FROM snapshots WHERE ns=? AND snapshotter=? AND key=?",
                               (ns, self.name, key)).fetchone()

    def _by_id(self, sid: int):
        return self.db.execute("SELECT * FROM snapshots WHERE id=?", (sid,)).fetchone()

    def stat(self, ns: str, key: str) -> Info:
        row = self._row(ns, key)
        if row is None:
            raise NotFound(f"snapshot {key} does not exist: not found")
        parent = self._by_id(row[4]) if row[4] is not None else None
        return Info(row, parent[3] if parent else "")

    def list(self, ns: str) -> list[Info]:
        rows = self.db.execute("SELECT * FROM snapshots WHERE ns=? AND snapshotter=? ORDER BY id",
                               (ns, self.name)).fetchall()
        names = {r[0]: r[3] for r in rows}
        return [Info(r, names.get(r[4], "")) for r in rows]

    def chain(self, sid: int | None) -> list[int]:
        """Ids from ``sid`` up to the bottom layer (nearest first)."""
        out = []
        while sid is not None:
            out.append(sid)
            row = self._by_id(sid)
            sid = row[4] if row else None
        return out

    def ids(self) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT id FROM snapshots WHERE snapshotter=?",
                                              (self.name,))}

    # -- changes ----------------------------------------------------------------------------------
    def create(self, ns: str, key: str, parent: str, kind: int, labels: dict,
               lease: str = "") -> list[dict]:
        """Prepare (ACTIVE) or View (VIEW) ``key`` on ``parent``; its mounts."""
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        now = time.time()
        with self.store.transaction() as db:
            pid = None
            if parent:
                prow = self._row(ns, parent)
                if prow is None:
                    raise NotFound(f"parent snapshot {parent} does not exist: not found")
                if prow[5] != COMMITTED:
                    raise InvalidArgument(f"parent {parent} is not committed")
                pid = prow[0]
            try:
                cur = db.execute("INSERT INTO snapshots (ns, snapshotter, key, parent, kind, "
                                 "created, updated, labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 (ns, self.name, key, pid, kind, now, now, json.dumps(labels)))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"snapshot {key}: already exists") from None
            sid = cur.lastrowid
            try:
                self.layout.make(self, sid, self.chain(pid))
            except BaseException:
                shutil.rmtree(self.dir(sid), ignore_errors=True)
                raise
            if lease and self.leases is not None:
                self.leases.add_resource(ns, lease, key, f"snapshots/{self.name}")
        return self.mounts(ns, key)

    def mounts(self, ns: str, key: str) -> list[dict]:
        info = self.stat(ns, key)
        if info.kind == COMMITTED:
            raise FailedPrecondition(f"snapshot {key} is committed: it has no mounts")
        row = self._row(ns, key)
        return self.layout.mounts(self, info.id, info.kind, self.chain(row[4]))

    def commit(self, ns: str, name: str, key: str, labels: dict, lease: str = "") -> None:
        if not name:
            raise InvalidArgument("snapshot name must not be empty")
        info = self.stat(ns, key)
        size, inodes = usage(self.fs(info.id))  # outside the transaction: it walks the tree
        with self.store.transaction() as db:
            info = self.stat(ns, key)
            if info.kind != ACTIVE:
                raise FailedPrecondition(f"snapshot {key} is not active")
            try:
                db.execute("UPDATE snapshots SET key=?, kind=?, labels=?, updated=?, size=?, "
                           "inodes=? WHERE id=?", (name, COMMITTED, json.dumps(labels),
                                                   time.time(), size, inodes, info.id))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"snapshot {name}: already exists") from None
            if lease and self.leases is not None:
                self.leases.add_resource(ns, lease, name, f"snapshots/{self.name}")

    def set_labels(self, ns: str, key: str, labels: dict) -> Info:
        with self.store.transaction() as db:
            info = self.stat(ns, key)
            db.execute("UPDATE snapshots SET labels=?, updated=? WHERE id=?",
                       (json.dumps(labels), time.time(), info.id))
        return self.stat(ns, key)

    def remove(self, ns: str, key: str) -> None:
        with self.store.transaction() as db:
            info = self.stat(ns, key)
            if db.execute("SELECT 1 FROM snapshots WHERE parent=? LIMIT 1", (info.id,)).fetchone():
                raise FailedPrecondition(f"cannot remove snapshot {key}: it has children")
            db.execute("DELETE FROM snapshots WHERE id=?", (info.id,))
        remove_tree(self.dir(info.id))

    def usage(self, ns: str, key: str) -> tuple[int, int]:
        info = self.stat(ns, key)
        if info.kind == COMMITTED:
            return info.size, info.inodes
        return usage(self.fs(info.id))

    def cleanup(self) -> list[str]:
        """Remove every directory no row names (what a crash or a removal left); their names."""
        known = {str(i) for i in self.ids()}
        gone = []
        for name in os.listdir(self.base):
            if name not in known:
                remove_tree(os.path.join(self.base, name))
                gone.append(name)
        return gone


def usage(path: str) -> tuple[int, int]:
    """(bytes, inodes) under ``path``, each inode counted once, directories included."""
    seen, size = set(), 0
    for base, dirs, files in os.walk(path):
        for name in dirs + files + [""]:
            try:
                st = os.lstat(os.path.join(base, name) if name else base)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            size += st.st_blocks * 512
    return size, len(seen)


def remove_tree(path: str) -> None:
    """rm -rf that also gets through immutable-less read-only directories a layer made."""
    def onerror(fn, p, exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            fn(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=onerror)
