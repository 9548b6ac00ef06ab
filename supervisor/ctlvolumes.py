"""Named volumes: ``volume create|ls|inspect|rm`` and ``run -v NAME:/path``.

A volume is a directory ``<supervisor root>/ctl/volumes/<name>/_data`` (Docker's layout),
found through the supervisor's API (ctl.files_root), bind-mounted into the containers that name
it. Containers record the volumes they use in the ``io.pyrunc.ctl/volumes`` label, so ``rm``
refuses a volume in use, as Docker does.
"""
from __future__ import annotations

import json
import os
import re
import sys

from supervisor.ctlbase import CtlError

LABEL = "io.pyrunc.ctl/volumes"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def is_named(source: str) -> bool:
    return not source.startswith(("/", ".", "~")) and bool(source)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise CtlError(f'Error response from daemon: create {name}: "{name}" includes invalid '
                       "characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" "
                       "are allowed. If you intended to pass a host directory, use absolute "
                       "path")
    return name


def volume_dir(ctl, name: str) -> str:
    return ctl.files_root("volumes", check_name(name))


def ensure(ctl, name: str) -> str:
    """The volume's data directory, created on first use (as ``run -v NAME:...`` does)."""
    data = os.path.join(volume_dir(ctl, name), "_data")
    os.makedirs(data, mode=0o755, exist_ok=True)
    return data


def resolve_volume_flags(ctl, volumes: list[str]) -> tuple[list[str], list[str]]:
    """-v values with named volumes replaced by their directories; and the names used."""
    out, names = [], []
    for v in volumes:
        source, sep, rest = v.partition(":")
        if sep and is_named(source):
            out.append(f"{ensure(ctl, source)}:{rest}")
            names.append(source)
        else:
            out.append(v)
    return out, names


def _info(ctl, name: str) -> dict:
    path = volume_dir(ctl, name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CtlError(f"Error: No such volume: {name}") from None
    import time
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))
    return {"CreatedAt": created, "Driver": "local", "Labels": {}, "Mountpoint":
            os.path.join(path, "_data"), "Name": name, "Options": {}, "Scope": "local"}


def _users(ctl, name: str) -> list[str]:
    return [c.id for c in ctl._list() if name in (c.labels.get(LABEL) or "").split(",")]


def volume(ctl, a) -> int:
    if a.action == "create":
        name = a.names[0] if a.names else os.urandom(32).hex()
        ensure(ctl, name)
        print(name)
        return 0
    if a.action == "ls":
        root = ctl.files_root("volumes")
        names = sorted(os.listdir(root)) if os.path.isdir(root) else []
        if a.quiet:
            sys.stdout.write("".join(n + "\n" for n in names))
            return 0
        from supervisor.ctlview import tabwrite
        sys.stdout.write(tabwrite(["DRIVER\tVOLUME NAME"] + [f"local\t{n}" for n in names],
                                  minwidth=10, padding=3))
        return 0
    if not a.names:
        raise CtlError(f'"pyrunc-ctl volume {a.action}" requires at least 1 argument.')
    if a.action == "inspect":
        found, failed = [], 0
        for name in a.names:
            try:
                found.append(_info(ctl, name))
            except CtlError as e:
                print(e, file=sys.stderr)
                failed = 1
        print(json.dumps(found, indent=4))
        return failed
    failed = 0
    for name in a.names:  # rm
        try:
            _info(ctl, name)
            users = _users(ctl, name)
            if users and not a.force:
                raise CtlError(f"Error response from daemon: remove {name}: volume is in use "
                               f"- [{', '.join(users)}]")
            import shutil
            shutil.rmtree(volume_dir(ctl, name))
            print(name)
        except CtlError as e:
            print(e, file=sys.stderr)
            failed = 1
    return failed


def setup(p) -> None:
    p.add_argument("action", choices=("create", "ls", "inspect", "rm"))
    p.add_argument("-q", "--quiet", action="store_true", help="ls: only names")
    p.add_argument("-f", "--force", action="store_true", help="rm: even if in use")
    p.add_argument("names", nargs="*")
