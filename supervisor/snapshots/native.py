"""The native layout, for hosts without overlayfs: a snapshot is a full copy of its parent's
files (``cp -a``: owners, modes, times, xattrs, devices and hard links kept), and every mount is
a bind mount of its ``fs`` (read-only for a view)."""
from __future__ import annotations

import os
import subprocess

from supervisor.snapshots.store import VIEW


class Layout:
    name = "native"

    def make(self, snaps, sid: int, parents: list[int]) -> None:
        fs = os.path.join(snaps.dir(sid), "fs")
        os.makedirs(snaps.dir(sid), mode=0o700)
        if not parents:
            os.mkdir(fs, 0o755)
            return
        res = subprocess.run(["cp", "-a", "--reflink=auto", snaps.fs(parents[0]), fs],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise OSError(f"copy of snapshot {parents[0]}: {res.stderr.strip()}")

    def mounts(self, snaps, sid: int, kind: int, parents: list[int]) -> list[dict]:
        ro = ["ro"] if kind == VIEW else ["rw"]
        return [{"type": "bind", "source": snaps.fs(sid), "options": ro + ["rbind"]}]
