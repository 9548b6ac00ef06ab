"""Garbage collection: mark and sweep over content, ingests and snapshots, per namespace.

Roots (containerd's):
- every image's target;
- every container's snapshot (snapshotter, key);
- every resource of a live lease (content, ingests, snapshots/<snapshotter>); expired leases are
  collected first;
- content and snapshots labelled ``containerd.io/gc.root``.

Edges: a snapshot references its parent; content and snapshots reference what their labels
``containerd.io/gc.ref.content[.*]`` (a digest) and ``containerd.io/gc.ref.snapshot.<snapshotter>
[/...]`` (a key) name — how an index reaches its manifests, a manifest its config and layers, a
config its unpacked snapshot chain.

Sweep: unmarked content rows and snapshot rows are deleted, then blobs no namespace holds any
more, ingests that no writer holds open and no lease keeps, and the directories of removed
snapshots (and any a crash left). Marking and the row and blob sweep happen inside one database
transaction (content commits and snapshot creation take the same lock), so nothing created
meanwhile can be half-seen; removing snapshot directories, the slow part, comes after.
"""
from __future__ import annotations

import asyncio
import json
import threading

ROOT_LABEL = "containerd.io/gc.root"
CONTENT_REF = "containerd.io/gc.ref.content"
SNAPSHOT_REF = "containerd.io/gc.ref.snapshot."


def label_refs(labels: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """(content digests, (snapshotter, key) pairs) the gc.ref labels name."""
    content, snaps = [], []
    for key, value in labels.items():
        if key == CONTENT_REF or key.startswith(CONTENT_REF + "."):
            content.append(value)
        elif key.startswith(SNAPSHOT_REF):
            snapshotter = key[len(SNAPSHOT_REF):].split("/", 1)[0]
            snaps.append((snapshotter, value))
    return content, snaps


class Collector:
    def __init__(self, store, leases, content, snapshotters: dict, images):
        self.store, self.db = store, store.db
        self.leases, self.content = leases, content
        self.snapshotters, self.images = snapshotters, images
        self.lock = threading.Lock()
        self._pending = None
        self.closed = False

    def close(self) -> None:
        """Wait for a round in progress (on whatever thread it runs) and refuse any later one:
        the daemon calls this before it closes the store, which a round still reading it from a
        worker thread would find closed under it (sqlite then crashed the process)."""
        with self.lock:
            self.closed = True

    # -- scheduling -------------------------------------------------------------------------------
    def schedule(self) -> None:
        """Collect soon, in the background (several requests close together run once)."""
        loop = asyncio.get_running_loop()
        if not self.closed and (self._pending is None or self._pending.done()):
            self._pending = loop.create_task(asyncio.to_thread(self.collect))

    # -- mark and sweep ---------------------------------------------------------------------------
    def collect(self) -> dict:
        """One full collection; counts of what was removed (none once closed)."""
        with self.lock:
            if self.closed:
                return {}
            self.leases.collect()
            with self.store.transaction():
                content, snaps = self._mark()
                removed = self._sweep_rows(content, snaps)
                removed["blobs"] = self._sweep_blobs()
                removed["ingests"] = self._sweep_ingests()
            for sn in self.snapshotters.values():
                removed["dirs"] = removed.get("dirs", 0) + len(sn.cleanup())
            return removed

    def _mark(self):
        content: set[tuple[str, str]] = set()          # (ns, digest)
        snaps: set[tuple[str, str, str]] = set()        # (ns, snapshotter, key)
        todo_c, todo_s = [], []
        for ns, digest in self.images.all_targets():
            todo_c.append((ns, digest))
        from supervisor.gen.containerd.services.containers.v1 import containers_pb2
        for ns, data in self.db.execute("SELECT ns, data FROM containers"):
            c = containers_pb2.Container.FromString(data)
            if c.snapshot_key:
                todo_s.append((ns, c.snapshotter or "overlayfs", c.snapshot_key))
            cs, ss = label_refs(dict(c.labels))
            todo_c += [(ns, d) for d in cs]
            todo_s += [(ns, sn, k) for sn, k in ss]
        for ns, rtype, rid in self.db.execute("SELECT ns, rtype, rid FROM lease_resources"):
            if rtype == "content":
                todo_c.append((ns, rid))
            elif rtype.startswith("snapshots/"):
                todo_s.append((ns, rtype[len("snapshots/"):], rid))
        for ns, digest, labels in self.db.execute("SELECT ns, digest, labels FROM content"):
            if ROOT_LABEL in json.loads(labels):
                todo_c.append((ns, digest))
        for ns, sn, key, labels in self.db.execute("SELECT ns, snapshotter, key, labels "
                                                   "FROM snapshots"):
            if ROOT_LABEL in json.loads(labels):
                todo_s.append((ns, sn, key))
        content_labels = {(ns, d): json.loads(lb) for ns, d, lb in self.db.execute(
            "SELECT ns, digest, labels FROM content")}
        snap_rows = {(ns, sn, key): (pid, json.loads(lb)) for ns, sn, key, pid, lb in
                     self.db.execute("SELECT ns, snapshotter, key, parent, labels FROM snapshots")}
        by_id = {sid: (ns, sn, key) for sid, ns, sn, key in self.db.execute(
            "SELECT id, ns, snapshotter, key FROM snapshots")}
        while todo_c or todo_s:
            while todo_c:
                item = todo_c.pop()
                if item in content or item not in content_labels:
                    continue
                content.add(item)
                cs, ss = label_refs(content_labels[item])
                todo_c += [(item[0], d) for d in cs]
                todo_s += [(item[0], sn, k) for sn, k in ss]
            while todo_s:
                item = todo_s.pop()
                if item in snaps or item not in snap_rows:
                    continue
                snaps.add(item)
                pid, labels = snap_rows[item]
                if pid is not None and pid in by_id:
                    todo_s.append(by_id[pid])
                cs, ss = label_refs(labels)
                todo_c += [(item[0], d) for d in cs]
                todo_s += [(item[0], sn, k) for sn, k in ss]
        return content, snaps

    def _sweep_rows(self, content, snaps) -> dict:
        gone_c = [(ns, d) for ns, d in self.db.execute("SELECT ns, digest FROM content")
                  if (ns, d) not in content]
        for ns, d in gone_c:
            self.db.execute("DELETE FROM content WHERE ns=? AND digest=?", (ns, d))
        gone_s = [sid for sid, ns, sn, key in self.db.execute(
            "SELECT id, ns, snapshotter, key FROM snapshots ORDER BY id DESC")
            if (ns, sn, key) not in snaps]
        for sid in gone_s:  # children (higher ids) before their parents
            self.db.execute("DELETE FROM snapshots WHERE id=?", (sid,))
        return {"content": len(gone_c), "snapshots": len(gone_s)}

    def _sweep_blobs(self) -> int:
        held = {d for (d,) in self.db.execute("SELECT DISTINCT digest FROM content")}
        gone = self.content.blob_digests() - held
        for d in gone:
            self.content.remove_blob(d)
        return len(gone)

    def _sweep_ingests(self) -> int:
        leased = set(self.db.execute("SELECT ns, rid FROM lease_resources WHERE rtype='ingests'"))
        n = 0
        for ns, ref, key in self.content.ingest_refs():
            if (ns, ref) not in leased and key not in self.content.locked:
                self.content.remove_ingest(key)
                n += 1
        return n
