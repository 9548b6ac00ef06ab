"""The overlayfs layout: a snapshot is an upper directory (``fs``) and a work directory on the
chain of its committed parents' ``fs`` directories as lower layers.

Mounts, as containerd's overlayfs snapshotter gives them:
- an active snapshot without parent: a read-write bind mount of its ``fs``;
- an active snapshot with parents: ``overlay`` with ``lowerdir`` = the parents' ``fs`` (nearest
  first), ``upperdir`` = its ``fs``, ``workdir`` = its ``work``;
- a view on one parent: a read-only bind mount of that parent's ``fs``; on more: a read-only
  ``overlay`` of the lower directories alone.
Overlay's one-page limit on the option string is handled where the mount is made
(supervisor/mounts.py rewrites the lower directories relative to their common parent).
"""
from __future__ import annotations

import os

from supervisor.snapshots.store import VIEW


class Layout:
    name = "overlayfs"

    def make(self, snaps, sid: int, parents: list[int]) -> None:
        os.makedirs(os.path.join(snaps.dir(sid), "fs"), mode=0o755)
        os.mkdir(os.path.join(snaps.dir(sid), "work"), 0o711)
        os.chmod(os.path.join(snaps.dir(sid), "fs"), 0o755)

    def mounts(self, snaps, sid: int, kind: int, parents: list[int]) -> list[dict]:
        if not parents:
            ro = ["ro"] if kind == VIEW else ["rw"]
            return [{"type": "bind", "source": snaps.fs(sid), "options": ro + ["rbind"]}]
        if kind == VIEW and len(parents) == 1:
            return [{"type": "bind", "source": snaps.fs(parents[0]), "options": ["ro", "rbind"]}]
        lower = "lowerdir=" + ":".join(snaps.fs(p) for p in parents)
        if kind == VIEW:
            return [{"type": "overlay", "source": "overlay", "options": [lower]}]
        return [{"type": "overlay", "source": "overlay",
                 "options": ["index=off", f"workdir={snaps.dir(sid)}/work",
                             f"upperdir={snaps.fs(sid)}", lower]}]
