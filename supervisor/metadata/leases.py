"""Leases: named GC roots. A lease holds the resources attached to it (content blobs, ingests,
snapshots) against garbage collection until it is deleted or expires.

Expiry is containerd's label ``containerd.io/gc.expire`` (an RFC 3339 time, checked at Create):
once past, the lease is gone — it is no longer listed, and ``collect`` (run by the daemon at the
next expiry, and before every read) deletes it and its resource records in one transaction.
``roots`` is what a garbage collector starts from: every resource held by a live lease.

Resource types are containerd's: ``content``, ``ingests`` and ``snapshots/<snapshotter>``.
"""
from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime

from supervisor.errors import AlreadyExists, InvalidArgument, NotFound

EXPIRE_LABEL = "containerd.io/gc.expire"


def parse_expire(value: str) -> float:
    """An RFC 3339 time as seconds since the epoch; InvalidArgument if it is not one."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:  # Go writes nanoseconds; Python takes at most microseconds
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = head + "." + tail[:min(digits, 6)] + tail[digits:]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or "T" not in value.upper():
        raise InvalidArgument(f"label {EXPIRE_LABEL}={value!r}: not an RFC 3339 time")
    return when.timestamp()


def check_resource_type(rtype: str) -> None:
    if rtype in ("content", "ingests"):
        return
    if rtype.startswith("snapshots/") and len(rtype) > len("snapshots/"):
        return
    raise InvalidArgument(f"resource type {rtype!r}: unsupported "
                          "(content, ingests or snapshots/<snapshotter>)")


class Leases:
    def __init__(self, store):
        self.store = store
        self.db = store.db

    def create(self, ns: str, lid: str, labels: dict) -> float:
        expires = parse_expire(labels[EXPIRE_LABEL]) if EXPIRE_LABEL in labels else None
        created = time.time()
        try:
            with self.store.transaction() as db:
                db.execute("INSERT INTO leases VALUES (?, ?, ?, ?, ?)",
                           (ns, lid, created, json.dumps(labels), expires))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"lease {lid}: already exists") from None
        return created

    def delete(self, ns: str, lid: str) -> None:
        self.collect()
        with self.store.transaction() as db:
            cur = db.execute("DELETE FROM leases WHERE ns=? AND id=?", (ns, lid))
            if cur.rowcount == 0:
                raise NotFound(f"lease {lid}: not found")
            db.execute("DELETE FROM lease_resources WHERE ns=? AND lease=?", (ns, lid))

    def list(self, ns: str) -> list[tuple[str, float, dict]]:
        self.collect()
        rows = self.db.execute("SELECT id, created, labels FROM leases WHERE ns=? ORDER BY created",
                               (ns,))
        return [(lid, created, json.loads(labels)) for lid, created, labels in rows]

    def _require(self, db, ns: str, lid: str) -> None:
        if not db.execute("SELECT 1 FROM leases WHERE ns=? AND id=?", (ns, lid)).fetchone():
            raise NotFound(f"lease {lid}: not found")

    def add_resource(self, ns: str, lid: str, rid: str, rtype: str) -> None:
        check_resource_type(rtype)
        self.collect()
        with self.store.transaction() as db:
            self._require(db, ns, lid)
            db.execute("INSERT OR IGNORE INTO lease_resources VALUES (?, ?, ?, ?)",
                       (ns, lid, rid, rtype))

    def delete_resource(self, ns: str, lid: str, rid: str, rtype: str) -> None:
        self.collect()
        with self.store.transaction() as db:
            self._require(db, ns, lid)
            db.execute("DELETE FROM lease_resources WHERE ns=? AND lease=? AND rid=? AND rtype=?",
                       (ns, lid, rid, rtype))

    def resources(self, ns: str, lid: str) -> list[tuple[str, str]]:
        self.collect()
        self._require(self.db, ns, lid)
        rows = self.db.execute("SELECT rid, rtype FROM lease_resources WHERE ns=? AND lease=? "
                               "ORDER BY rtype, rid", (ns, lid))
        return list(rows)

    # -- garbage collection ---------------------------------------------------------------------
    def roots(self, ns: str) -> set[tuple[str, str]]:
        """(type, id) of every resource a live lease of the namespace holds."""
        self.collect()
        rows = self.db.execute("SELECT rtype, rid FROM lease_resources WHERE ns=?", (ns,))
        return set(rows)

    def collect(self, now: float | None = None) -> int:
        """Delete the leases whose expiry has passed, with their resources; how many."""
        now = time.time() if now is None else now
        if not self.db.execute("SELECT 1 FROM leases WHERE expires IS NOT NULL AND expires <= ? "
                               "LIMIT 1", (now,)).fetchone():
            return 0
        with self.store.transaction() as db:
            db.execute("DELETE FROM lease_resources WHERE (ns, lease) IN (SELECT ns, id FROM "
                       "leases WHERE expires IS NOT NULL AND expires <= ?)", (now,))
            return db.execute("DELETE FROM leases WHERE expires IS NOT NULL AND expires <= ?",
                              (now,)).rowcount

    def next_expiry(self) -> float | None:
        row = self.db.execute("SELECT MIN(expires) FROM leases WHERE expires IS NOT NULL")
        return row.fetchone()[0]
