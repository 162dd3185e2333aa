"""Every YAML under configs/ opens with the command that runs it and loads into the job class that command names.

The files are discovered when the tests are collected, so a config added by any service is checked on the next run
without touching this file. Header: `# python -m services.<service> [verb] --config <its own path> [key=value ...]`;
`key=...` marks an override the user must supply (only its key is checked), any other override is applied.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.cli import parse_argv
from shared.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[3]
CONFIG_FILES = sorted((REPO / "configs").rglob("*.yaml"))
HEADER = re.compile(r"# python -m services\.(?P<service>[a-z_]+)(?P<args>( +\S+)*) *")
PLACEHOLDER = "..."


@dataclass
class LaunchCommand:
    service: str
    verb: str | None
    overrides: list[str]  # applied when the YAML is loaded
    placeholders: list[str]  # keys the user fills in (`key=...`)


def parse_header(first_line: str, rel_path: str) -> LaunchCommand:
    """Read the launch command in a config's first line; AssertionError says what is wrong and how it should read."""
    shape = f"# python -m services.<service> [verb] --config {rel_path} [key=value ...]"
    match = HEADER.fullmatch(first_line)
    assert match, f"{rel_path}: line 1 must be the launch command `{shape}`, found {first_line!r}"
    config, overrides, words, _ = parse_argv(match["args"].split())
    assert config == rel_path, f"{rel_path}: line 1 launches --config {config}, not this file; write `{shape}`"
    assert len(words) <= 1, f"{rel_path}: line 1 has more than one verb {words}; write `{shape}`"
    given = [o for o in overrides if o.partition("=")[2] != PLACEHOLDER]
    placeholders = [o.partition("=")[0] for o in overrides if o.partition("=")[2] == PLACEHOLDER]
    return LaunchCommand(match["service"], words[0] if words else None, given, placeholders)


def job_class(command: LaunchCommand, rel_path: str) -> type:
    """The config class of the verb, from services.<service>.verbs (without a verb: the service's default verb)."""
    module = importlib.import_module(f"services.{command.service}.verbs")
    verb = command.verb or getattr(module, "DEFAULT_VERB", None)
    assert verb in module.VERBS, (f"{rel_path}: line 1 runs verb {verb!r} of services.{command.service}, "
                                  f"whose verbs are {sorted(module.VERBS)}; name one of them")
    return module.VERBS[verb].config


def assert_key_exists(cls: type, dotted: str, rel_path: str) -> None:
    """A `key=...` placeholder must name a real field (a dict field accepts any sub-key)."""
    tp: typing.Any = cls
    for part in dotted.split("."):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            tp = args[0]  # Optional[X] -> X
        if typing.get_origin(tp) is dict:
            return
        assert dataclasses.is_dataclass(tp), f"{rel_path}: line 1 sets {dotted}=..., but {part} is not a field"
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        assert part in names, f"{rel_path}: line 1 sets {dotted}=..., but {part!r} is not one of {sorted(names)}"
        tp = hints[part]


@pytest.mark.parametrize("path", CONFIG_FILES or [None],
                         ids=[p.relative_to(REPO).as_posix() for p in CONFIG_FILES] or ["no-configs"])
def test_shipped_config_loads_into_its_job(path: Path | None) -> None:
    if path is None:
        pytest.skip("no config files found under configs/")
    rel_path = path.relative_to(REPO).as_posix()
    lines = path.read_text().splitlines()
    command = parse_header(lines[0] if lines else "", rel_path)
    cls = job_class(command, rel_path)
    for key in command.placeholders:
        assert_key_exists(cls, key, rel_path)
    cfg = load_config(cls, path, command.overrides, check_required=not command.placeholders)
    assert isinstance(cfg, cls)


@pytest.mark.parametrize(("first_line", "message"), [
    ("", "line 1 must be the launch command `# python -m services.<service> [verb] --config configs/x/a.yaml"),
    ("# Demo settings", "line 1 must be the launch command"),
    ("# python -m services.train bridge --config configs/x/other.yaml",
     "line 1 launches --config configs/x/other.yaml, not this file"),
    ("# python -m services.train bridge", "line 1 launches --config None, not this file"),
    ("# python -m services.train bridge infer --config configs/x/a.yaml", "more than one verb ['bridge', 'infer']"),
], ids=["empty-file", "no-command", "other-path", "no-config", "two-verbs"])
def test_header_problems_are_reported(first_line: str, message: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(message)):
        parse_header(first_line, "configs/x/a.yaml")


def test_header_with_overrides_and_placeholders() -> None:
    line = "# python -m services.extract --config configs/extract/a.yaml split=val num_shards=8 predictions=..."
    expected = LaunchCommand("extract", None, ["split=val", "num_shards=8"], ["predictions"])
    assert parse_header(line, "configs/extract/a.yaml") == expected


@dataclass
class _Optimizer:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class _TinyJob:
    name: str = "tiny"
    optimizer: _Optimizer = field(default_factory=_Optimizer)
    extra: dict[str, int] = field(default_factory=dict)


def test_unknown_key_lists_the_valid_keys(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: t\noptimizer:\n  lr: 0.1\n  stpes: 5\n")
    expected = "unknown key optimizer.stpes; fix: did you mean optimizer.steps? valid keys under optimizer: lr, steps"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(_TinyJob, path)
    path.write_text("name: t\n")
    with pytest.raises(ConfigError, match=re.escape("unknown key nmae; fix: did you mean name? valid keys: extra, name, "
                                                    "optimizer")):
        load_config(_TinyJob, path, ["nmae=x"])
    assert load_config(_TinyJob, path, ["optimizer.steps=3"]) == _TinyJob("t", _Optimizer(1e-3, 3))


def test_placeholder_keys_must_exist() -> None:
    assert_key_exists(_TinyJob, "optimizer.lr", "a.yaml")
    assert_key_exists(_TinyJob, "extra.anything", "a.yaml")
    with pytest.raises(AssertionError, match=r"'lrr' is not one of \['lr', 'steps'\]"):
        assert_key_exists(_TinyJob, "optimizer.lrr", "a.yaml")
    with pytest.raises(AssertionError, match="sets name.sub=..., but sub is not a field"):
        assert_key_exists(_TinyJob, "name.sub", "a.yaml")
