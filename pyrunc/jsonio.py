"""JSON in and out without importing the ``json`` package.

Every ``pyrunc`` call reads config.json or state.json, and ``import json`` costs ~5 ms because it
pulls in ``re`` and ``enum`` for patterns only its pure-Python fallback needs.  The C accelerator
``_json`` holds the real scanner and encoder; this module drives it directly.  Behaviour matches
``json.loads`` / ``json.dumps`` for the documents the runtime handles (strict parsing, UTF-8,
NaN/Infinity rejected).  ``dumps(obj, indent=2)`` renders runc-style indented output with a tiny
recursive printer built on the same encoder.
"""

import _json

__all__ = ["loads", "dumps", "JSONError"]


class JSONError(ValueError):
    """The document is not valid JSON; ``str()`` says where."""


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _unique_pairs(pairs):
    """An object's members as a dict; a name given twice is an error, not "the last one wins"."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for name, _ in pairs:
            if name in seen:
                raise JSONError(f"duplicate object member name {name!r}")
            seen.add(name)
    return obj


class _Context:
    # The attributes _json.make_scanner reads from its context object.
    strict = True
    object_hook = None
    object_pairs_hook = staticmethod(_unique_pairs)
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_reject_constant)
    memo = None


class _TrustedContext(_Context):
    object_pairs_hook = None    # the C scanner builds the dicts itself: several times faster


_scan = _json.make_scanner(_Context())
_scan_trusted = _json.make_scanner(_TrustedContext())
_WS = " \t\n\r"


def _position(text: str, idx: int) -> str:
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return f"line {line} column {col}"


def loads(data, trusted: bool = False) -> object:
    """Parse a JSON document (``str`` or UTF-8 ``bytes``).

    ``trusted``: a document pyrunc wrote itself or ships (state.json, its schemas), where a
    duplicate member name cannot occur, is parsed without the per-object duplicate check.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as err:
        raise JSONError(f"not UTF-8 text (byte {err.start})") from None
    start = len(text) - len(text.lstrip(_WS))
    if start == len(text):
        raise JSONError("unexpected end of input (empty document)")
    try:
        value, end = (_scan_trusted if trusted else _scan)(text, start)
    except StopIteration as stop:
        raise JSONError(f"invalid value at {_position(text, stop.value)}") from None
    except JSONError:
        raise
    except (ValueError, SystemError):
        # The C scanner raises json.decoder.JSONDecodeError only if that module is already
        # imported (else a SystemError): on this error path, let the json package explain.
        import json
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            raise JSONError(f"{err.msg} at {_position(text, err.pos)}") from None
        raise JSONError("invalid JSON") from None
    rest = len(text) - len(text.rstrip(_WS))
    if end != len(text) - rest:
        raise JSONError(f"extra data at {_position(text, end)}")
    return value


def _no_default(obj):
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


_encode = _json.make_encoder(None, _no_default, _json.encode_basestring, None, ":", ",",
                             False, False, False)
_encode_spaced = _json.make_encoder(None, _no_default, _json.encode_basestring, None, ": ", ", ",
                                    False, False, False)


def dumps(obj, indent: int | None = None) -> str:
    """Serialise ``obj``: compact by default, or indented by ``indent`` spaces per level."""
    if indent is None:
        return "".join(_encode(obj, 0))
    return "".join(_pretty(obj, indent, 0))


def _pretty(obj, indent: int, level: int):
    if isinstance(obj, dict) and obj:
        pad = " " * (indent * (level + 1))
        yield "{\n"
        for i, (key, value) in enumerate(obj.items()):
            if i:
                yield ",\n"
            yield f"{pad}{_json.encode_basestring(str(key))}: "
            yield from _pretty(value, indent, level + 1)
        yield "\n" + " " * (indent * level) + "}"
    elif isinstance(obj, (list, tuple)) and obj:
        pad = " " * (indent * (level + 1))
        yield "[\n"
        for i, value in enumerate(obj):
            if i:
                yield ",\n"
            yield pad
            yield from _pretty(value, indent, level + 1)
        yield "\n" + " " * (indent * level) + "]"
    else:
        yield from _encode_spaced(obj, 0)
