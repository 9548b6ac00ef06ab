"""Metadata that must survive restarts and crashes: namespaces, containers, leases (sqlite, stdlib).

The database lives in the persistent root (``<root>/meta.db``). It runs in WAL mode with
``synchronous=NORMAL``: a committed change survives a crash of the daemon (the case that matters
here; power loss may drop the last transaction). Each call is one short transaction on the event
loop's thread; nothing here blocks for long.

Containers are stored as their serialized protobuf message (the API's own type), with the
namespace and id as the key, so the store needs no schema change when a field is added.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time

from supervisor.errors import AlreadyExists, FailedPrecondition, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY, labels TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS containers (
    ns TEXT NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (ns, id));
CREATE TABLE IF NOT EXISTS leases (
    ns TEXT NOT NULL, id TEXT NOT NULL, created REAL NOT NULL, labels TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (ns, id));
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

    def close(self) -> None:
        self.db.close()

    # -- namespaces ------------------------------------------------------------------
    def ns_get(self, name: str) -> dict | None:
        row = self.db.execute("SELECT labels FROM namespaces WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def ns_list(self) -> list[tuple[str, dict]]:
        rows = self.db.execute("SELECT name, labels FROM namespaces ORDER BY name")
        return [(name, json.loads(labels)) for name, labels in rows]

    def ns_create(self, name: str, labels: dict) -> None:
        try:
            self.db.execute("INSERT INTO namespaces VALUES (?, ?, ?)",
                            (name, json.dumps(labels), time.time()))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"namespace {name}: already exists") from None

    def ns_ensure(self, name: str) -> bool:
        """Create the namespace if missing; True if it was created."""
        cur = self.db.execute("INSERT OR IGNORE INTO namespaces VALUES (?, '{}', ?)",
                              (name, time.time()))
        return cur.rowcount == 1

    def ns_set_labels(self, name: str, labels: dict) -> None:
        cur = self.db.execute("UPDATE namespaces SET labels=? WHERE name=?",
                              (json.dumps(labels), name))
        if cur.rowcount == 0:
            raise NotFound(f"namespace {name}: not found")

    def ns_delete(self, name: str) -> None:
        if self.ns_get(name) is None:
            raise NotFound(f"namespace {name}: not found")
        for table, what in (("containers", "containers"), ("leases", "leases")):
            if self.db.execute(f"SELECT 1 FROM {table} WHERE ns=? LIMIT 1", (name,)).fetchone():
                raise FailedPrecondition(
                    f"namespace {name} must be empty, but it still has {what}")
        self.db.execute("DELETE FROM namespaces WHERE name=?", (name,))

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
            self.db.execute("INSERT INTO containers VALUES (?, ?, ?)", (ns, cid, data))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"container \"{cid}\": already exists") from None

    def container_replace(self, ns: str, cid: str, data: bytes) -> None:
        cur = self.db.execute("UPDATE containers SET data=? WHERE ns=? AND id=?", (data, ns, cid))
        if cur.rowcount == 0:
            raise NotFound(f"container \"{cid}\" in namespace \"{ns}\": not found")

    def container_delete(self, ns: str, cid: str) -> None:
        cur = self.db.execute("DELETE FROM containers WHERE ns=? AND id=?", (ns, cid))
        if cur.rowcount == 0:
            raise NotFound(f"container \"{cid}\" in namespace \"{ns}\": not found")

    def container_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM containers").fetchone()[0]

    # -- leases ---------------------------------------------------------------------------
    def lease_create(self, ns: str, lid: str, labels: dict) -> float:
        created = time.time()
        try:
            self.db.execute("INSERT INTO leases VALUES (?, ?, ?, ?)",
                            (ns, lid, created, json.dumps(labels)))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"lease {lid}: already exists") from None
        return created

    def lease_delete(self, ns: str, lid: str) -> None:
        cur = self.db.execute("DELETE FROM leases WHERE ns=? AND id=?", (ns, lid))
        if cur.rowcount == 0:
            raise NotFound(f"lease {lid}: not found")
        self.db.execute("DELETE FROM lease_resources WHERE ns=? AND lease=?", (ns, lid))

    def lease_list(self, ns: str) -> list[tuple[str, float, dict]]:
        rows = self.db.execute("SELECT id, created, labels FROM leases WHERE ns=? ORDER BY created",
                               (ns,))
        return [(lid, created, json.loads(labels)) for lid, created, labels in rows]

    def _require_lease(self, ns: str, lid: str) -> None:
        if not self.db.execute("SELECT 1 FROM leases WHERE ns=? AND id=?", (ns, lid)).fetchone():
            raise NotFound(f"lease {lid}: not found")

    def lease_add_resource(self, ns: str, lid: str, rid: str, rtype: str) -> None:
        self._require_lease(ns, lid)
        self.db.execute("INSERT OR IGNORE INTO lease_resources VALUES (?, ?, ?, ?)",
                        (ns, lid, rid, rtype))

    def lease_delete_resource(self, ns: str, lid: str, rid: str, rtype: str) -> None:
        self._require_lease(ns, lid)
        self.db.execute("DELETE FROM lease_resources WHERE ns=? AND lease=? AND rid=? AND rtype=?",
                        (ns, lid, rid, rtype))

    def lease_resources(self, ns: str, lid: str) -> list[tuple[str, str]]:
        self._require_lease(ns, lid)
        rows = self.db.execute("SELECT rid, rtype FROM lease_resources WHERE ns=? AND lease=? "
                               "ORDER BY rtype, rid", (ns, lid))
        return list(rows)
