"""Typed configuration: dataclasses whose fields carry help text, loaded from TOML dicts.

Every field is declared once, with `field(default=..., metadata={"help": ...})`; the same text
serves `lifelean.toml` comments and error messages. Unknown keys and wrong types are
:class:`InputError` naming the key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import math
import os
import stat
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from common.errors import InputError

T = TypeVar("T")

# A config file is a few KB (the default lifelean.toml is about 6 KB); anything above this is not one.
MAX_CONFIG_BYTES = 1 << 20
# A config string is a name, a path or a URL: PATH_MAX is 4096, so this is far above any real one and keeps
# every accepted config writable as a file under MAX_CONFIG_BYTES.
MAX_CONFIG_STRING = 1 << 14
_INT64 = (-(1 << 63), (1 << 63) - 1)


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


def _show(value: Any) -> str:
    """`repr` of a user value, cut short so that an error stays one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text):,} characters)"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(f"config key '{key}': expected a table, got {type(value).__name__}")
        return from_dict(tp, value, prefix=key)
    if origin is Literal:
        if value not in get_args(tp):
            raise InputError(f"config key '{key}': expected one of {_type_name(tp)}, got {_show(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is not None and len(options) == 1:  # `X | None`: X's own error is the precise one
            return _coerce(value, options[0], key)
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
        raise InputError(f"config key '{key}': expected {_type_name(tp)}, got {_show(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"config key '{key}': expected {_type_name(tp)}, got {type(value).__name__}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"config key '{key}': expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"config key '{key}': expected an integer, got {_show(value)}")
        if not _INT64[0] <= value <= _INT64[1]:
            raise InputError(f"config key '{key}': expected an integer that fits in 64 bits, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"config key '{key}': expected a number, got {_show(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise InputError(f"config key '{key}': expected a finite number, got {_show(value)}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"config key '{key}': expected a string, got {_show(value)}")
        if "\x00" in value:
            raise InputError(f"config key '{key}': expected a string without NUL characters, got {_show(value)}")
        if len(value) > MAX_CONFIG_STRING:
            raise InputError(f"config key '{key}': too long to be real ({len(value):,} characters, at most "
                             f"{MAX_CONFIG_STRING:,})")
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in a config class, not user input


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build config dataclass `cls` from `data`; unknown keys and wrong types raise :class:`InputError`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    where = f"[{prefix}] " if prefix else ""
    if not isinstance(data, dict):
        raise InputError(f"config {where}expected a table of keys, got {type(data).__name__}")
    unknown = sorted((k for k in data if k not in names), key=str)
    if unknown:
        raise InputError(f"config {where}has unknown key {_show(unknown[0])}; known keys: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{prefix}.{name}" if prefix else name)
    try:
        return cls(**kwargs)
    except (ValueError, ArithmeticError) as exc:  # __post_init__ validation
        raise InputError(f"config{' [' + prefix + ']' if prefix else ''}: {exc}") from None


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The table of a TOML file; every way it can be malformed is one :class:`InputError` naming the file.

    Refused: not a regular file, larger than MAX_CONFIG_BYTES, not UTF-8 (a UTF-8 byte-order mark is
    tolerated), invalid TOML, nesting too deep to parse.
    """
    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{p}: expected a regular file (a TOML config)")
        if st.st_size > MAX_CONFIG_BYTES:
            raise InputError(f"{p}: too large to be a config file ({st.st_size:,} bytes, at most {MAX_CONFIG_BYTES:,})")
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        found = "UTF-16 (byte-order mark)" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else \
            f"byte 0x{data[exc.start]:02x} at line {line}"
        raise InputError(f"{p}: expected UTF-8 text, found {found}; save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer of more than 4300 digits
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InputError(f"{p}: invalid TOML ({reason})") from None
    except RecursionError:
        raise InputError(f"{p}: invalid TOML (nested too deeply)") from None


def load_config_file(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Config `cls` from the TOML file at `path` (all defaults when it does not exist); errors name the file."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return cls()
    data = read_toml(p)
    try:
        return from_dict(cls, data)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None


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
