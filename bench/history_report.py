"""Figures of a rank-text run once the evaluator has scored it: per-condition headline metrics (the evaluator's),
ground-truth ranks per round (from the predictions), paired bootstrap differences, the per-round plot and the
markdown table (bench/history.py, make eval-history; docs/HISTORY.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.predictions import read_predictions
from shared.visdial import load_visdial

HEADLINE = ("mrr", "r@1", "r@5", "r@10", "mean_rank", "ndcg")


def gt_ranks(predictions: Path, split) -> dict[tuple[int, int], int]:
    """(image_id, round_id) -> rank of the ground-truth answer (1 = first) in each predictions row."""
    dialogs = split.dialog_by_image()
    out = {}
    for row in read_predictions(predictions, num_options=split.num_options):
        rnd = dialogs[int(row["image_id"])].rounds[int(row["round_id"]) - 1]
        if rnd.gt_index is not None:
            out[(int(row["image_id"]), int(row["round_id"]))] = int(row["ranks"][rnd.gt_index])
    return out


def metric_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    return 1.0 / ranks if metric == "mrr" else (ranks <= int(metric.split("@")[1])).astype(np.float64)


def paired_bootstrap(a: dict, b: dict, metric: str, samples: int = 10_000, seed: int = 0,
                     confidence: float = 0.95) -> tuple[float, float, float]:
    """metric(a) - metric(b) over the rounds both ranked, with a percentile interval from resampling whole dialogs
    (a dialog's rounds share their picture and history, so they are not independent draws); pairs stay paired."""
    keys = sorted(set(a) & set(b))
    diff = metric_values(np.array([a[k] for k in keys], float), metric) - \
        metric_values(np.array([b[k] for k in keys], float), metric)
    dialog_ids = sorted({k[0] for k in keys})
    index = {d: i for i, d in enumerate(dialog_ids)}
    owner = np.array([index[k[0]] for k in keys])
    sums = np.bincount(owner, weights=diff, minlength=len(dialog_ids))
    counts = np.bincount(owner, minlength=len(dialog_ids)).astype(float)
    draws = np.random.default_rng(seed).integers(0, len(dialog_ids), size=(samples, len(dialog_ids)))
    boot = sums[draws].sum(1) / counts[draws].sum(1)
    tail = (1 - confidence) / 2 * 100
    return float(diff.mean()), float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail))


def per_round(ranks: dict, metric: str = "mrr") -> dict[int, float]:
    by_round: dict[int, list[int]] = {}
    for (_, round_id), rank in ranks.items():
        by_round.setdefault(round_id, []).append(rank)
    return {r: float(metric_values(np.array(v, float), metric).mean()) for r, v in sorted(by_round.items())}


def collect(run_dir: Path) -> dict:
    """Everything the report needs from <run>/: context.json, each condition's eval/report.json and gt ranks."""
    context = json.loads((run_dir / "context.json").read_text())
    split = load_visdial(context["evaluate_data"])
    conditions = {}
    for name, info in context["conditions"].items():
        report = json.loads((run_dir / name / "eval" / "report.json").read_text())
        conditions[name] = {"headline": {m: report["headline"][m] for m in HEADLINE if m in report["headline"]},
                            "ranks": gt_ranks(Path(info["predictions"]), split),
                            "tokens": info["mean_prompt_tokens"], "description": info["description"],
                            "tokens_by_round": info["mean_prompt_tokens_by_round"]}
    return {"context": context, "conditions": conditions}


def plot_per_round(runs: dict[str, dict], path: Path) -> None:
    """MRR by round number (left) and mean prompt tokens by round number (right), one line per condition; one row
    of panels per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 3.6 * len(runs)), squeeze=False)
    for row, (model, data) in enumerate(runs.items()):
        for name, c in data["conditions"].items():
            mrr = per_round(c["ranks"])
            axes[row, 0].plot(list(mrr), list(mrr.values()), marker="o", label=name)
            tokens = {int(k): v for k, v in c["tokens_by_round"].items()}
            axes[row, 1].plot(list(tokens), list(tokens.values()), marker="o", label=name)
        rounds = len(next(iter(data["conditions"].values()))["ranks"])
        axes[row, 0].set(title=f"{model}: MRR by round ({rounds} rounds)", xlabel="round", ylabel="MRR")
        axes[row, 1].set(title=f"{model}: prompt tokens by round", xlabel="round", ylabel="mean prompt tokens")
        axes[row, 0].axhline(0.052, color="gray", linestyle=":", label="chance")
        axes[row, 0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt_ci(value: dict) -> str:
    ci = value.get("ci")
    return f"{value['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown(model: str, data: dict, diffs: dict) -> str:
    """The per-condition table of one model, with the paired reminder - full differences below it."""
    context = data["context"]
    lines = [f"### {model}: {context['dialogs']} dialogs, {context['rounds']} rounds, {context['lm']} "
             f"({context['dtype']})", "", context["text_only"], "",
             "| condition | what precedes the question | MRR [95% CI] | R@1 | R@5 | R@10 | mean rank | NDCG | "
             "prompt tokens |", "|---|---|---|---|---|---|---|---|---|"]
    for name, c in data["conditions"].items():
        h = c["headline"]
        cell = {m: (f"{h[m]['value']:.3f}" if m in h else "–") for m in HEADLINE}
        lines.append(f"| {name} | {c['description']} | {fmt_ci(h['mrr'])} | {cell['r@1']} | {cell['r@5']} | "
                     f"{cell['r@10']} | {h['mean_rank']['value']:.1f} | {cell['ndcg']} | {c['tokens']:.1f} |")
    for label, (delta, lo, hi) in diffs.items():
        lines.append(f"\n{label}: {delta:+.3f} (paired bootstrap over dialogs, 95% interval [{lo:+.3f}, {hi:+.3f}])")
    return "\n".join(lines) + "\n"
