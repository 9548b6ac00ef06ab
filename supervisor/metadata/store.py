"""Metadata that must survive restarts and crashes: namespaces, containers (sqlite, stdlib);
leases are in leases.py, on the same database.

The database lives in the persistent root (``<root>/meta.db``). It runs in WAL mode with
``synchronous=NORMAL``: a committed change survives a crash of the daemon (the case that matters
here; power loss may drop the last transaction). Every write goes through ``transaction()``, the
one transaction helper: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error), under a
lock so that callers on worker threads and on the event loop never interleave. Each transaction is
short (one row or a handful); nothing here blocks for long.

Containers are stored as their serialized protobuf message (the API's own type), with the
namespace and id as the key, so the store needs no schema change when a field is added.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time

from supervisor.errors import AlreadyExists, FailedPrecondition, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY, labels TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS containers (
    ns TEXT NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (ns, id));
CREATE TABLE IF NOT EXISTS leases (
    ns TEXT NOT NULL, id TEXT NOT NULL, created REAL NOT NULL, labels TEXT NOT NULL DEFAULT '{}',
    expires REAL, PRIMARY KEY (ns, id));
CREATE TABLE IF NOT EXISTS lease_resources (
    ns TEXT NOT NULL, lease TEXT NOT NULL, rid TEXT NOT NULL, rtype TEXT NOT NULL,
    PRIMARY KEY (ns, lease, rid, rtype));
"""


class Store:
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        columns = [row[1] for row in self.db.execute("PRAGMA table_info(leases)")]
        if "expires" not in columns:  # a database from before lease expiry
            self.db.execute("ALTER TABLE leases ADD COLUMN expires REAL")
        self.lock = threading.RLock()

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction (a nested call joins the outer one); yields the connection."""
        with self.lock:
            if self.db.in_transaction:
                yield self.db
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- namespaces ------------------------------------------------------------------
    def ns_get(self, name: str) -> dict | None:
        row = self.db.execute("SELECT labels FROM namespaces WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def ns_list(self) -> list[tuple[str, dict]]:
        rows = self.db.execute("SELECT name, labels FROM namespaces ORDER BY name")
        return [(name, json.loads(labels)) for name, labels in rows]

    def ns_create(self, name: str, labels: dict) -> None:
        try:
            with self.transaction() as db:
                db.execute("INSERT INTO namespaces VALUES (?, ?, ?)",
                           (name, json.dumps(labels), time.time()))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"namespace {name}: already exists") from None

    def ns_ensure(self, name: str) -> bool:
        """Create the namespace if missing; True if it was created."""
        with self.transaction() as db:
            cur = db.execute("INSERT OR IGNORE INTO namespaces VALUES (?, '{}', ?)",
                             (name, time.time()))
        return cur.rowcount == 1

    def ns_set_labels(self, name: str, labels: dict) -> None:
        with self.transaction() as db:
            cur = db.execute("UPDATE namespaces SET labels=? WHERE name=?",
                             (json.dumps(labels), name))
        if cur.rowcount == 0:
            raise NotFound(f"namespace {name}: not found")

    def ns_delete(self, name: str) -> None:
        with self.transaction() as db:
            if self.ns_get(name) is None:
                raise NotFound(f"namespace {name}: not found")
            for table, what in (("containers", "containers"), ("leases", "leases")):
                if db.execute(f"SELECT 1 FROM {table} WHERE ns=? LIMIT 1", (name,)).fetchone():
                    raise FailedPrecondition(
                        f"namespace {name} must be empty, but it still has {what}")
            db.execute("DELETE FROM namespaces WHERE name=?", (name,))

    # -- containers --------------------------------------------------------------------
    def container_get(self, ns: str, cid: str) -> bytes | None:
        row = self.db.execute("SELECT data FROM containers WHERE ns=? AND id=?",
                              (ns, cid)).fetchone()
        return row[0] if row else None

    def container_list(self, ns: str) -> list[bytes]:
        rows = self.db.execute("SELECT data FROM containers WHERE ns=? ORDER BY id", (ns,))
        return [r[0] for r in rows]

    def container_insert(self, ns: str, cid: str, data: bytes) -> None:
        try:
            with self.transaction() as db:
                db.execute("INSERT INTO containers VALUES (?, ?, ?)", (ns, cid, data))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"container \"{cid}\": already exists") from None

    def container_replace(self, ns: str, cid: str, data: bytes) -> None:
        with self.transaction() as db:
            cur = db.execute("UPDATE containers SET data=? WHERE ns=? AND id=?", (data, ns, cid))
        if cur.rowcount == 0:
            raise NotFound(f"container \"{cid}\" in namespace \"{ns}\": not found")

    def container_delete(self, ns: str, cid: str) -> None:
        with self.transaction() as db:
            cur = db.execute("DELETE FROM containers WHERE ns=? AND id=?", (ns, cid))
        if cur.rowcount == 0:
            raise NotFound(f"container \"{cid}\" in namespace \"{ns}\": not found")

    def container_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM containers").fetchone()[0]
