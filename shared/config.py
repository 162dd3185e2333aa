"""YAML -> typed dataclasses, with `a.b=value` command-line overrides.

Every runnable job declares its settings as (nested) dataclasses; a field's trailing `# comment` is its help text
(`--help` prints it, see shared/cli.py). `load_config` reads the YAML, applies the overrides, checks every key, type,
range (the classes' `__post_init__`) and required key (default `REQUIRED`), and returns the dataclass; `save_config`
writes the resolved config beside an output so the run can be reproduced or resumed. Unknown keys are errors that
name the closest valid key. Two class attributes keep old configs working or explain why they do not:
`retired_keys` (removed settings, dropped silently so configs saved with them still load) and `moved_keys` (old key ->
the fix: a settings file that still uses one gets an error saying where the setting went).
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import types
import typing
from pathlib import Path, PurePath
from typing import Any, TypeVar

import yaml

from shared.errors import InputError

T = TypeVar("T")
# The default of a setting the user must give (a path, say); `--help` shows it as "(required)".
REQUIRED = "???"


class ConfigError(InputError):
    """A config file or override that does not fit the job's dataclass."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _coerce(value: Any, tp: Any, where: str, saved: bool = False) -> Any:
    """Check (and gently convert) one value against a type hint; raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if isinstance(value, Override):
        text_setting = tp is str or (origin in (typing.Union, types.UnionType)
                                     and str in typing.get_args(tp) and value not in ("null", "~"))
        if text_setting or (tp is Any and not value.isprintable()):
            return str(value)  # verbatim: the job checks it (YAML would fold a newline away, hiding it from that check)
        if not value.isprintable():
            raise ConfigError(f"{where} holds a control character (e.g. a newline)",
                              fix=f"give {where} a one-line value")
        value = value.parsed(where)
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
                return _coerce(value, arg, where, saved)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{where}: {value!r} fits none of {tp}", fix=f"give {where} a value of one of these types")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if not any(value == a and type(value) is type(a) for a in allowed):  # else True passes for Literal[1]
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}",
                              fix=f"write {where}=<one of {', '.join(map(str, allowed))}>")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {sorted(_field_types(tp))}, got {value!r}",
                              fix=f"set its keys one by one, e.g. {where}.{sorted(_field_types(tp))[0]}=...")
        return _build(tp, value, where, saved)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}", fix=f"write {where}=[a,b] (a YAML list)")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}", fix=f"write {where}.<key>=<value>")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, key_tp, where): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if not isinstance(value, (str, PurePath)):
            raise ConfigError(f"{where}: expected a path, got {value!r} ({type(value).__name__})",
                              fix=f"write {where}=<path>")
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
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r} ({type(value).__name__})",
                              fix=f"write {where}=<{tp.__name__}>")
        return value
    return value


def _build(cls: type[T], data: dict, where: str = "", saved: bool = False) -> T:
    """`saved`: data written by an earlier version (a checkpoint's config), whose moved keys are dropped silently."""
    fields = _field_types(cls)
    prefix = f"{where}." if where else ""
    moved = getattr(cls, "moved_keys", {})
    for key in data:
        if key in moved and not saved:
            raise ConfigError(f"{prefix}{key} is no longer a setting", fix=moved[key])
    data = {k: v for k, v in data.items() if k not in getattr(cls, "retired_keys", ()) and k not in moved}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", str(unknown[0])):  # not a name: maybe not a config file
            raise ConfigError(f"{where or 'the top level'} holds a key that is not a setting name (not shown: the "
                              "file may not be a config)", fix="check that --config names a YAML config of this job")
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f"did you mean {prefix}{close[0]}? " if close else ""
        raise ConfigError(f"unknown key {prefix}{unknown[0]}",
                          fix=f"{hint}valid keys{' under ' + where if where else ''}: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(v, fields[k], f"{prefix}{k}", saved) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field with no default was not given
        raise ConfigError(f"{where or cls.__name__}: {e}") from None
    except ConfigError as e:  # a range or combination check of the class (__post_init__)
        if where and not e.message.startswith(where):
            e.message = f"{where}: {e.message}"
        raise


def missing_required(cfg: Any, prefix: str = "") -> list[str]:
    """Dotted keys still holding the REQUIRED placeholder."""
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out += missing_required(value, f"{prefix}{f.name}.")
        elif isinstance(value, str) and value == REQUIRED:
            out.append(prefix + f.name)
    return out


class Override(str):
    """The text of a command-line value: a string setting takes it verbatim (`conversation='Q: hi\nA:'`, `run=007`),
    any other setting takes it parsed as YAML (`lr=1e-4`, `betas=[0.9,0.95]`, `checkpoint=null`)."""

    def parsed(self, where: str) -> Any:
        try:
            return yaml.safe_load(self) if self != "" else ""
        except yaml.YAMLError:
            raise ConfigError(f"{where}={self!s}: the value is not valid YAML",
                              fix="quote it, or write a list as [a,b]") from None


def parse_overrides(args: list[str]) -> dict:
    """Turn ["a.b=3", "c=x"] into {"a": {"b": Override("3")}, "c": Override("x")}; see `Override`."""
    out: dict = {}
    for arg in args:
        key, sep, raw = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {arg!r} is not of the form key.sub=value", fix="write it as key.sub=value")
        value = Override(raw)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {arg!r} conflicts with an earlier override of {p}",
                                  fix=f"give {p} once, either whole or key by key")
        node[parts[-1]] = value
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def _plain(value: Any) -> Any:
    """Dataclasses as dicts and paths as strings, so the value can be dumped as YAML and read back."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def from_dict(cls: type[T], data: dict) -> T:
    """Build `cls` from a saved dict (e.g. a checkpoint's config); keys added to `cls` since then take defaults,
    keys moved since then are dropped."""
    return _build(cls, data, saved=True)


def defaults_dict(cls: type) -> dict:
    """The defaults of `cls` as a plain dict, field by field (the class's own checks may reject its defaults: a
    required list, say), so overrides of nested keys merge into them."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = _plain(value)
    return out


def to_dict(cfg: Any) -> dict:
    return _plain(dataclasses.asdict(cfg))


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                check_required: bool = True) -> T:
    """Build `cls` from defaults, then the YAML at `path`, then `overrides` (later wins); check required keys."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist", fix="the shipped ones are under configs/")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:  # its text is never shown: the path may name a file that is not a config
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{p}: not valid YAML{where} ({getattr(e, 'problem', None) or 'unparsable'})",
                              fix="fix that line, or check that --config names a YAML config") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: unreadable ({e})", fix="give a readable UTF-8 YAML file") from None
        if loaded is None:
            raise ConfigError(f"{p}: the file holds no settings",
                              fix="copy a shipped config from configs/ and edit it; an empty file is never meant")
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of settings, got {type(loaded).__name__}",
                              fix=f"write `key: value` lines, with keys from {sorted(_field_types(cls))}")
        data = loaded
    try:
        data = _merge(defaults_dict(cls), _merge(data, parse_overrides(overrides or [])))
        cfg = _build(cls, data)
    except ConfigError as e:
        e.message = f"{path or cls.__name__}: {e.message}"
        raise
    if check_required:
        missing = missing_required(cfg)
        if missing:
            raise ConfigError(f"{path or cls.__name__}: {missing[0]} is required",
                              fix=f"set it in the YAML or on the command line: {missing[0]}=<value>")
    return cfg


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
