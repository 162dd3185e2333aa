"""Hostile inputs to the cluster launcher: nothing a config or an override says can become a line of a script.

A newline in a folder, a partition or an override once became a command the rendered sbatch script ran. Now every
value is quoted or refused when the config loads (one line with the fix, nothing written), and every rendered script
is parsed by bash before it is written out.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from services.cluster.__main__ import main
from tests.hostile import check, snapshot

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def job(tmp_path) -> list[str]:
    path = tmp_path / "cluster.yaml"
    path.write_text("stage:\n  service: extract\n  config: configs/extract/cpu_default.yaml\n"
                    f"  overrides: {{out_root: {tmp_path / 'emb'}}}\n"
                    f"cluster:\n  num_shards: 2\n  logs_dir: {tmp_path / 'logs'}\n")
    return ["--config", str(path)]


@pytest.mark.parametrize(("override", "mentions"), [
    ("cluster.logs_dir=logs\ntouch /tmp/pwned", ["cluster.logs_dir holds a control character"]),
    ("out=sbatch\ntouch /tmp/pwned", ["out holds a control character"]),
    ("cluster.job.partition=gpu\n#SBATCH --x", ["resources.partition holds a control character"]),
    ("cluster.job.partition=gpu normal", ["resources.partition='gpu normal' holds a space"]),
    ("cluster.job.account=a\rb", ["resources.account holds a control character"]),
    ("stage.overrides.split=val\nrm -rf ~", ["stage.overrides.split holds a control character"]),
    ("cluster.python=/usr/bin/python\n", ["cluster.python holds a control character"]),
    ("cluster.binds=[a\nb]", ["cluster.binds holds a control character"]),
    ("cluster.logs_dir=my logs", ["cluster.logs_dir='my logs' holds a space"]),
])
def test_control_characters_and_spaces_are_refused_before_anything_is_written(capsys, tmp_path, job, override,
                                                                             mentions):
    before = snapshot(tmp_path)
    line = check(capsys, main, ["render", *job, override, f"out={tmp_path / 'sbatch'}"]
                 if not override.startswith("out=") else ["render", *job, override], "cluster render", *mentions)
    assert "touch /tmp/pwned" not in line and "rm -rf" not in line  # the value itself is not echoed
    assert snapshot(tmp_path) == before  # no script, no log folder


@pytest.mark.parametrize("payload", ["$(touch {marker})", "`touch {marker}`", "x'; touch {marker}; '",
                                     "a;touch {marker}", "a && touch {marker}"])
def test_shell_syntax_in_an_override_stays_a_literal_value(capsys, tmp_path, job, payload):
    marker = tmp_path / "pwned"
    value = payload.format(marker=marker)
    assert main(["render", *job, f"stage.overrides.data.image_root={value}", f"out={tmp_path / 'sbatch'}"]) == 0
    capsys.readouterr()
    for script in (tmp_path / "sbatch").glob("*.sbatch"):
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
        # run the script's command line through bash with the command replaced by printf: the words it would pass
        text = script.read_text()
        assert f"data.image_root={value}" not in text.replace("'", "") or "'" in text
    assert not marker.exists()


def test_the_train_script_never_expands_the_command_inside_quotes(capsys, tmp_path):
    """The train template once echoed "{{command}}" inside double quotes: $(...) in an override ran there."""
    marker = tmp_path / "pwned"
    path = tmp_path / "train.yaml"
    path.write_text("stage:\n  service: train\n  verb: bridge\n  config: configs/train/bridge_demo.yaml\n"
                    f"  overrides: {{run: '$(touch {marker})'}}\ncluster:\n  logs_dir: {tmp_path / 'logs'}\n")
    code = main(["render", "--config", str(path), f"out={tmp_path / 'sbatch'}"])
    out, err = capsys.readouterr()
    if code == 2:  # the run name is refused at load (it becomes a folder name): also a safe outcome
        assert "run=" in err and not marker.exists()
        return
    script = (tmp_path / "sbatch" / "train.sbatch").read_text()
    echo = next(line for line in script.splitlines() if line.startswith("echo"))
    assert "$(touch" not in echo  # the echo prints ${command[*]}, never the raw text
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("hostname", "scontrol"):
        (fake / tool).write_text("#!/bin/sh\necho fake\n")
        (fake / tool).chmod(0o755)
    subprocess.run(["bash", "-c", f'PATH={fake}:$PATH; eval "$(grep -E "^(restarts|command|resume)=" '
                                  f'{tmp_path / "sbatch" / "train.sbatch"})"; echo "${{command[*]}}"'],
                   check=True, capture_output=True)
    assert not marker.exists()


def test_unknown_stage_and_verb(capsys, job):
    check(capsys, main, ["submit", *job, "stage.service=trian", "dry_run=true"], "cluster submit",
          "'trian' is not one of")
    check(capsys, main, ["submit", *job, "stage.verb=embed", "dry_run=true"], "cluster submit",
          "stage.verb='embed' is not a verb of services.extract")
