"""YAML -> typed dataclasses, with `a.b=value` command-line overrides.

Every runnable job declares its settings as (nested) dataclasses. `load_config` reads the YAML, applies the
overrides, checks every key and type, and returns the dataclass; `save_config` writes the resolved config beside
an output so the run can be reproduced or resumed. Unknown keys are errors that list the valid ones (except keys
a class lists in `retired_keys`: removed settings, dropped so configs saved with them still load).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from pathlib import Path, PurePath
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the job's dataclass."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently convert) one value against a type hint; raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if not any(value == a and type(value) is type(a) for a in allowed):  # else True passes for Literal[1]
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {sorted(_field_types(tp))}, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, key_tp, where): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if not isinstance(value, (str, PurePath)):
            raise ConfigError(f"{where}: expected a path, got {value!r} ({type(value).__name__})")
        return tp(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-5" as a string
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
        return value
    return value


def _build(cls: type[T], data: dict, where: str = "") -> T:
    fields = _field_types(cls)
    data = {k: v for k, v in data.items() if k not in getattr(cls, "retired_keys", ())}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s}; valid keys{' under ' + where if where else ''}: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _coerce(v, fields[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field with no default was not given
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def parse_overrides(args: list[str]) -> dict:
    """Turn ["a.b=3", "c=x"] into {"a": {"b": 3}, "c": "x"}; values are parsed as YAML scalars/lists."""
    out: dict = {}
    for arg in args:
        key, sep, raw = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {arg!r} is not of the form key.sub=value")
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {arg!r} conflicts with an earlier override of {p}")
        node[parts[-1]] = value
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def _plain(value: Any) -> Any:
    """Path values as strings, so the dict can be dumped as YAML and read back."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def from_dict(cls: type[T], data: dict) -> T:
    """Build `cls` from a saved dict (e.g. a checkpoint's config); keys added to `cls` since then take defaults."""
    return _build(cls, data)


def to_dict(cfg: Any) -> dict:
    return _plain(dataclasses.asdict(cfg))


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from defaults, then the YAML at `path`, then `overrides` (later wins)."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; the shipped ones are under configs/")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of {sorted(_field_types(cls))}")
        data = loaded
    try:
        defaults = to_dict(cls())
    except TypeError:
        defaults = {}
    data = _merge(defaults, _merge(data, parse_overrides(overrides or [])))
    try:
        return _build(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path or cls.__name__}: {e}") from None


def config_hash(cfg: Any) -> str:
    """Short stable hash of the resolved config, recorded in every output."""
    blob = json.dumps(to_dict(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def save_config(cfg: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config beside an output (atomic rename so a reader never sees half a file)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")  # per process: parallel array jobs share out_dir
    tmp.write_text(f"# resolved config, hash {config_hash(cfg)}\n" + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tmp.replace(target)
    return target


def split_cli(argv: list[str]) -> tuple[str | None, list[str], list[str]]:
    """Split `--config X a.b=1 verb` style argv into (config path, overrides, positional words)."""
    config, overrides, words = None, [], []
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            config = next(it, None)
            if config is None:
                raise ConfigError("--config needs a path")
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif "=" in arg and not arg.startswith("-"):
            overrides.append(arg)
        else:
            words.append(arg)
    return config, overrides, words


def config_from_cli(cls: type[T], argv: list[str], verb: str) -> T:
    """The job config of `python -m services.<env> <verb> --config X a.b=1`; stray words are an error."""
    path, overrides, words = split_cli(argv)
    if words:
        raise SystemExit(f"{verb}: unexpected arguments {words}")
    return load_config(cls, path, overrides)
