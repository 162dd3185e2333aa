"""The `make ablation` table: R@1 by question kind per run, the mean over seeds per variant, where the gate fired.

    python docker/ablation_table.py --dialogs data/demo/val.json --times outputs/ablation/times.tsv \
        outputs/ablation_none/eval outputs/ablation_gated/eval ...

Each argument is an evaluator folder (outputs/<run>/eval, run = ablation_<variant>[_s<seed>][_<steps>]); R@1 per
kind comes from its report.json (`per_kind`), the gate's fire rate per kind from the run's predictions.jsonl
("gate" rows, prompt.reminder=gated) and the dialogs' `kind`, times from docker/ablation.sh's times.tsv (seconds
summed over invocations). Prints markdown, then `<figure>: <number>` lines (variant means, deltas vs the first).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.predictions import read_predictions  # noqa: E402
from shared.visdial import load_visdial  # noqa: E402

RUN = re.compile(r"^ablation_(?P<variant>[a-z]+)(?:_s(?P<seed>\d+))?(?:_(?P<steps>\d+))?$")
KINDS = ("current", "memory")


def _r1(report: dict, kind: str | None) -> float | None:
    if kind is None:
        return (report["headline"].get("r@1") or {}).get("value")
    return ((report.get("per_kind") or {}).get("ranking", {}).get(kind) or {}).get("r@1")


def run_row(eval_dir: Path, kinds: dict[tuple[int, int], str], times: dict[tuple[str, str], int]) -> dict:
    run = eval_dir.resolve().parent.name
    match = RUN.match(run)
    report = json.loads((eval_dir / "report.json").read_text())
    row = {"run": run, "variant": match["variant"] if match else run, "seed": int((match and match["seed"]) or 0),
           "r1": {k: _r1(report, k) for k in KINDS}, "r1_all": _r1(report, None),
           "n": {k: ((report.get("per_kind") or {}).get("ranking", {}).get(k) or {}).get("n") for k in KINDS},
           "mrr": (report["headline"].get("mrr") or {}).get("value"),
           "ndcg": (report["headline"].get("ndcg") or {}).get("value"),
           "train_s": times.get((run, "train")), "infer_s": times.get((run, "infer")), "fire": {}}
    predictions = eval_dir.resolve().parent / "predictions.jsonl"
    if predictions.is_file():
        fired, total = defaultdict(int), defaultdict(int)
        for r in read_predictions(predictions):
            if "gate" in r:
                kind = kinds.get((r["image_id"], r["round_id"]), "?")
                total[kind] += 1
                fired[kind] += bool(r["gate"])
        row["fire"] = {k: fired[k] / total[k] for k in total}
    return row


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", nargs="+", type=Path)
    parser.add_argument("--dialogs", default="data/demo/val.json")
    parser.add_argument("--times", type=Path, default=None)
    args = parser.parse_args(argv)
    kinds = {(d.image_id, r.round_id): r.kind for d in load_visdial(args.dialogs).dialogs for r in d.rounds}
    times: dict[tuple[str, str], int] = defaultdict(int)
    if args.times and args.times.is_file():
        with open(args.times, newline="") as f:
            for line in csv.DictReader(f, delimiter="\t"):
                times[(line["run"], line["stage"])] += int(line["seconds"])
    rows = [run_row(e, kinds, times) for e in args.evals]
    n = rows[0]["n"]
    print(f"| run | seed | R@1 current ({n['current']}) | R@1 memory ({n['memory']}) | R@1 all | MRR | NDCG | "
          "gate fires (current / memory) | train s | infer s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fire = " / ".join(fmt(r["fire"].get(k), 2) for k in KINDS) if r["fire"] else "–"
        print(f"| {r['run']} | {r['seed']} | {fmt(r['r1']['current'])} | {fmt(r['r1']['memory'])} | "
              f"{fmt(r['r1_all'])} | {fmt(r['mrr'])} | {fmt(r['ndcg'])} | {fire} | {r['train_s'] or '–'} | "
              f"{r['infer_s'] or '–'} |")
    variants: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        variants[r["variant"]].append(r)
    base = rows[0]["variant"]
    means = {v: {k: mean([r["r1"][k] for r in rs]) for k in KINDS} for v, rs in variants.items()}
    print(f"\n| variant (seeds) | mean R@1 current | mean R@1 memory | Δ current vs {base} | Δ memory vs {base} |")
    print("|---|---|---|---|---|")
    for v, rs in variants.items():
        delta = {k: None if means[v][k] is None or means[base][k] is None else means[v][k] - means[base][k]
                 for k in KINDS}
        seeds = ",".join(str(r["seed"]) for r in rs)
        print(f"| {v} ({seeds}) | {fmt(means[v]['current'])} | {fmt(means[v]['memory'])} | "
              f"{fmt(delta['current'], 3)} | {fmt(delta['memory'], 3)} |")
    print()
    by_seed = {r["seed"]: r for r in variants[base]}
    for v in variants:
        for k in KINDS:
            print(f"ablation_{v}_{k}_r1: {fmt(means[v][k], 4)}")
            if v != base and means[v][k] is not None and means[base][k] is not None:
                print(f"ablation_{v}_{k}_r1_delta: {means[v][k] - means[base][k]:.4f}")
            for r in variants[v] if v != base else []:  # the same seed of the baseline: a paired difference
                other = by_seed.get(r["seed"])
                if other is not None and r["r1"][k] is not None and other["r1"][k] is not None:
                    print(f"ablation_{v}_{k}_r1_delta_s{r['seed']}: {r['r1'][k] - other['r1'][k]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
