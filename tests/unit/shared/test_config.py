"""shared/config.py: YAML + overrides -> typed dataclasses, with errors that name the key."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from shared.cli import parse_argv
from shared.config import REQUIRED, ConfigError, config_hash, load_config, parse_overrides, save_config

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Optim:
    lr: float = 1e-3
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup: Optional[int] = None
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclass
class Job:
    name: str = "demo"
    steps: int = 10
    fast: bool = False
    optim: Optim = field(default_factory=Optim)
    tags: list[str] = field(default_factory=list)
    out: Path = Path("outputs")
    eval_optim: Optim | None = None
    level: Literal[1, 2] = 1


@dataclass
class Required:
    path: str


def write(tmp_path, text, name="job.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_yaml_then_overrides_later_wins(tmp_path):
    path = write(tmp_path, "name: run1\nsteps: 5\noptim:\n  lr: 1e-4\n  warmup: 100\ntags: [a, b]\n")
    cfg = load_config(Job, path, ["steps=7", "optim.schedule=constant", "optim.betas=[0.8, 0.9]"])
    assert cfg == Job(name="run1", steps=7, optim=Optim(lr=1e-4, schedule="constant", warmup=100, betas=(0.8, 0.9)),
                      tags=["a", "b"])
    assert isinstance(cfg.optim.lr, float) and isinstance(cfg.optim.betas, tuple)  # "1e-4" is a str in YAML 1.1
    assert load_config(Job) == Job()


def test_optional_fields_and_optional_nested_dataclass():
    assert load_config(Job, None, ["optim.warmup=null"]).optim.warmup is None
    assert load_config(Job, None, ["optim.warmup=3"]).optim.warmup == 3
    cfg = load_config(Job, None, ["eval_optim.lr=0.5"])  # a None default filled in from its own defaults
    assert cfg.eval_optim == Optim(lr=0.5)
    with pytest.raises(ConfigError, match=r"optim.warmup: expected int, got 'soon' \(str\)"):
        load_config(Job, None, ["optim.warmup=soon"])


@pytest.mark.parametrize("override, message", [
    ("steps=ten", r"steps: expected int, got 'ten' \(str\)"),
    ("steps=1.5", r"steps: expected int, got 1.5 \(float\)"),
    ("fast=1", r"fast: expected bool, got 1 \(int\)"),
    ("optim.lr=true", r"optim.lr: expected float, got True \(bool\)"),
    ("optim.lr=fast", r"optim.lr: expected float, got 'fast'"),
    ("optim=3", r"optim: expected a mapping of \['betas', 'lr', 'schedule', 'warmup'\], got 3"),
    ("tags=x", r"tags: expected a list, got 'x'"),
    ("optim.betas=[0.9, x]", r"optim.betas\[1\]: expected float, got 'x'"),
    ("out=[1]", r"out: expected a path, got \[1\]"),
])
def test_type_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Job, None, [override])


def test_a_string_setting_takes_the_command_line_text_verbatim(tmp_path):
    """YAML would read `yes` as a bool, `007` as 7 and `Q: a\nA:` as a mapping; a str setting wants the text."""
    assert load_config(Job, None, ["name=yes"]).name == "yes"
    assert load_config(Job, None, ["name=007"]).name == "007"
    assert load_config(Job, None, ["name=Q: hi\\nA:"]).name == "Q: hi\\nA:"
    assert load_config(Job, None, ["eval_optim=null"]).eval_optim is None  # non-str settings are still parsed
    with pytest.raises(ConfigError, match=r"name: expected str, got True \(bool\)"):  # in a YAML file, yes is a bool
        load_config(Job, write(tmp_path, "name: yes\n"))


def test_literal_choices_are_listed():
    with pytest.raises(ConfigError, match=r"optim.schedule: 'linear' is not one of \['cosine', 'constant'\]"):
        load_config(Job, None, ["optim.schedule=linear"])
    assert load_config(Job, None, ["level=2"]).level == 2
    with pytest.raises(ConfigError, match=r"level: True is not one of \[1, 2\]"):  # True == 1 in Python
        load_config(Job, None, ["level=true"])


def test_unknown_keys_list_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"job.yaml: unknown key stpes; fix: did you mean steps\? valid keys: "
                                          r"eval_optim, fast, level, name, optim, out, steps, tags"):
        load_config(Job, write(tmp_path, "stpes: 3\n"))
    with pytest.raises(ConfigError, match=r"unknown key optim.rate; fix: valid keys under optim: betas, lr, schedule, "
                                          r"warmup"):
        load_config(Job, None, ["optim.rate=0.1"])


def test_retired_keys_of_saved_configs_load_and_only_those(tmp_path):
    """A config saved before a key was removed (MemoryConfig's prefilter_*) still loads; other unknown keys fail."""
    from shared.memory._config import MemoryConfig

    saved = write(tmp_path, "prefilter_dims: 96\nprefilter_shortlist: 20000\nhalf_life: 2.0\n")
    assert load_config(MemoryConfig, saved).half_life == 2.0
    with pytest.raises(ConfigError, match="unknown key prefilter_dimz"):
        load_config(MemoryConfig, write(tmp_path, "prefilter_dimz: 96\n"))


def test_file_problems_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; fix: the shipped ones are under configs/"):
        load_config(Job, tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Job, write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Job, write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="holds no settings"):  # an empty file is never meant: never all defaults
        load_config(Job, write(tmp_path, "# only a comment\n"))
    with pytest.raises(ConfigError, match="path"):
        load_config(Required)
    assert load_config(Required, None, ["path=x"]).path == "x"


@dataclass
class WithRequired:
    data: str = REQUIRED
    limit: int | None = None


def test_required_settings_are_named_when_missing():
    with pytest.raises(ConfigError, match=r"data is required; fix: set it in the YAML or on the command line: "
                                          r"data=<value>"):
        load_config(WithRequired)
    assert load_config(WithRequired, None, ["data=a.json"]).data == "a.json"
    assert load_config(WithRequired, check_required=False).data == REQUIRED  # --help shows the defaults


def test_path_fields_are_paths_and_save(tmp_path):
    cfg = load_config(Job, None, ["out=runs/a"])
    assert cfg.out == Path("runs/a")
    assert load_config(Job, save_config(cfg, tmp_path)).out == Path("runs/a")


def test_save_config_round_trip(tmp_path):
    cfg = load_config(Job, None, ["optim.warmup=5", "tags=[x]", "eval_optim.schedule=constant", "name=123"])
    assert cfg.name == "123"  # a number given for a str field is kept as text
    path = save_config(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    assert path.read_text().splitlines()[0] == f"# resolved config, hash {config_hash(cfg)}"
    again = load_config(Job, path)
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yaml"]  # no temp file left


def test_config_hash_is_stable_and_sensitive():
    cfg = Job()
    blob = json.dumps(asdict(cfg), sort_keys=True, default=str).encode()
    assert config_hash(cfg) == hashlib.sha256(blob).hexdigest()[:12]
    assert len(config_hash(cfg)) == 12 and config_hash(Job()) == config_hash(cfg)
    assert config_hash(load_config(Job, None, ["optim.lr=0.002"])) != config_hash(cfg)
    code = ("from tests.unit.shared.test_config import Job; from shared.config import config_hash; "
            "print(config_hash(Job()))")
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin"})
    assert other.stdout.strip() == config_hash(cfg)  # no dependence on hash randomisation or dict order


def test_argv_and_overrides():
    assert parse_argv(["--config", "c.yaml", "a.b=1", "x=y=z", "word"]) == \
        ("c.yaml", ["a.b=1", "x=y=z"], ["word"], False)
    assert parse_argv(["--config=c.yaml", "--help"]) == ("c.yaml", [], [], True)
    assert parse_argv([]) == (None, [], [], False)
    with pytest.raises(ConfigError, match="--config needs a path"):
        parse_argv(["--config"])
    with pytest.raises(ConfigError, match="unknown option --dry-run; fix: "):
        parse_argv(["--dry-run"])
    assert parse_overrides(["a.b=1", "a.c=[1, 2]", "d=", "e=x=y"]) == \
        {"a": {"b": "1", "c": "[1, 2]"}, "d": "", "e": "x=y"}  # the text; parsed against the setting's type
    with pytest.raises(ConfigError, match="not of the form"):
        parse_overrides(["=3"])
    with pytest.raises(ConfigError, match="conflicts with an earlier override of a"):
        parse_overrides(["a=1", "a.b=2"])
