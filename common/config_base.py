"""Typed configuration: dataclasses whose fields carry help text, loaded from TOML dicts.

Every field is declared once, with `field(default=..., metadata={"help": ...})`; the same text
serves `lifelean.toml` comments and error messages. Unknown keys and wrong types are
:class:`InputError` naming the key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from common.errors import InputError

T = TypeVar("T")


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with help text (PEFT's convention: documentation lives on the config)."""
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if tp is type(None):
        return "nothing"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(f"config key '{key}': expected a table, got {type(value).__name__}")
        return from_dict(tp, value, prefix=key)
    if origin is Literal:
        if value not in get_args(tp):
            raise InputError(f"config key '{key}': expected one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, key)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"config key '{key}': expected {_type_name(tp)}, got {type(value).__name__}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"config key '{key}': expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"config key '{key}': expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in a config class, not user input


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build config dataclass `cls` from `data`; unknown keys and wrong types raise :class:`InputError`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"[{prefix}] " if prefix else ""
        raise InputError(f"config {where}has unknown key '{unknown[0]}'; known keys: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{prefix}.{name}" if prefix else name)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # __post_init__ validation
        raise InputError(f"config{' [' + prefix + ']' if prefix else ''}: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass, with `None` values left out (TOML has no null)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif value is not None:
            out[f.name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def to_toml(obj: Any) -> str:
    """TOML text of a config, each key preceded by its help text as a comment."""
    import tomli_w

    lines: list[str] = []
    top = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    scalars = {k: v for k, v in top.items() if not dataclasses.is_dataclass(v)}
    for f in dataclasses.fields(obj):
        if f.name in scalars and scalars[f.name] is not None:
            lines.append(f"# {f.metadata.get('help', '')}")
            lines.append(tomli_w.dumps({f.name: scalars[f.name]}).strip())
    for f in dataclasses.fields(obj):
        section = getattr(obj, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        lines.append("")
        lines.append(f"[{f.name}]")
        for sf in dataclasses.fields(section):
            value = getattr(section, sf.name)
            if value is None:
                lines.append(f"# {sf.name} = ...  ({sf.metadata.get('help', '')})")
                continue
            lines.append(f"# {sf.metadata.get('help', '')}")
            lines.append(tomli_w.dumps({sf.name: list(value) if isinstance(value, tuple) else value}).strip())
    return "\n".join(lines).lstrip() + "\n"
