"""Docker's ``run``/``create`` flags as argparse types and as changes to an OCI spec.

Flag values are checked while parsing (an ``argparse.ArgumentTypeError`` becomes docker's
``invalid argument "X" for "--flag" flag: ...`` and exit 125), so a bad value never leaves a
half-made container behind. ``apply_docker_options`` then edits the spec that
``supervisor.spec`` built from the image or bundle: hostname, resources, root read-only,
capabilities, privileged, init, tmpfs mounts, entrypoint/command.
"""
from __future__ import annotations

import argparse
import os
import re

from supervisor.spec import CAPS, SpecError

INIT_BINARIES = ("/usr/bin/docker-init", "/usr/bin/tini-static", "/usr/bin/tini")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)$", re.I)
RESTART_NAMES = ("no", "always", "on-failure", "unless-stopped")
ALL_CAPS = tuple("CAP_" + c for c in (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
    "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
    "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
    "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE").split())


def size(text: str) -> int:
    """Docker's RAMInBytes: 512, 512k, 1.5g, 64MiB (1024 steps; a bare number is bytes)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size: '{text}'")
    mult = 1024 ** " kmgtp".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * mult)


def cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"failed to parse {text} as a rational number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"range of CPUs is from 0.01 to {os.cpu_count()}.00")
    return value


def go_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'strconv.ParseInt: parsing "{text}": invalid syntax') from None


def restart_policy(text: str) -> dict:
    name, _, count = text.partition(":")
    if name not in RESTART_NAMES:
        raise argparse.ArgumentTypeError(f"invalid restart policy {text}")
    if count and name != "on-failure":
        raise argparse.ArgumentTypeError(f"maximum retry count cannot be used with restart "
                                         f"policy '{name}'")
    try:
        retries = int(count or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid restart policy {text}") from None
    return {"Name": name, "MaximumRetryCount": retries}


def key_value(text: str) -> str:
    if not text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"invalid label '{text}': empty name")
    return text


def log_opt(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or key not in ("max-size", "max-file"):
        raise argparse.ArgumentTypeError(f"unknown log opt '{key}' for json-file log driver")
    if key == "max-size":
        size(value)
    elif not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("max-file must be a positive number")
    return key, value


def read_env_files(paths) -> list[str]:
    out = []
    for path in paths:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise SpecError(f"open {path}: {e.strerror.lower()}") from None
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:  # Docker takes the value from the client's environment
                if line in os.environ:
                    out.append(f"{line}={os.environ[line]}")
                continue
            out.append(line)
    return out


def mount_flag(text: str) -> dict:
    """--mount type=bind|tmpfs,source=...,target=...,readonly (parsed; checked when applied)."""
    opts = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        opts[key.strip()] = value if sep else "true"
    kind = opts.get("type", "volume")
    target = opts.get("target") or opts.get("destination") or opts.get("dst")
    if kind not in ("bind", "tmpfs"):
        raise argparse.ArgumentTypeError(f"mount type {kind!r} is not supported (bind, tmpfs)")
    if not target:
        raise argparse.ArgumentTypeError("target is required")
    src = opts.get("source") or opts.get("src") or ""
    if kind == "bind" and not src:
        raise argparse.ArgumentTypeError("source is required when specifying a bind mount")
    ro = opts.get("readonly", opts.get("ro", "false")) in ("true", "1")
    return {"type": kind, "source": src, "target": target, "readonly": ro,
            "tmpfs-size": opts.get("tmpfs-size", "")}


def command_line(a, image_args: list[str]) -> tuple[list[str], list[str]]:
    """(full argv, shown command) from --entrypoint and the command after the image."""
    if a.entrypoint:
        return [a.entrypoint] + list(a.command), [a.entrypoint] + list(a.command)
    args = list(a.command) or list(image_args)
    return args, args


def _bind(spec: dict, source: str, target: str, ro: bool) -> None:
    if not os.path.isabs(target):
        raise SpecError(f"invalid mount config: mount path must be absolute: {target}")
    if not os.path.exists(source):
        raise SpecError(f"invalid mount config for type \"bind\": bind source path does not "
                        f"exist: {source}")
    spec["mounts"].append({"destination": target, "type": "bind",
                           "source": os.path.abspath(source),
                           "options": ["rbind", "ro" if ro else "rw"]})


def _tmpfs(spec: dict, target: str, size_opt: str = "", ro: bool = False) -> None:
    if not os.path.isabs(target):
        raise SpecError(f"invalid mount config: mount path must be absolute: {target}")
    opts = ["nosuid", "nodev", "exec", "mode=1777"]
    if size_opt:
        opts.append(f"size={size(size_opt)}")
    if ro:
        opts.append("ro")
    spec["mounts"].append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                           "options": opts})


def apply_docker_options(spec: dict, a, short_id: str) -> dict:
    """Edit ``spec`` for the docker-only flags; returns the extra config kept in a label."""
    cfg = {}
    spec["hostname"] = a.hostname or short_id
    linux = spec.setdefault("linux", {})
    res = linux.setdefault("resources", {})
    if a.memory:
        res["memory"] = {"limit": a.memory}
    if a.cpus:
        res["cpu"] = {"quota": int(a.cpus * 100000), "period": 100000}
        cfg["nano_cpus"] = int(a.cpus * 1e9)
    if a.pids_limit is not None and a.pids_limit > 0:
        res["pids"] = {"limit": a.pids_limit}
    if a.read_only:
        spec.setdefault("root", {})["readonly"] = True
    proc = spec["process"]
    caps = proc.setdefault("capabilities", {})
    cur = list(caps.get("bounding") or CAPS)
    if a.privileged:
        cur = list(ALL_CAPS)
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
        res["devices"] = [{"allow": True, "access": "rwm"}]
        linux["devices"] = host_devices()
        linux.pop("seccomp", None)
        proc.pop("apparmorProfile", None)
        proc["noNewPrivileges"] = False
        for m in spec.get("mounts", []):
            if m.get("type") in ("sysfs", "cgroup"):
                m["options"] = [o for o in m.get("options", []) if o != "ro"]
    for cap in a.cap_drop:
        c = _cap_name(cap)
        cur = [] if c == "CAP_ALL" else [x for x in cur if x != c]
    for cap in a.cap_add:
        c = _cap_name(cap)
        if c not in cur and c != "CAP_ALL":
            cur.append(c)
    for k in ("bounding", "effective", "permitted"):
        caps[k] = list(cur)
    for m in a.mount:
        if m["type"] == "bind":
            _bind(spec, m["source"], m["target"], m["readonly"])
        else:
            _tmpfs(spec, m["target"], m["tmpfs-size"], m["readonly"])
    for t in a.tmpfs:
        _tmpfs(spec, t.split(":", 1)[0])
    if a.init:
        init = next((p for p in INIT_BINARIES if os.access(p, os.X_OK)), None)
        if init is None:
            raise SpecError("--init: no docker-init or tini binary on this host")
        spec["mounts"].append({"destination": "/sbin/docker-init", "type": "bind",
                               "source": init, "options": ["rbind", "ro"]})
        proc["args"] = ["/sbin/docker-init", "--"] + proc["args"]
        cfg["init"] = True
    cfg.update(restart=a.restart, rm=a.rm, privileged=a.privileged, cap_add=a.cap_add,
               cap_drop=a.cap_drop, detach=a.detach, interactive=a.interactive,
               tmpfs=[m["target"] for m in a.mount if m["type"] == "tmpfs"]
               + [t.split(":", 1)[0] for t in a.tmpfs],
               entrypoint=[a.entrypoint] if a.entrypoint else None,
               log_opts=dict(a.log_opt))
    return cfg


_SKIP_DIRS = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")


def host_devices(root: str = "/dev") -> list[dict]:
    """Every character and block device node under the host's /dev, as OCI ``linux.devices``
    (what ``--privileged`` gives a container, as Docker does): not the pts/shm/mqueue
    directories, not /dev/console (the container gets its own) nor /dev/ptmx (a link to its own
    devpts), not symlinks."""
    import stat
    out = []
    for dirpath, dirs, files in os.walk(root):
        if dirpath == root:
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            if path in ("/dev/console", "/dev/ptmx"):
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                            "gid": st.st_gid})
    return out


def _cap_name(cap: str) -> str:
    c = cap.upper()
    c = c if c.startswith("CAP_") else "CAP_" + c
    if c not in ALL_CAPS and c != "CAP_ALL":
        raise SpecError(f"unknown capability: \"{c}\"")
    return c
