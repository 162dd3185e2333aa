"""Hostile inputs to the command line, the config loader and the evaluator: one line each, nothing overwritten.

Every case runs the real entry point (services.evaluate's main) and checks, with tests/hostile.py: the exit status,
one `evaluate <verb>: error: ...; fix: ...` line naming the file or place, no traceback, earlier outputs unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.evaluate.__main__ import main
from tests.hostile import check, error_line, on_small_disk, run, snapshot
from tests.unit.evaluate.conftest import VAL_SAMPLE

CFG = "configs/evaluate/default.yaml"
CANARY = "CANARY-Wq7xZ-first-line-of-a-private-file"


@pytest.fixture
def preds(tmp_path, val_split, rows_for, write_jsonl) -> Path:
    (tmp_path / "run").mkdir()
    return write_jsonl(tmp_path / "run" / "predictions.jsonl", rows_for(val_split, scores="oracle"))


def base(preds: Path, *extra: str) -> list[str]:
    return ["--config", CFG, f"predictions={preds}", f"data={VAL_SAMPLE}", "dense=null", "images=null",
            "bertscore.enabled=false", "bootstrap.samples=20", "plots=false", *extra]


# --- the command line and the config loader -------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "mentions"), [
    (["--config", CFG, "bertscore.modell=x"], ["unknown key bertscore.modell", "did you mean bertscore.model"]),
    (["--config", CFG, "plots"], ["unexpected argument 'plots'", "key=value"]),
    (["--config", CFG, "bootstrap.samples=many"], ["bootstrap.samples: expected int", "bootstrap.samples=<int>"]),
    (["--config", CFG, "expect_rounds=first"], ["'first' is not one of ['all', 'last']"]),
    (["--config"], ["--config needs a path"]),
    (["--config", "configs/evaluate/absent.yaml"], ["configs/evaluate/absent.yaml does not exist"]),
    (["--config", CFG, "--verbose"], ["unknown option --verbose"]),
    (["evaluat", "--config", CFG], ["unknown verb 'evaluat'", "evaluate, compare"]),
    (["--config", CFG, "bertscore=3"], ["bertscore: expected a mapping"]),
    (["--config", CFG, "plots=1", "plots.x=2"], ["conflicts with an earlier override of plots"]),
])
def test_command_line_mistakes(capsys, argv, mentions):
    prog = "evaluate" if argv[0] == "evaluat" else "evaluate evaluate"
    check(capsys, main, argv, prog, *mentions)


@pytest.mark.parametrize(("text", "mentions"), [
    ("", ["holds no settings"]),
    ("- a\n- b\n", ["top level must be a mapping"]),
    ("predictions: [unclosed\n", ["not valid YAML at line"]),
    ("checkpoints_root: x\n", ["unknown key checkpoints_root"]),
])
def test_bad_config_files(tmp_path, capsys, text, mentions):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    check(capsys, main, ["--config", str(path)], "evaluate evaluate", str(path), *mentions)


def test_a_private_file_given_as_config_is_never_echoed(tmp_path, capsys):
    secret = tmp_path / "shadow"
    secret.write_text(f"root:{CANARY}:19000:0:99999:7:::\n")
    line = check(capsys, main, ["--config", str(secret)], "evaluate evaluate", str(secret))
    assert CANARY not in line


def test_required_settings_are_named(capsys, tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("plots: false\n")
    check(capsys, main, ["--config", str(path)], "evaluate evaluate", "predictions is required", "predictions=<value>")


# --- predictions files ------------------------------------------------------------------------------------------
def test_missing_predictions_file(capsys, tmp_path):
    check(capsys, main, base(tmp_path / "nope.jsonl"), "evaluate evaluate", "nope.jsonl")


def test_a_private_file_given_as_predictions_is_never_echoed(capsys, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text(f"root:{CANARY}:19000:0:99999:7:::\n")
    line = check(capsys, main, base(secret), "evaluate evaluate", f"{secret}:1", "not a JSON object line")
    assert CANARY not in line


def test_a_binary_file_given_as_predictions(capsys, tmp_path):
    blob = tmp_path / "image.png"
    blob.write_bytes(bytes(range(256)) * 64)
    check(capsys, main, base(blob), "evaluate evaluate", str(blob))


@pytest.mark.slow  # a fresh process of the service
def test_a_huge_line_is_refused_without_reading_it_all(tmp_path):
    """50 MB without a newline: refused after 1 MiB; the process stays small (it once took 3.4 GB)."""
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as f:
        f.write(b'{"image_id": 1, "round_id": 1, "answer": "' + b"x" * (50 << 20) + b'"}\n')
    code = ("import resource, sys; from services.evaluate.__main__ import main; code = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")
    proc = run("evaluate", ["-c", code, *base(huge)])
    assert proc.returncode == 2, proc.stderr
    error_line(proc.stderr.rsplit("\n", 2)[0], "evaluate evaluate", f"{huge}:1", "longer than 1 MiB")
    peak_kib = int(proc.stderr.strip().splitlines()[-1])  # ru_maxrss of the evaluator process
    assert peak_kib < 1_500_000, f"peak memory {peak_kib} KiB"


@pytest.mark.parametrize(("mutate", "mentions"), [
    (lambda rows: rows + [rows[0]], ["duplicate image_id"]),
    (lambda rows: [{**rows[0], "scores": rows[0]["scores"][:7]}] + rows[1:], ["scores has 7 entries"]),
    (lambda rows: [{**rows[0], "round_id": 0}] + rows[1:], ["round_id 0 must be >= 1"]),
    (lambda rows: [{k: v for k, v in rows[0].items() if k != "answer"}] + rows[1:], ["missing 'answer'"]),
    (lambda rows: rows[:-3], ["no prediction"]),
    (lambda rows: [{**rows[0], "image_id": 999999999}] + rows[1:], ["999999999"]),
])
def test_malformed_predictions(capsys, tmp_path, val_split, rows_for, write_jsonl, mutate, mentions):
    path = write_jsonl(tmp_path / "p.jsonl", mutate(rows_for(val_split, scores="random")))
    check(capsys, main, base(path), "evaluate evaluate", "p.jsonl", *mentions)


def test_missing_data_and_dense_files(capsys, preds, tmp_path):
    check(capsys, main, base(preds, f"data={tmp_path / 'val.json'}"), "evaluate evaluate", "val.json")
    check(capsys, main, base(preds, f"dense={tmp_path / 'dense.json'}"), "evaluate evaluate", "dense.json")


# --- outputs: never into another job's folder, never replaced silently ---------------------------------------------
def test_out_in_a_training_run_folder_is_refused(capsys, preds):
    run_dir = preds.parent
    (run_dir / "config.yaml").write_text("run: demo  # the training run's resolved config\n")
    before = snapshot(run_dir)
    check(capsys, main, base(preds, f"out={run_dir}"), "evaluate evaluate", "holds files of another job",
          "config.yaml")
    assert snapshot(run_dir) == before


def test_an_earlier_evaluation_is_kept_unless_overwrite(capsys, preds, tmp_path, val_split, rows_for, write_jsonl):
    assert main(base(preds)) == 0
    out = preds.parent / "eval"
    capsys.readouterr()
    assert main(base(preds)) == 0  # the same inputs: up to date, nothing rewritten
    before = snapshot(out)
    write_jsonl(preds, rows_for(val_split, scores="random"))
    check(capsys, main, base(preds), "evaluate evaluate", "holds an evaluation of other predictions",
          "overwrite=true")
    assert snapshot(out) == before
    assert main(base(preds, "overwrite=true")) == 0
    assert json.loads((out / "report.json").read_text())["headline"]["r@1"]["value"] < 1.0


@pytest.mark.slow  # a fresh process of the service
def test_a_full_disk_is_one_line_and_leaves_no_half_report(preds, tmp_path):
    out = tmp_path / "small"
    on_small_disk("evaluate", ["-m", "services.evaluate", *base(preds, f"out={out}", "plots=true")], out,
                  "evaluate evaluate", size="16k")


@pytest.mark.slow  # a fresh process of the service
def test_a_read_only_folder_is_one_line(preds, tmp_path):
    out = tmp_path / "ro"
    on_small_disk("evaluate", ["-m", "services.evaluate", *base(preds, f"out={out / 'eval'}")], out,
                  "evaluate evaluate", read_only=True)


# --- compare ----------------------------------------------------------------------------------------------------------
def test_compare_needs_two_finished_evaluations(capsys, tmp_path, preds):
    check(capsys, main, ["compare", f"runs=[{tmp_path}]"], "evaluate compare", "two or more evaluation folders")
    check(capsys, main, ["compare", f"runs=[{tmp_path},{tmp_path}]"], "evaluate compare", "report.json")
    check(capsys, main, ["compare", "runs=x"], "evaluate compare", "runs: expected a list")
