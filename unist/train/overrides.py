"""Typed `key=value` overrides for nested dataclass configs.

`apply_override(cfg, "optim.lr", "3e-4")` walks the dotted key through nested dataclasses, parses the
text with the field's type hint (bool / int / float / str / Optional / Literal / tuple / dict) and
returns a new config (`dataclasses.replace` all the way down, so frozen dataclasses work too). An
unknown key raises `ConfigError` listing the valid keys, a bad value names the expected type, so
a typo never silently trains something else.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from unist.errors import ConfigError


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}
_NONE = {"none", "null", "~"}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def leaf_keys(cls: type, prefix: str = "") -> list[str]:
    """Every settable dotted key of dataclass `cls` (nested dataclasses are descended into)."""
    keys = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        tp = _hints(cls)[f.name]
        sub = _dataclass_of(tp)
        if sub is not None:
            keys += leaf_keys(sub, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass in `tp` (also inside `X | None`), or None."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        subs = [a for a in typing.get_args(tp) if isinstance(a, type) and dataclasses.is_dataclass(a)]
        return subs[0] if len(subs) == 1 else None
    return None


def parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse `text` as type `tp` (the field type hint of `key`); raise ConfigError naming the key."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    s = text.strip()
    try:
        if tp is Any:
            return s
        if origin in (Union, types.UnionType):
            if type(None) in args and s.lower() in _NONE:
                return None
            errors = []
            for arm in (a for a in args if a is not type(None)):
                try:
                    return parse_value(s, arm, key)
                except ConfigError as e:
                    errors.append(str(e))
            raise ConfigError("; ".join(errors))
        if origin is Literal:
            for a in args:
                if str(a) == s:
                    return a
            raise ConfigError(f"{key}={s!r}: choose one of {list(args)}")
        if tp is bool:
            if s.lower() in _TRUE:
                return True
            if s.lower() in _FALSE:
                return False
            raise ConfigError(f"{key}={s!r} is not a boolean: use true or false")
        if tp is int:
            f = float(s)
            if not f.is_integer():
                raise ConfigError(f"{key}={s!r} must be an integer")
            return int(f)
        if tp is float:
            return float(s)
        if tp is str:
            return s
        if origin in (tuple, list):
            items = [x for x in s.split(",") if x.strip()] if s else []
            item_tp = args[0] if args else str
            vals = [parse_value(x, item_tp, key) for x in items]
            return tuple(vals) if origin is tuple else vals
        if origin is dict:
            out = {}
            for item in (x for x in s.split(",") if x.strip()):
                if ":" not in item:
                    raise ConfigError(f"{key}: dict items are written name:value,name:value, got {item!r}")
                k, v = item.split(":", 1)
                out[k.strip()] = parse_value(v, args[1] if args else str, key)
            return out
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{key}={s!r} cannot be parsed as {_type_name(tp)}: {e}") from None
    raise ConfigError(f"{key}: fields of type {_type_name(tp)} cannot be set from the command line")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def field_type(cls: type, key: str) -> Any:
    """The type hint of dotted `key` inside dataclass `cls`; ConfigError (listing valid keys) if unknown."""
    parts = key.split(".")
    cur: Any = cls
    for i, part in enumerate(parts):
        sub = _dataclass_of(cur)
        names = {f.name for f in dataclasses.fields(sub)} if sub is not None else set()
        if sub is None or part not in names:
            raise unknown_key_error(key, leaf_keys(cls))
        cur = _hints(sub)[part]
    if _dataclass_of(cur) is not None:
        raise ConfigError(f"{key} is a section, not a value: set one of its keys, e.g. "
                          f"{leaf_keys(_dataclass_of(cur), key + '.')[:3]}")
    return cur


def unknown_key_error(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r}.{hint} Valid keys:\n  " + "\n  ".join(valid))


def replace_dotted(obj: Any, key: str, value: Any) -> Any:
    """A copy of dataclass `obj` with dotted `key` set to `value` (nested `dataclasses.replace`)."""
    head, _, rest = key.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: replace_dotted(getattr(obj, head), rest, value)})


def apply_override(obj: Any, key: str, text: str) -> Any:
    """Parse `text` with the type of `key` in `obj`'s dataclass and return the updated copy."""
    return replace_dotted(obj, key, parse_value(text, field_type(type(obj), key), key))


def split_assignment(arg: str) -> tuple[str, str]:
    """'a.b=c' -> ('a.b', 'c'), with a clear error for anything else."""
    if "=" not in arg or arg.startswith("="):
        raise ConfigError(f"override {arg!r} is not of the form key=value (e.g. optim.lr=3e-4)")
    key, value = arg.split("=", 1)
    return key.strip(), value
