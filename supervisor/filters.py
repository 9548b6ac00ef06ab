"""containerd's filter syntax, for List/Subscribe/Metrics requests.

A request carries a list of filter strings; an object matches if it matches ANY of them. One filter
is a comma-separated list of selectors that must ALL match. A selector is a field path, optionally
followed by an operator and a value::

    topic=="/tasks/exit",namespace==default
    labels."com.example/role"!=db
    id~=^web-
    labels.env            (the field is present and non-empty)

Field path components are identifiers or double-quoted strings, joined by dots; values are
double-quoted strings or bare words up to the next comma. ``~=`` is a regular expression search.
What a field path means is up to the caller, through an ``adapt(path) -> (value, present)``
function.
"""
from __future__ import annotations

import re

from supervisor.errors import InvalidArgument

_IDENT = re.compile(r"[A-Za-z0-9_\-]+")
_OPS = ("==", "!=", "~=")


class Selector:
    def __init__(self, path: tuple[str, ...], op: str = "", value: str = ""):
        self.path, self.op, self.value = path, op, value
        self.regex = None
        if op == "~=":
            try:
                self.regex = re.compile(value)
            except re.error as e:
                raise InvalidArgument(f"filter: bad regular expression {value!r}: {e}") from None

    def match(self, adapt) -> bool:
        value, present = adapt(self.path)
        if not self.op:
            return present and value != ""
        value = "" if value is None else str(value)
        if self.op == "==":
            return present and value == self.value
        if self.op == "!=":
            return not present or value != self.value
        return present and bool(self.regex.search(value))


class _Parser:
    def __init__(self, text: str):
        self.s, self.i = text, 0

    def fail(self, why: str):
        raise InvalidArgument(f"filter {self.s!r}: {why} at position {self.i}")

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def quoted(self) -> str:
        quote = self.s[self.i]
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < len(self.s):
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if c == quote:
                self.i += 1
                return "".join(out)
            out.append(c)
            self.i += 1
        self.fail("unterminated quoted string")

    def field(self) -> str:
        self.skip_ws()
        if self.i < len(self.s) and self.s[self.i] in "\"'":
            return self.quoted()
        m = _IDENT.match(self.s, self.i)
        if not m:
            self.fail("expected a field name")
        self.i = m.end()
        return m.group()

    def value(self) -> str:
        self.skip_ws()
        if self.i < len(self.s) and self.s[self.i] in "\"'":
            return self.quoted()
        return self.bare()

    def bare(self) -> str:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] != ",":
            self.i += 1
        value = self.s[start:self.i].strip()
        if not value:
            self.fail("expected a value")
        return value

    def selector(self) -> Selector:
        path = [self.field()]
        while self.i < len(self.s) and self.s[self.i] == ".":
            self.i += 1
            path.append(self.field())
        self.skip_ws()
        for op in _OPS:
            if self.s.startswith(op, self.i):
                self.i += len(op)
                return Selector(tuple(path), op, self.value())
        return Selector(tuple(path))

    def parse(self) -> list[Selector]:
        sels = [self.selector()]
        self.skip_ws()
        while self.i < len(self.s):
            if self.s[self.i] != ",":
                self.fail("expected ','")
            self.i += 1
            sels.append(self.selector())
            self.skip_ws()
        return sels


class Filter:
    """Any-of a list of all-of selector lists; the empty filter matches everything."""

    def __init__(self, texts):
        self.alternatives = [_Parser(t).parse() for t in texts if t.strip()]

    def match(self, adapt) -> bool:
        if not self.alternatives:
            return True
        return any(all(sel.match(adapt) for sel in alt) for alt in self.alternatives)


def parse(texts) -> Filter:
    if isinstance(texts, str):
        texts = [texts]
    return Filter(list(texts))


def mapping_adaptor(fields: dict, labels: dict | None = None):
    """An adaptor over flat fields plus a ``labels`` map (labels.<key>)."""
    def adapt(path):
        if path[0] == "labels" and labels is not None:
            if len(path) == 1:
                return "", bool(labels)
            key = ".".join(path[1:])
            return labels.get(key), key in labels
        if len(path) == 1 and path[0] in fields:
            value = fields[path[0]]
            return value, value is not None
        dotted = ".".join(path)
        if dotted in fields:
            return fields[dotted], fields[dotted] is not None
        return None, False
    return adapt
