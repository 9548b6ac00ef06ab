"""Bundles: a busybox root filesystem and a baseline config.json.

The root filesystem is built by the suite from the host's static busybox: the
binary goes to /bin/busybox (hard-linked from one session copy when possible,
so a bundle costs a few milliseconds) and every applet of `busybox --list`
becomes a symlink next to it.  Directories that mounts need are created up
front, so a runtime never has to create them (a user-namespaced container could
not: the files belong to the host's root).

The baseline config is deliberately plain: a non-terminal `sh` as root with a
small capability set, the usual /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue
and /sys mounts, and new pid, network, ipc, uts and mount namespaces.  Checks
copy it and change the one field they are about.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

OCI_VERSION = "1.0.2"

BASE_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE",
]

BASE_NAMESPACES = ["pid", "network", "ipc", "uts", "mount"]

ROOTFS_DIRS = ["bin", "dev", "etc", "proc", "sys", "tmp", "root", "home/user", "mnt",
               "opt", "var", "hooks", "data"]

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "user:x:1000:1000:user:/home/user:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/:/bin/false\n")
GROUP = "root:x:0:\nuser:x:1000:\nextra:x:1001:\nnogroup:x:65534:\n"


def rootless_ids() -> dict | None:
    """``$OCISUITE_ROOTLESS`` (set by conformance/run_rootless.py, which runs the suite as an
    unprivileged user): ``UID:GID:SUBUID:SUBGID:COUNT``, else None."""
    value = os.environ.get("OCISUITE_ROOTLESS", "")
    if not value:
        return None
    uid, gid, subuid, subgid, count = (int(x) for x in value.split(":"))
    return {"uid": uid, "gid": gid, "subuid": subuid, "subgid": subgid, "count": count}


def make_rootless(config: dict, ids: dict) -> dict:
    """The baseline as rootless engines send it (podman's shape): a user namespace mapping the
    user to root and its subordinate range after it, no network namespace of its own (so the
    host's /sys is bound instead of mounting sysfs)."""
    linux = config["linux"]
    linux["namespaces"] = [{"type": t} for t in BASE_NAMESPACES if t != "network"] + [
        {"type": "user"}]
    for key, own, sub in (("uidMappings", "uid", "subuid"), ("gidMappings", "gid", "subgid")):
        linux[key] = [{"containerID": 0, "hostID": ids[own], "size": 1},
                      {"containerID": 1, "hostID": ids[sub], "size": ids["count"]}]
    config["mounts"] = [m for m in config["mounts"] if m["type"] != "sysfs"] + [
        {"destination": "/sys", "type": "none", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]
    return config


def baseline_config(args: list[str] | None = None) -> dict:
    """A fresh copy of the suite's baseline config.json (rootless: see make_rootless)."""
    config = _baseline(args)
    ids = rootless_ids()
    return make_rootless(config, ids) if ids else config


def _baseline(args: list[str] | None) -> dict:
    caps = list(BASE_CAPS)
    return copy.deepcopy({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["sh", "-c", "true"],
            "env": ["PATH=/bin", "HOME=/root", "TERM=dumb"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "ocisuite",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in BASE_NAMESPACES],
        },
    })


class RootfsBuilder:
    """Makes busybox root filesystems quickly, from one copy of the binary."""

    def __init__(self, workdir: Path, busybox: str = "/bin/busybox"):
        if not os.path.exists(busybox):
            raise FileNotFoundError(f"{busybox} not found (install busybox-static)")
        self.busybox = workdir / "busybox"
        shutil.copy2(busybox, self.busybox)
        listing = subprocess.run([str(self.busybox), "--list"], capture_output=True,
                                 text=True, check=True, timeout=10).stdout
        self.applets = sorted(set(listing.split()) - {"busybox"})

    def build(self, dest: Path) -> None:
        for d in ROOTFS_DIRS:
            (dest / d).mkdir(parents=True, exist_ok=True)
        os.chmod(dest / "tmp", 0o1777)
        target = dest / "bin" / "busybox"
        try:
            os.link(self.busybox, target)
        except OSError:
            shutil.copy2(self.busybox, target)
        for name in self.applets:
            os.symlink("busybox", dest / "bin" / name)
        (dest / "etc" / "passwd").write_text(PASSWD)
        (dest / "etc" / "group").write_text(GROUP)
        (dest / "etc" / "hostname").write_text("ocisuite\n")
        if os.geteuid() == 0:   # (rootless: the user cannot give files away)
            os.chown(dest / "home" / "user", 1000, 1000)


class Bundle:
    """A bundle directory: config.json (kept as a dict until written) and rootfs/."""

    def __init__(self, path: Path, config: dict):
        self.path = path
        self.config = config

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def process(self) -> dict:
        return self.config["process"]

    @property
    def linux(self) -> dict:
        return self.config.setdefault("linux", {})

    def set_args(self, *args: str) -> None:
        self.config["process"]["args"] = list(args)

    def set_script(self, script: str) -> None:
        self.set_args("sh", "-c", script)

    def namespaces(self) -> list[str]:
        return [n["type"] for n in self.linux.get("namespaces", [])]

    def set_namespaces(self, types: list[str]) -> None:
        """Replace the namespace list; without a uts namespace the hostname goes too
        (setting it would rename the host)."""
        if rootless_ids() and "user" not in types:
            types = [*types, "user"]    # (rootless: the baseline's maps need it)
        self.linux["namespaces"] = [{"type": t} for t in types]
        if "uts" not in types:
            self.config.pop("hostname", None)
            self.config.pop("domainname", None)

    def add_mount(self, destination: str, type_: str | None, source: str | None,
                  options: list[str] | None = None, **extra) -> dict:
        mount = {"destination": destination}
        if type_ is not None:
            mount["type"] = type_
        if source is not None:
            mount["source"] = source
        if options is not None:
            mount["options"] = options
        mount.update(extra)
        self.config.setdefault("mounts", []).append(mount)
        return mount

    def write(self) -> Path:
        path = self.path / "config.json"
        path.write_text(json.dumps(self.config, indent=2))
        return path

    def write_raw(self, text: str) -> Path:
        path = self.path / "config.json"
        path.write_text(text)
        return path
