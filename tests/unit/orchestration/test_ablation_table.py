"""docker/ablation_table.py: R@1 by kind per run from the evaluator's report.json, seed means and paired deltas
against the first variant, the gate's fire rate by kind from predictions.jsonl, times summed from times.tsv."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _split(path: Path) -> Path:
    rounds = [{"question": 0, "answer": 0, "answer_options": [0, 1], "gt_index": 0, "kind": "current"},
              {"question": 1, "answer": 1, "answer_options": [0, 1], "gt_index": 1, "kind": "memory",
               "evidence_round": 1}]
    doc = {"version": "1.0", "split": "val", "data": {"questions": ["what color is it?", "what was in the first "
                                                                    "picture?"], "answers": ["red", "circle"],
                                                       "num_options": 2,
                                                       "dialogs": [{"image_id": 5, "caption": "c", "dialog": rounds}]}}
    path.write_text(json.dumps(doc))
    return path


def _run(root: Path, name: str, current: float, memory: float, gate: list[bool] | None = None) -> Path:
    eval_dir = root / name / "eval"
    eval_dir.mkdir(parents=True)
    per_kind = {"ranking": {"current": {"r@1": current, "n": 1}, "memory": {"r@1": memory, "n": 1}}}
    headline = {"r@1": {"value": (current + memory) / 2}, "mrr": {"value": 0.5}}
    (eval_dir / "report.json").write_text(json.dumps({"format": "vdmem-eval-report/1", "headline": headline,
                                                      "per_kind": per_kind}))
    rows = [{"image_id": 5, "round_id": r, "answer": "x"} | ({} if gate is None else {"gate": gate[r - 1]})
            for r in (1, 2)]
    (root / name / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return eval_dir


def test_table_means_paired_deltas_fire_rates_and_times(tmp_path):
    evals = [_run(tmp_path, "ablation_none_300", 0.60, 0.40), _run(tmp_path, "ablation_none_s1_300", 0.62, 0.44),
             _run(tmp_path, "ablation_gated_300", 0.61, 0.70, [False, True]),
             _run(tmp_path, "ablation_gated_s1_300", 0.59, 0.60, [False, True])]
    times = tmp_path / "times.tsv"
    times.write_text("run\tstage\tseconds\nablation_gated_300\ttrain\t400\nablation_gated_300\ttrain\t20\n")
    done = subprocess.run([sys.executable, str(ROOT / "docker/ablation_table.py"), "--dialogs",
                          str(_split(tmp_path / "val.json")), "--times", str(times), *map(str, evals)],
                         cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    figures = dict(line.split(": ") for line in out.splitlines() if line.startswith("ablation_") and ": " in line)
    assert float(figures["ablation_none_memory_r1"]) == 0.42
    assert float(figures["ablation_gated_memory_r1_delta"]) == 0.23  # mean 0.65 vs 0.42
    assert float(figures["ablation_gated_current_r1_delta_s1"]) == -0.03  # paired with ablation_none_s1
    assert float(figures["ablation_gated_memory_r1_delta_s0"]) == 0.30
    row = next(line for line in out.splitlines() if line.startswith("| ablation_gated_300 |"))
    assert "| 0.00 / 1.00 | 420 |" in row  # fires on the memory round only; train time summed over invocations
    assert "| ablation_none_300 | 0 |" in out and "| gated (0,1) |" in out
