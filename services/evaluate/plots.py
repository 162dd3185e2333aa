"""PNG plots of a report: metrics per round, metrics per question kind, and run-vs-run bars (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

from services.evaluate.report import RANK_METRICS, TEXT_METRICS, label

# Metrics on a 0..1 scale that share one axis; mean rank and CIDEr-D (0..10) get their own panels.
PER_ROUND_TEXT = ["bertscore_f1", "rouge_l", "meteor", "bleu1", "bleu4"]
PER_ROUND_RANK = ["r@1", "r@5", "r@10", "mrr", "ndcg"]
UNIT_SCALE = [m for m in TEXT_METRICS + RANK_METRICS + ["ndcg", "sacrebleu"] if m not in ("mean_rank", "cider_d")]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display in containers / CI
    import matplotlib.pyplot as plt

    return plt


def _series(groups: dict[str, dict], metric: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for key, row in groups.items():
        if row.get(metric) is not None:
            xs.append(int(key))
            ys.append(row[metric])
    return xs, ys


def plot_per_round(report: dict, out_dir: Path) -> list[str]:
    """per_round.png: one panel for generated-answer metrics, one for ranking metrics (NDCG on dense rounds)."""
    per_round = report["per_round"]
    panels = [("Generated answers", PER_ROUND_TEXT, [per_round.get("text", {})]),
              ("Ranking", PER_ROUND_RANK, [per_round.get("ranking", {}), per_round.get("ndcg", {})])]
    panels = [p for p in panels if any(g for g in p[2])]
    if not panels:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, metrics, groups) in zip(axes[0], panels):
        for metric in metrics:
            for g in groups:
                xs, ys = _series(g, metric)
                if xs:
                    ax.plot(xs, ys, marker="o", label=label(metric))
        ax.set(title=title, xlabel="round", ylabel="score", ylim=(0, 1.02))
        ax.set_xticks(sorted({int(k) for g in groups for k in g}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['run']}: metrics per round")
    fig.tight_layout()
    fig.savefig(out_dir / "per_round.png", dpi=100)
    plt.close(fig)
    return ["per_round.png"]


def _grouped_bars(ax, names: list[str], metrics: list[str], values: list[list[float | None]]) -> None:
    """Bars of `values[i][j]` (series i = names[i], metric j) grouped by metric."""
    width = 0.8 / max(1, len(names))
    for i, (name, row) in enumerate(zip(names, values)):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(metrics))]
        ax.bar(xs, [0.0 if v is None else v for v in row], width=width, label=name)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([label(m) for m in metrics], rotation=30, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def plot_per_kind(report: dict, out_dir: Path) -> list[str]:
    """per_kind.png: unit-scale metrics side by side for "current" and "memory" questions."""
    per_kind = report.get("per_kind") or {}
    merged: dict[str, dict] = {}
    for family in ("text", "ranking", "ndcg"):
        for kind, row in per_kind.get(family, {}).items():
            merged.setdefault(kind, {}).update({k: v for k, v in row.items() if k != "n"})
    metrics = [m for m in UNIT_SCALE if any(row.get(m) is not None for row in merged.values())]
    if not merged or not metrics:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, len(metrics) * 0.8), 4))
    kinds = sorted(merged)
    _grouped_bars(ax, kinds, metrics, [[merged[k].get(m) for m in metrics] for k in kinds])
    ax.set(title=f"{report['run']}: metrics per question kind", ylim=(0, 1.02))
    fig.tight_layout()
    fig.savefig(out_dir / "per_kind.png", dpi=100)
    plt.close(fig)
    return ["per_kind.png"]


def plot_compare(names: list[str], metrics: list[str], values: list[list[float | None]], path: Path) -> None:
    """Run-vs-run bars: unit-scale metrics in one panel, mean rank / CIDEr-D in a second one."""
    unit = [m for m in metrics if m in UNIT_SCALE]
    other = [m for m in metrics if m not in UNIT_SCALE]
    panels = [(p, ms) for p, ms in (("0..1 metrics", unit), ("other scales", other)) if ms]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6, 0.8 * len(metrics) + 4), 4), squeeze=False,
                             gridspec_kw={"width_ratios": [len(ms) for _, ms in panels]})
    for ax, (title, ms) in zip(axes[0], panels):
        cols = [metrics.index(m) for m in ms]
        _grouped_bars(ax, names, ms, [[row[c] for c in cols] for row in values])
        ax.set_title(title)
    fig.suptitle("run vs run")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
