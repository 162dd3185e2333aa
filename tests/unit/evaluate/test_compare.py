"""`compare`: delta table (md + json) and run-vs-run bars from two finished evaluations."""
import json
from pathlib import Path

import pytest

from services.evaluate.__main__ import main
from services.evaluate.compare import CompareError, compare
from services.evaluate.config import BertScoreConfig, BootstrapConfig, CompareConfig, EvaluateConfig
from services.evaluate.evaluator import evaluate
from shared.config import ConfigError

VAL_SAMPLE = Path(__file__).resolve().parents[3] / "tests/assets/visdial_v1_real_sample/visdial_1.0_val.small.json"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, val_split, rows_for, write_jsonl):
    base = tmp_path_factory.mktemp("outputs")
    for name, scores in (("random", "random"), ("oracle", "oracle")):
        preds = write_jsonl(base / f"{name}.jsonl", rows_for(val_split, scores=scores))
        evaluate(EvaluateConfig(predictions=str(preds), data=str(VAL_SAMPLE), out=str(base / name / "eval"),
                                bertscore=BertScoreConfig(enabled=False), bootstrap=BootstrapConfig(samples=50),
                                plots=False))
    return base


def test_compare_cli_writes_delta_table_and_bars(two_runs, capsys):
    out = two_runs / "cmp"
    runs = [str(two_runs / "random" / "eval"), str(two_runs / "oracle" / "eval")]
    assert main(["compare", f"runs=[{runs[0]},{runs[1]}]", f"out={out}"]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in result["runs"]] == ["random", "oracle"]
    r1 = result["metrics"]["r@1"]
    assert r1["values"][1] == 1.0 and r1["deltas"][1] == pytest.approx(1.0 - r1["values"][0])
    assert result["metrics"]["mean_rank"]["higher_is_better"] is False
    assert result["metrics"]["bleu1"]["deltas"][1] == pytest.approx(0.0)  # same answers in both runs
    md = (out / "compare.md").read_text()
    assert "| R@1 |" in md and "oracle − random" in md
    assert (out / "compare.png").stat().st_size > 0 and (out / "config.yaml").is_file()
    assert "compare.md" in capsys.readouterr().out


def test_default_out_folder_sits_beside_the_runs(two_runs):
    result = compare(CompareConfig(runs=[str(two_runs / "random" / "eval"), str(two_runs / "oracle" / "eval")]))
    assert Path(result["out"]) == (two_runs / "compare" / "random_vs_oracle").resolve()


def test_compare_needs_finished_evaluations(tmp_path, two_runs):
    with pytest.raises(CompareError, match="report.json: not found"):
        compare(CompareConfig(runs=[str(two_runs / "random" / "eval"), str(tmp_path)]))
    with pytest.raises(ConfigError, match="two or more evaluation folders"):
        compare(CompareConfig(runs=[str(two_runs / "random" / "eval")]))
