"""``docker ps -f KEY=VALUE``: the filters a Docker user reaches for, on ctlmeta Records.

Several values of one key match if any matches; different keys must all match (Docker's rule).
Keys: id (prefix), name (regular expression search, as Docker), label (KEY or KEY=VALUE),
status (created|running|paused|exited), exited (exit code), ancestor (the image as given).
A ``status`` filter shows stopped containers without ``-a``, as in Docker.
"""
from __future__ import annotations

import re

from supervisor.ctlmeta import Record, user_labels

KEYS = ("id", "name", "label", "status", "exited", "ancestor")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


class FilterError(Exception):
    pass


class PsFilter:
    def __init__(self, specs: list[str]):
        self.by_key: dict[str, list[str]] = {}
        for spec in specs:
            key, sep, value = spec.partition("=")
            if not sep:
                raise FilterError(f"Error response from daemon: bad format of filter "
                                  f"(expected name=value)")
            if key not in KEYS:
                raise FilterError(f"Error response from daemon: Invalid filter '{key}'")
            if key == "status" and value not in STATUSES:
                raise FilterError(f"Error response from daemon: Invalid filter 'status={value}'")
            if key == "exited" and not value.lstrip("-").isdigit():
                raise FilterError(f"Error response from daemon: invalid filter 'exited={value}'")
            self.by_key.setdefault(key, []).append(value)

    def match(self, rec: Record, show_all: bool) -> bool:
        if not (show_all or "status" in self.by_key or "exited" in self.by_key) \
                and not rec.running:
            return False
        return all(any(self._one(key, v, rec) for v in values)
                   for key, values in self.by_key.items())

    @staticmethod
    def _one(key: str, value: str, rec: Record) -> bool:
        if key == "id":
            return rec.id.startswith(value)
        if key == "name":
            try:
                return re.search(value, rec.name) is not None
            except re.error:
                return value in rec.name
        if key == "label":
            k, sep, v = value.partition("=")
            labels = user_labels(rec.labels)
            return k in labels and (not sep or labels[k] == v)
        if key == "status":
            return rec.status == value
        if key == "exited":
            return rec.status == "exited" and rec.exit_code == int(value)
        return rec.image == value
