"""Typed, validated configuration loaded from YAML.

Configs are data: files are read with :func:`yaml.safe_load` and turned into frozen dataclasses by
:func:`from_dict`, which rejects unknown keys, wrong types and out-of-range values with the key's
dotted path, the bad value and what is allowed. Constraints are declared on the dataclass fields::

    @dataclass(frozen=True)
    class Thermal:
        inlet_c: float = field(default=25.0, metadata=spec(lo=-20.0, hi=60.0, unit="degC"))
        mode: str = field(default="rc", metadata=spec(choices=("rc", "fixed")))

Supported field types: bool, int, float, str, ``X | None``, ``list[X]``, ``tuple[X, ...]``,
``dict[str, X]`` and nested dataclasses. ``int`` accepts YAML integers only; ``float`` accepts both.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from powerrl.errors import ConfigError

T = TypeVar("T")


def spec(
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    unit: str = "",
    doc: str = "",
) -> dict[str, Any]:
    """Metadata for a dataclass field: closed range ``[lo, hi]`` (or open ends), choices, unit, doc."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "choices": choices, "unit": unit,
            "doc": doc}


def _range_text(meta: dict[str, Any]) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    left = "(" if meta.get("lo_open") else "["
    right = ")" if meta.get("hi_open") else "]"
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    return f"a number in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}{unit}"


def _check_range(value: float, meta: dict[str, Any], path: str, source: str | None) -> None:
    if not math.isfinite(value):
        raise ConfigError(path, value, _range_text(meta), source)
    lo, hi = meta.get("lo"), meta.get("hi")
    bad = False
    if lo is not None:
        bad |= value <= lo if meta.get("lo_open") else value < lo
    if hi is not None:
        bad |= value >= hi if meta.get("hi_open") else value > hi
    if bad:
        raise ConfigError(path, value, _range_text(meta), source)


def _convert(tp: Any, value: Any, path: str, meta: dict[str, Any], source: str | None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _convert(non_none[0], value, path, meta, source)
        raise TypeError(f"unsupported union type {tp} at {path}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path=path, source=source)  # type: ignore[arg-type]
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(path, value, "a list", source)
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, f"{path}[{i}]", meta, source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, value, "a mapping", source)
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _convert(val_tp, v, f"{path}.{k}", meta, source) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, value, "true or false", source)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, value, "an integer" + (f" ({_range_text(meta)})" if meta.get("lo") is not None
                                                           or meta.get("hi") is not None else ""), source)
        _check_range(value, meta, path, source)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, value, _range_text(meta), source)
        value = float(value)
        _check_range(value, meta, path, source)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, value, "a string", source)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(path, value, "one of " + ", ".join(repr(c) for c in choices), source)
    return value


def from_dict(cls: type[T], data: Any, *, path: str = "", source: str | None = None) -> T:
    """Build dataclass ``cls`` from a mapping, validating every key.

    Raises:
        ConfigError: unknown key, missing required key, wrong type or out-of-range value; the
            message carries the dotted key path and the allowed values.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, data, f"a mapping of {cls.__name__} settings", source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = unknown[0]
        raise ConfigError(join_key(path, str(key)), data[key],
                          "a known key; allowed keys here: " + ", ".join(sorted(fields)), source)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub = join_key(path, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], sub, dict(f.metadata), source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(sub, None, f"a value (required key '{name}' is missing)", source)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(path=path, source=source)
    return obj


def join_key(path: str, key: str) -> str:
    """The dotted key path of ``key`` under ``path`` (``path`` may be empty: the root)."""
    return f"{path}.{key}" if path else key


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with ``safe_load``; a syntax error becomes a :class:`ConfigError` with the line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("", str(p), "an existing YAML file (check the path)", None)
    try:
        with p.open("r", encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError("", f"YAML syntax error at {where}", "valid YAML", str(p)) from None


def load_kind(path: str | Path, kind: str, what: str = "") -> dict[str, Any]:
    """The mapping in YAML file ``path`` without its ``kind:`` key, which must be ``kind`` (or absent).

    ``what`` names the other required keys in the error message (e.g. ``"and 'id'"``).
    """
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("", data, f"a mapping with 'kind: {kind}'{' ' + what if what else ''}", str(path))
    data = dict(data)
    found = data.pop("kind", kind)
    if found != kind:
        raise ConfigError("kind", found, f"'{kind}'", str(path))
    return data


def load(cls: type[T], path: str | Path, *, section: str | None = None) -> T:
    """Load ``path`` (optionally one top-level ``section`` of it) into dataclass ``cls``."""
    data = load_yaml(path)
    if section is not None:
        if not isinstance(data, dict) or section not in data:
            raise ConfigError(section, None, f"a top-level '{section}' section", str(path))
        data = data[section]
    return from_dict(cls, data, path=section or "", source=str(path))


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config dataclass (for saving resolved configs beside runs)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
