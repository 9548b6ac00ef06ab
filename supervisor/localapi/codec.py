"""Protobuf messages to and from the local API's JSON (the supervisor's side).

Driven by each message's descriptor, with protobuf's own field names and no special cases for
well-known types: a Timestamp is ``{"seconds", "nanos"}`` and an Any ``{"type_url", "value"}``,
exactly the attributes a client reads on the message. ``to_json`` writes every field, defaults
included, so the client (which has no schema) finds each field a protobuf message would have;
bytes and maps carry a tag (supervisor.localapi: ``$b``, ``$m``).
"""
from __future__ import annotations

import base64

from google.protobuf.descriptor import FieldDescriptor

from supervisor.localapi import BYTES, MAP

_MAX_DEPTH = 16   # no message the local API serves nests deeper; a guard against recursive types


def _is_map(field) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_repeated(field) -> bool:
    return field.is_repeated


def _value_out(field, value, depth: int):
    if field.type == FieldDescriptor.TYPE_BYTES:
        return {BYTES: base64.b64encode(value).decode()}
    if field.message_type is not None:
        return to_json(value, depth + 1)
    return value


def to_json(msg, depth: int = 0) -> dict:
    """Every field of ``msg`` (set or not) as JSON values."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"{msg.DESCRIPTOR.full_name}: nested too deep")
    out = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if _is_map(field):
            vfield = field.message_type.fields_by_name["value"]
            out[field.name] = {MAP: {k: _value_out(vfield, v, depth) for k, v in value.items()}}
        elif _is_repeated(field):
            out[field.name] = [_value_out(field, v, depth) for v in value]
        else:
            out[field.name] = _value_out(field, value, depth)
    return out


class DecodeError(ValueError):
    """A request that does not fit the method's input type (INVALID_ARGUMENT)."""


def _value_in(field, value, target=None):
    if field.type == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, dict) and BYTES in value:
            return base64.b64decode(value[BYTES])
        if isinstance(value, str):
            return value.encode()
        raise DecodeError(f"{field.full_name}: expected bytes")
    if field.message_type is not None:
        if not isinstance(value, dict):
            raise DecodeError(f"{field.full_name}: expected an object")
        from_json(target, value.get(MAP, value))
        return target
    return value


def from_json(msg, data: dict):
    """Fill ``msg`` from ``data`` (a JSON object with its field names); returns ``msg``."""
    if not isinstance(data, dict):
        raise DecodeError(f"{msg.DESCRIPTOR.full_name}: expected an object")
    fields = msg.DESCRIPTOR.fields_by_name
    for name, value in data.items():
        field = fields.get(name)
        if field is None:
            raise DecodeError(f"{msg.DESCRIPTOR.full_name} has no field {name!r}")
        try:
            _set(msg, field, value)
        except (TypeError, ValueError) as e:
            if isinstance(e, DecodeError):
                raise
            raise DecodeError(f"{field.full_name}: {e}") from None
    return msg


def _set(msg, field, value) -> None:
    if value is None:
        return
    if _is_map(field):
        items = value.get(MAP, value) if isinstance(value, dict) else None
        if not isinstance(items, dict):
            raise DecodeError(f"{field.full_name}: expected a map")
        vfield = field.message_type.fields_by_name["value"]
        dst = getattr(msg, field.name)
        for k, v in items.items():
            if vfield.message_type is not None:
                _value_in(vfield, v, dst[k])
            else:
                dst[k] = _value_in(vfield, v)
    elif _is_repeated(field):
        if not isinstance(value, list):
            raise DecodeError(f"{field.full_name}: expected a list")
        dst = getattr(msg, field.name)
        for v in value:
            if field.message_type is not None:
                _value_in(field, v, dst.add())
            else:
                dst.append(_value_in(field, v))
    elif field.message_type is not None:
        _value_in(field, value, getattr(msg, field.name))
    else:
        setattr(msg, field.name, _value_in(field, value))
