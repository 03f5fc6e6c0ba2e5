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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


Converter = Callable[[str, Any], Any]


def _limits(meta: Mapping[str, Any]) -> Callable[[str, Any], None] | None:
    """A checker for a field's limits, built once: length applies to a whole string or
    tuple; range, pattern and allowed values to each item. ``None`` when there are none."""
    max_len, lo, hi = meta.get("max_len"), meta.get("lo"), meta.get("hi")
    pattern, choices = meta.get("pattern"), meta.get("choices")
    if max_len is None and lo is None and hi is None and pattern is None and choices is None:
        return None

    def check(name: str, value: Any) -> None:
        # Fast paths for what every message is made of (a number in range, a plain string
        # of the allowed ones, a missing optional value); anything else, and every error,
        # goes the whole way below.
        kind = type(value)
        if kind is float or kind is int:
            if (
                (lo is None or value >= lo)
                and (hi is None or value <= hi)
                and (choices is None or value in choices)
            ):
                return
        elif value is None or (
            kind is str
            and pattern is None
            and (max_len is None or len(value) <= max_len)
            and (choices is None or value in choices)
        ):
            return
        if max_len is not None and isinstance(value, str | tuple) and len(value) > max_len:
            raise ProtocolError(f"field {name!r}: longer than {max_len}")
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, int | float) and not isinstance(item, bool):
                if lo is not None and item < lo:
                    raise ProtocolError(f"field {name!r}: {item!r} is below {lo}")
                if hi is not None and item > hi:
                    raise ProtocolError(f"field {name!r}: {item!r} is above {hi}")
            elif pattern is not None and isinstance(item, str) and not pattern.fullmatch(item):
                raise ProtocolError(f"field {name!r}: {item!r} does not match {pattern.pattern}")
            if choices is not None and item is not None and item not in choices:
                raise ProtocolError(f"field {name!r}: {item!r} is not one of {sorted(choices)}")

    return check


