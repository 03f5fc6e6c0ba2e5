"""A small, strict codec between frozen dataclasses and JSON objects.

Each payload is a frozen dataclass whose fields carry their limits in ``metadata`` (see
:func:`spec`). :func:`decode` checks a JSON document field by field — type, range, length,
pattern, allowed values — and builds the dataclass; :func:`encode` validates the object the
same way before writing it, so neither side can put a payload on the wire that the other
side would reject. Unknown fields are ignored (forward compatible); a missing required field,
a wrong type or a different schema version is a :class:`ProtocolError`.
"""

import dataclasses
import functools
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from piswarm.protocol.errors import ProtocolError

SCHEMA_VERSION = 1
"""The ``v`` field of every JSON payload. A breaking change bumps it."""

MAX_JSON_BYTES = 16 * 1024
"""No JSON payload of piswarm is larger; bigger ones are refused before parsing."""

T = TypeVar("T")


def spec(
    *,
    lo: float | None = None,
    hi: float | None = None,
    max_len: int | None = None,
    pattern: str | None = None,
    choices: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Field metadata: numeric range, string/tuple length, string pattern, allowed strings."""
    return {
        "lo": lo,
        "hi": hi,
        "max_len": max_len,
        "pattern": re.compile(pattern) if pattern else None,
        "choices": choices,
    }


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_limits(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    """Apply a field's limits; on a tuple, length applies to the whole, the rest to each item."""
    max_len = meta.get("max_len")
    if max_len is not None and isinstance(value, str | tuple) and len(value) > max_len:
        raise ProtocolError(f"field {name!r}: longer than {max_len}")
    lo, hi = meta.get("lo"), meta.get("hi")
    pattern, choices = meta.get("pattern"), meta.get("choices")
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, int | float) and not isinstance(item, bool):
            if lo is not None and item < lo:
                raise ProtocolError(f"field {name!r}: {item!r} is below {lo}")
            if hi is not None and item > hi:
                raise ProtocolError(f"field {name!r}: {item!r} is above {hi}")
        if pattern is not None and isinstance(item, str) and not pattern.fullmatch(item):
            raise ProtocolError(f"field {name!r}: {item!r} does not match {pattern.pattern}")
        if choices is not None and item is not None and item not in choices:
            raise ProtocolError(f"field {name!r}: {item!r} is not one of {sorted(choices)}")


def _convert(name: str, tp: Any, raw: Any) -> Any:
    """Check ``raw`` (from JSON) against type ``tp`` and return the Python value."""
    origin = get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        args = get_args(tp)
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(name, inner, raw)
    if origin is Literal:
        if raw not in get_args(tp):
            raise ProtocolError(f"field {name!r}: {raw!r} is not one of {list(get_args(tp))}")
        return raw
    if origin is tuple:
        if not isinstance(raw, list | tuple):
            raise ProtocolError(f"field {name!r}: expected a list, got {type(raw).__name__}")
        (item_tp, _ellipsis) = get_args(tp)
        return tuple(_convert(f"{name}[{i}]", item_tp, v) for i, v in enumerate(raw))
    if dataclasses.is_dataclass(tp):
        if not isinstance(raw, dict):
            raise ProtocolError(f"field {name!r}: expected an object")
        return _from_mapping(typing.cast(type, tp), raw)
    if tp is bool:
        if not isinstance(raw, bool):
            raise ProtocolError(f"field {name!r}: expected true/false")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ProtocolError(f"field {name!r}: expected an integer")
        return raw
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ProtocolError(f"field {name!r}: expected a number")
        value = float(raw)
        if not math.isfinite(value):
            raise ProtocolError(f"field {name!r}: not a finite number")
        return value
    if tp is str:
        if not isinstance(raw, str):
            raise ProtocolError(f"field {name!r}: expected a string")
        return raw
    raise TypeError(f"unsupported field type {tp!r} for {name!r}")  # a bug in a payload class


def _from_mapping(cls: type[T], data: Mapping[str, Any]) -> T:
    hints = _hints(typing.cast(Any, cls))
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"missing field {f.name!r}")
            continue
        value = _convert(f.name, hints[f.name], data[f.name])
        _check_limits(f.name, value, f.metadata)
        kwargs[f.name] = value
    return cls(**kwargs)


def validate(obj: Any) -> None:
    """Check every field of a payload object against its type and limits."""
    _from_mapping(type(obj), _to_jsonable(obj))


def _to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_to_jsonable(v) for v in obj]
    return obj


def encode(obj: Any) -> bytes:
    """Validate a payload dataclass and serialise it as compact JSON with ``v``."""
    validate(obj)
    body = {"v": SCHEMA_VERSION, **_to_jsonable(obj)}
    data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_JSON_BYTES:
        raise ProtocolError(f"payload of {len(data)} bytes exceeds {MAX_JSON_BYTES}")
    return data


def _reject_constant(name: str) -> float:
    raise ProtocolError(f"{name} is not valid JSON")


def load_json(payload: bytes, *, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """Parse a JSON object payload and check its size and schema version."""
    if len(payload) > max_bytes:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {max_bytes}")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ProtocolError("payload is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"payload is not JSON ({exc.msg} at char {exc.pos})") from None
    except RecursionError:
        raise ProtocolError("payload is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("payload is not a JSON object")
    version = data.get("v")
    if version != SCHEMA_VERSION:
        raise ProtocolError(f"unsupported schema version {version!r} (expected {SCHEMA_VERSION})")
    return data


def decode(cls: type[T], payload: bytes) -> T:
    """Parse and validate ``payload`` as ``cls``; raise ``ProtocolError`` when it is not."""
    return _from_mapping(cls, load_json(payload))


def decode_mapping(cls: type[T], data: Mapping[str, Any]) -> T:
    """Validate an already parsed JSON object as ``cls``."""
    return _from_mapping(cls, data)
