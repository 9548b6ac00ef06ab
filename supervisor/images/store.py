"""Image records, as containerd's metadata keeps them: per namespace, a name, labels, and the
target descriptor (media type, digest, size, annotations) of the image's index or manifest.

An image is a garbage-collection root: its target, and everything the target's
``containerd.io/gc.ref.*`` labels reach, stays. Rows live in the daemon's sqlite database, written
through its one transaction helper.
"""
from __future__ import annotations

import json
import sqlite3
import time

from supervisor.content.store import check_digest
from supervisor.errors import AlreadyExists, InvalidArgument, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    ns TEXT NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}',
    target TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (ns, name));
"""


class Image:
    __slots__ = ("name", "labels", "target", "created", "updated")

    def __init__(self, name, labels, target, created, updated):
        self.name, self.labels, self.target = name, labels, target
        self.created, self.updated = created, updated


def check_target(name: str, target: dict) -> None:
    if not name:
        raise InvalidArgument("image name must not be empty")
    if not target.get("media_type"):
        raise InvalidArgument(f"image {name}: target media type must not be empty")
    check_digest(target.get("digest", ""))


class Images:
    def __init__(self, store):
        self.store, self.db = store, store.db
        with store.lock:
            self.db.executescript(SCHEMA)

    def _image(self, row) -> Image:
        name, labels, target, created, updated = row
        return Image(name, json.loads(labels), json.loads(target), created, updated)

    def get(self, ns: str, name: str) -> Image:
        row = self.db.execute("SELECT name, labels, target, created, updated FROM images "
                              "WHERE ns=? AND name=?", (ns, name)).fetchone()
        if row is None:
            raise NotFound(f"image \"{name}\": not found")
        return self._image(row)

    def list(self, ns: str) -> list[Image]:
        rows = self.db.execute("SELECT name, labels, target, created, updated FROM images "
                               "WHERE ns=? ORDER BY name", (ns,))
        return [self._image(r) for r in rows]

    def all_targets(self) -> list[tuple[str, str]]:
        """(namespace, target digest) of every image: garbage collection's image roots."""
        rows = self.db.execute("SELECT ns, target FROM images")
        return [(ns, json.loads(t)["digest"]) for ns, t in rows]

    def create(self, ns: str, name: str, labels: dict, target: dict) -> Image:
        check_target(name, target)
        now = time.time()
        try:
            with self.store.transaction() as db:
                db.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)",
                           (ns, name, json.dumps(labels), json.dumps(target), now, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"image \"{name}\": already exists") from None
        return self.get(ns, name)

    def update(self, ns: str, name: str, labels: dict, target: dict) -> Image:
        check_target(name, target)
        with self.store.transaction() as db:
            cur = db.execute("UPDATE images SET labels=?, target=?, updated=? WHERE ns=? AND "
                             "name=?", (json.dumps(labels), json.dumps(target), time.time(), ns,
                                        name))
            if cur.rowcount == 0:
                raise NotFound(f"image \"{name}\": not found")
        return self.get(ns, name)

    def delete(self, ns: str, name: str) -> None:
        with self.store.transaction() as db:
            if db.execute("DELETE FROM images WHERE ns=? AND name=?", (ns, name)).rowcount == 0:
                raise NotFound(f"image \"{name}\": not found")