def _bool(name: str, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ProtocolError(f"field {name!r}: expected true/false")
    return raw


def _int(name: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ProtocolError(f"field {name!r}: expected an integer")
    return raw


def _float(name: str, raw: Any) -> float:
    if type(raw) is float and math.isfinite(raw):  # the common case, first
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ProtocolError(f"field {name!r}: expected a number")
    try:
        value = float(raw)
    except OverflowError:  # an integer of hundreds of digits
        raise ProtocolError(f"field {name!r}: not a finite number") from None
    if not math.isfinite(value):
        raise ProtocolError(f"field {name!r}: not a finite number")
    return value


def _str(name: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ProtocolError(f"field {name!r}: expected a string")
    if raw.isascii():  # the common case: nothing to check
        return raw
    try:
        raw.encode("utf-8")  # JSON's \ud800 escapes decode to text that cannot be stored
    except UnicodeEncodeError:
        raise ProtocolError(f"field {name!r}: not valid Unicode text") from None
    return raw


@functools.cache
def _converter(tp: Any) -> Converter:
    """A function checking a JSON value against type ``tp``, built once per type."""
    origin = get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        (inner,) = [a for a in get_args(tp) if a is not type(None)]
        convert_inner = _converter(inner)
        return lambda name, raw: None if raw is None else convert_inner(name, raw)
    if origin is Literal:
        allowed = get_args(tp)

        def literal(name: str, raw: Any) -> Any:
            if raw not in allowed:
                raise ProtocolError(f"field {name!r}: {raw!r} is not one of {list(allowed)}")
            return raw

        return literal
    if origin is tuple:
        item = _converter(get_args(tp)[0])

        def sequence(name: str, raw: Any) -> tuple[Any, ...]:
            if not isinstance(raw, list | tuple):
                raise ProtocolError(f"field {name!r}: expected a list, got {type(raw).__name__}")
            try:
                return tuple([item(name, v) for v in raw])
            except ProtocolError:  # again, to name the item: "field 'load[2]'"
                return tuple([item(f"{name}[{i}]", v) for i, v in enumerate(raw)])

        return sequence
    if dataclasses.is_dataclass(tp):

        def nested(name: str, raw: Any) -> Any:
            if not isinstance(raw, dict):
                raise ProtocolError(f"field {name!r}: expected an object")
            return _from_mapping(typing.cast(type, tp), raw)

        return nested
    simple: dict[Any, Converter] = {bool: _bool, int: _int, float: _float, str: _str}
    if tp in simple:
        return simple[tp]
    raise TypeError(f"unsupported field type {tp!r}")  # a bug in a payload class


Taker = Callable[[Any], Any]


def _quick(tp: Any, meta: Mapping[str, Any], bind: Callable[[Any], str]) -> str | None:
    """A Python expression over ``v``, the field's value as JSON gave it, that is true
    when ``v`` is plainly right as it is (a number in range, an allowed string, a list of
    those); ``None`` where there is no quick way to tell. A false one sends the value the
    whole way (conversion, checks, the error's words)."""
    optional = False
    if get_origin(tp) in (types.UnionType, typing.Union):
        (tp,) = [a for a in get_args(tp) if a is not type(None)]
        optional = True
    max_len, lo, hi = meta.get("max_len"), meta.get("lo"), meta.get("hi")
    pattern, choices = meta.get("pattern"), meta.get("choices")
    many = get_origin(tp) is tuple
    item = get_args(tp)[0] if many else tp
    x = "x" if many else "v"
    if item is float and lo is not None and hi is not None and choices is None:
        # JSON has no NaN or infinity here (load_json refuses them); an int goes the
        # whole way, to become a float.
        test = [f"type({x}) is float", f"{bind(lo)} <= {x} <= {bind(hi)}"]
    elif item is int and choices is None:
        test = [f"type({x}) is int"]
        test += [f"{x} >= {bind(lo)}"] if lo is not None else []
        test += [f"{x} <= {bind(hi)}"] if hi is not None else []
    elif item is str:
        test = [f"type({x}) is str", f"{x}.isascii()"]
        test += [f"len({x}) <= {bind(max_len)}"] if max_len is not None and not many else []
        test += [f"{x} in {bind(choices)}"] if choices is not None else []
        test += [f"{bind(pattern.fullmatch)}({x}) is not None"] if pattern is not None else []
    else:
        return None
    expr = " and ".join(test)
    if many:  # a tuple of them: JSON gives a list
        most = f" and len(v) <= {bind(max_len)}" if max_len is not None else ""
        expr = f"type(v) is list{most} and all({expr} for x in v)"
    return f"v is None or ({expr})" if optional else expr


def _whole_way(name: str, convert: Converter, check: Callable[[str, Any], None] | None) -> Taker:
    def take(raw: Any) -> Any:
        value = convert(name, raw)
        if check is not None:
            check(name, value)
        return value

    return take


@dataclass(frozen=True)
class _Field:
    name: str
    convert: Converter
    check: Callable[[str, Any], None] | None
    required: bool
    hint: Any
    meta: Mapping[str, Any]


@functools.cache
def _plan(cls: Any) -> tuple[_Field, ...]:
    """How to check each field of a payload class: type hints are read once, here."""
    hints = typing.get_type_hints(cls)
    return tuple(
        _Field(
            name=f.name,
            convert=_converter(hints[f.name]),
            check=_limits(f.metadata),
            required=f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            hint=hints[f.name],
            meta=f.metadata,
        )
        for f in dataclasses.fields(cls)
    )


@functools.cache
def _decoder(cls: Any) -> Callable[[Mapping[str, Any]], Any]:
    """A decoder for ``cls``, written out as Python once per class (as :mod:`dataclasses`
    writes ``__init__``): telemetry arrives thousands of times a second, and a loop over
    the fields calling a converter and a checker each cost ~40% of its decoding. Each
    field takes the quick test of :func:`_quick` inline, and goes the whole way (the same
    converter and checker, the same words in an error) when it fails."""
    names: dict[str, Any] = {"_cls": cls, "_ProtocolError": ProtocolError}

    def bind(obj: Any) -> str:
        name = f"_c{len(names)}"
        names[name] = obj
        return name

    lines = ["def decode(data):", "    kw = {}"]
    for field in _plan(cls):
        key = repr(field.name)
        whole = bind(_whole_way(field.name, field.convert, field.check))
        quick = _quick(field.hint, field.meta, bind)
        hint, optional = field.hint, False
        if get_origin(hint) in (types.UnionType, typing.Union):
            (hint,) = [a for a in get_args(hint) if a is not type(None)]
            optional = True
        taken = "v"
        if get_origin(hint) is tuple:  # JSON gives a list
            taken = "(None if v is None else tuple(v))" if optional else "tuple(v)"
        lines += [f"    if {key} in data:", f"        v = data[{key}]"]
        if dataclasses.is_dataclass(hint) and field.check is None:  # a nested payload
            inner = _decoder(typing.cast(Any, hint))
            nested = f"{bind(inner)}(v) if type(v) is dict else {whole}(v)"
            lines.append(
                f"        kw[{key}] = None if v is None else {nested}"
                if optional
                else f"        kw[{key}] = {nested}"
            )
        elif quick is None:
            lines.append(f"        kw[{key}] = {whole}(v)")
        else:
            lines.append(f"        kw[{key}] = {taken} if ({quick}) else {whole}(v)")
        if field.required:
            message = repr(f"missing field {field.name!r}")
            lines += ["    else:", f"        raise _ProtocolError({message})"]
    lines.append("    return _cls(**kw)")
    exec("\n".join(lines), names)  # noqa: S102 - our own classes' fields, not input
    return typing.cast(Callable[[Mapping[str, Any]], Any], names["decode"])


def _from_mapping(cls: type[T], data: Mapping[str, Any]) -> T:
    return typing.cast(T, _decoder(typing.cast(Any, cls))(data))


def validate(obj: Any) -> dict[str, Any]:
    """Check every field of a payload object against its type and limits; return its JSON."""
    data = _to_jsonable(obj)
    _from_mapping(type(obj), data)
    return typing.cast(dict[str, Any], data)


def _to_jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, str | int | float):
        return obj
    if isinstance(obj, tuple | list):
        return [_to_jsonable(v) for v in obj]
    return {f.name: _to_jsonable(getattr(obj, f.name)) for f in _plan(typing.cast(Any, type(obj)))}


def encode(obj: Any, *, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """Validate a payload dataclass and serialise it as compact JSON with ``v``."""
    body = {"v": SCHEMA_VERSION, **validate(obj)}
    data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > max_bytes:
        raise ProtocolError(f"payload of {len(data)} bytes exceeds {max_bytes}")
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
    except ProtocolError:  # NaN or Infinity (_reject_constant)
        raise
    except ValueError:  # an integer of more than 4,300 digits (Python's own limit)
        raise ProtocolError("payload holds a number too long to read") from None
    except RecursionError:
        raise ProtocolError("payload is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("payload is not a JSON object")
    version = data.get("v")
    if version != SCHEMA_VERSION:
        raise ProtocolError(f"unsupported schema version {version!r} (expected {SCHEMA_VERSION})")
    return data


def decode(cls: type[T], payload: bytes, *, max_bytes: int = MAX_JSON_BYTES) -> T:
    """Parse and validate ``payload`` as ``cls``; raise ``ProtocolError`` when it is not."""
    return _from_mapping(cls, load_json(payload, max_bytes=max_bytes))


def decode_mapping(cls: type[T], data: Mapping[str, Any]) -> T:
    """Validate an already parsed JSON object as ``cls``."""
    return _from_mapping(cls, data)
