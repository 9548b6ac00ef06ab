"""OCI runtime specs for pyrunc-ctl: a default spec for a bare rootfs, and the ``run`` options
(-e, -u, -w, -v, -t, command) applied to it or to a bundle's own config.json.

The default is a conventional, unprivileged-by-default container: new pid/ipc/uts/mount/network
namespaces, docker's default capability set, /proc, /dev, /sys (read-only) mounted, the usual
masked and read-only paths, and no device access beyond the defaults runtimes always create.
"""
from __future__ import annotations

import json
import os

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
          "/sys/firmware"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


class SpecError(Exception):
    pass


def default_spec(rootfs: str, args: list[str], hostname: str) -> dict:
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": args or ["/bin/sh"],
            "env": [DEFAULT_PATH], "cwd": "/",
            "capabilities": {k: list(CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": os.path.abspath(rootfs), "readonly": False},
        "hostname": hostname,
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
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READONLY),
        },
    }


def load_bundle(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        raise SpecError(f"{path}: {e}") from None
    root = spec.get("root") or {}
    if not root.get("path"):
        raise SpecError(f"{path}: root.path is missing")
    root["path"] = os.path.join(os.path.abspath(bundle), root["path"])
    spec["root"] = root
    return spec


def parse_user(user: str) -> dict:
    uid, _, gid = user.partition(":")
    try:
        return {"uid": int(uid), "gid": int(gid or uid)}
    except ValueError:
        raise SpecError(f"user {user!r}: expected UID[:GID] (numbers)") from None


def parse_volume(volume: str) -> dict:
    parts = volume.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise SpecError(f"volume {volume!r}: expected HOST:CONTAINER[:ro]")
    host, dest = parts[0], parts[1]
    if not os.path.isabs(dest):
        raise SpecError(f"volume {volume!r}: container path must be absolute")
    if not os.path.exists(host):
        raise SpecError(f"volume {volume!r}: {host} does not exist")
    opts = ["rbind", "ro" if len(parts) == 3 and parts[2] == "ro" else "rw"]
    return {"destination": dest, "type": "bind", "source": os.path.abspath(host),
            "options": opts}


def apply_options(spec: dict, *, args=None, env=(), user="", cwd="", volumes=(),
                  terminal=False, cgroups_path="") -> dict:
    proc = spec.setdefault("process", {})
    if args:
        proc["args"] = list(args)
    if not proc.get("args"):
        raise SpecError("no command given and the bundle has none")
    proc["terminal"] = bool(terminal)
    envs = list(proc.get("env") or [])
    for item in env:
        if "=" not in item:
            raise SpecError(f"env {item!r}: expected KEY=VALUE")
        key = item.split("=", 1)[0]
        envs = [e for e in envs if e.split("=", 1)[0] != key] + [item]
    if terminal and not any(e.startswith("TERM=") for e in envs):
        envs.append("TERM=xterm")
    proc["env"] = envs
    if user:
        proc["user"] = parse_user(user)
    if cwd:
        if not os.path.isabs(cwd):
            raise SpecError(f"workdir {cwd!r}: must be absolute")
        proc["cwd"] = cwd
    spec.setdefault("mounts", []).extend(parse_volume(v) for v in volumes)
    if cgroups_path:
        spec.setdefault("linux", {}).setdefault("cgroupsPath", cgroups_path)
    return spec


def exec_process(container_spec: dict, args, env=(), user="", cwd="", terminal=False) -> dict:
    """A process spec for exec: the container's own process with these changes."""
    proc = json.loads(json.dumps(container_spec.get("process") or {}))
    tmp = {"process": proc}
    apply_options(tmp, args=args, env=env, user=user, cwd=cwd, terminal=terminal)
    return tmp["process"]
