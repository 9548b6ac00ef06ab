"""Checks of client input shared by the services and the core: identifiers, JSON objects carried
in ``Any`` messages, and stdio destinations. Each raises one ``InvalidArgument`` naming what is
wrong and why, before anything is created."""
from __future__ import annotations

import json
import os
import re
import stat

from supervisor.errors import InvalidArgument

ID_RE = re.compile(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")
ID_MAX = 76


def validate_id(value: str, what: str) -> None:
    """containerd's identifier rule (namespaces, containers, exec ids)."""
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > ID_MAX:
        raise InvalidArgument(f"{what} {value!r}: longer than {ID_MAX} characters")
    if not ID_RE.match(value):
        raise InvalidArgument(f"{what} {value!r} must match {ID_RE.pattern}")


def decode_json_any(value: bytes, what: str) -> dict:
    try:
        obj = json.loads(value or b"null")
    except ValueError as e:
        raise InvalidArgument(f"{what}: invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: must be a JSON object")
    return obj


def check_dest(path: str, what: str) -> None:
    """Validate a stdio destination (a FIFO, or ``file://`` log path) before anything is created."""
    if not path:
        return
    if path.startswith("file://"):
        target = path[len("file://"):]
        if not target.startswith("/"):
            raise InvalidArgument(f"{what} {path!r}: log path must be absolute")
        if not os.path.isdir(os.path.dirname(target)):
            raise InvalidArgument(f"{what} {path!r}: directory does not exist")
        return
    if "://" in path:
        raise InvalidArgument(f"{what} {path!r}: unsupported URI scheme")
    if not path.startswith("/"):
        raise InvalidArgument(f"{what} {path!r}: path must be absolute")
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument(f"{what} {path!r}: {e.strerror}") from None
    if not stat.S_ISFIFO(st.st_mode):
        raise InvalidArgument(f"{what} {path!r}: not a FIFO")


# A container's json-file log (supervisor/shim/jsonlog.py): its output goes there, whoever reads
# it; the value is json-file:///abs/path[?max-size=BYTES&max-file=N].
LOG_LABEL = "io.pyrunc/log"


def check_log(uri: str) -> None:
    """Validate a container's log label before anything is created."""
    if not uri:
        return
    from supervisor.shim.jsonlog import LogError, parse
    try:
        path = parse(uri)[0]
    except LogError as e:
        raise InvalidArgument(f"label {LOG_LABEL}: {e}") from None
    if not os.path.isdir(os.path.dirname(path)):
        raise InvalidArgument(f"label {LOG_LABEL}: {path}: directory does not exist")


def check_stdio(stdin: str, stdout: str, stderr: str) -> None:
    for what, value in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
        check_dest(value, what)
