"""Bundles: a task's directory ``<state>/tasks/<namespace>/<id>/`` (the OCI bundle).

- ``config.json``   the container's spec as the runtime gets it;
- ``task.json``     what the daemon needs to find the task again: the shim's socket and pid, the
                    runtime binary and root, stdio, rootfs mounts;
- ``exits/*.json``  exit records the shim writes (durably) before reporting an exit;
- ``rootfs/``       mount point when the request carried rootfs mounts (see supervisor/mounts.py).

A bundle knows files, not processes: the task manager and, later, a pod sandbox use it the same way.
"""
from __future__ import annotations

import json
import os
import shutil

from supervisor import mounts
from supervisor.errors import InvalidArgument


class Bundle:
    def __init__(self, root: str, ns: str, cid: str):
        self.path = os.path.join(root, ns, cid)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def rootfs(self) -> str:
        return self.file("rootfs")

    def create(self, spec: dict, with_rootfs: bool) -> None:
        """A fresh bundle with ``config.json``; ``rootfs/`` when mounts will be made there."""
        shutil.rmtree(self.path, ignore_errors=True)  # leftover of an interrupted attempt
        os.makedirs(self.path, mode=0o700)
        if with_rootfs:
            os.mkdir(self.rootfs, 0o755)
        spec = prepare_spec(self.path, spec, with_rootfs)
        with open(self.file("config.json"), "w") as f:
            json.dump(spec, f)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def write(self, name: str, obj: dict) -> str:
        path = self.file(name)
        write_json(path, obj)
        return path

    def unlink(self, name: str) -> None:
        unlink(self.file(name))

    def read_info(self) -> dict:
        with open(self.file("task.json")) as f:
            return json.load(f)

    def read_init_pid(self) -> int:
        try:
            with open(self.file("init.pid")) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def read_exit(self, exec_id: str) -> dict | None:
        name = "init" if exec_id == "" else "exec-" + exec_id
        try:
            with open(os.path.join(self.path, "exits", name + ".json")) as f:
                rec = json.load(f)
            return {"exit_status": int(rec["exit_status"]), "exited_at": float(rec["exited_at"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_init_exit(self, pid: int, status: int, at: float) -> None:
        """The exit a dead shim could not record: the daemon writes it in the shim's stead."""
        os.makedirs(self.file("exits"), mode=0o700, exist_ok=True)
        write_json(os.path.join(self.path, "exits", "init.json"),
                   {"pid": pid, "exit_status": status, "exited_at": at, "shim_died": True})

    def unmount_rootfs(self, count: int) -> None:
        mounts.unmount_all(self.rootfs, count)


def prepare_spec(path: str, spec: dict, with_rootfs: bool) -> dict:
    """The spec as the runtime gets it: ``root.path`` is ``rootfs`` when mounts are made there."""
    if not isinstance(spec.get("process"), dict):
        raise InvalidArgument("spec: process is missing")
    root = spec.get("root")
    if with_rootfs:
        return dict(spec, root=dict(root or {}, path="rootfs"))
    if not isinstance(root, dict) or not root.get("path"):
        raise InvalidArgument("spec: root.path is missing and the request has no rootfs mounts")
    if not os.path.isdir(os.path.join(path, root["path"])):
        raise InvalidArgument(f"rootfs {root['path']!r}: no such directory")
    return spec


def write_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def unlink(path: str) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
