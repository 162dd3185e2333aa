"""report.json (everything, machine-readable) and report.md (the tables a person reads first)."""
from __future__ import annotations

import json
import os
from pathlib import Path

REPORT_FORMAT = "vdmem-eval-report/1"
# Order and labels of the headline metrics everywhere (report.md, compare tables, plots).
METRIC_LABELS = {
    "bertscore_f1": "BERTScore F1", "bertscore_p": "BERTScore P", "bertscore_r": "BERTScore R",
    "bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "sacrebleu": "sacreBLEU",
    "rouge_l": "ROUGE-L", "meteor": "METEOR", "cider_d": "CIDEr-D",
    "r@1": "R@1", "r@5": "R@5", "r@10": "R@10", "mrr": "MRR", "mean_rank": "Mean rank", "ndcg": "NDCG",
}
TEXT_METRICS = [m for m in METRIC_LABELS if m not in ("r@1", "r@5", "r@10", "mrr", "mean_rank", "ndcg", "sacrebleu")]
RANK_METRICS = ["r@1", "r@5", "r@10", "mrr", "mean_rank"]
LOWER_IS_BETTER = {"mean_rank"}


def label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def fmt(value: float | None, metric: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if metric in ("mean_rank", "cider_d") else f"{value:.4f}"


def write_json(path: Path, obj: dict) -> None:
    """Atomic write so a reader never sees half a report."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _ci(ci: list[float] | None, metric: str) -> str:
    return "–" if not ci else f"{fmt(ci[0], metric)} – {fmt(ci[1], metric)}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _group_table(title: str, groups: dict[str, dict], metrics: list[str], key_name: str) -> list[str]:
    if not groups:
        return []
    present = [m for m in metrics if any(g.get(m) is not None for g in groups.values())]
    rows = [[k] + [fmt(g.get(m), m) for m in present] + [str(g.get("n", ""))] for k, g in groups.items()]
    return [f"### {title}", "", *_table([key_name, *map(label, present), "rounds"], rows), ""]


def render_markdown(report: dict) -> str:
    """The human-readable report: headline with CIs, counts and notes, breakdowns, then how it was measured."""
    c = report["counts"]
    out = [f"# Evaluation report: {report['run']}", "",
           f"Predictions `{report['predictions']}` against `{report['data']}` (split {report['split']})"
           + (f", dense `{report['dense']}`" if report.get("dense") else "")
           + f"; evaluator config {report['config_hash']}.",
           "", "## Headline", ""]
    ci_pct = int(round(report["bootstrap"]["confidence"] * 100))
    rows = [[label(m), fmt(h["value"], m), _ci(h.get("ci"), m), str(h.get("n", ""))]
            for m, h in report["headline"].items()]
    out += _table(["metric", "value", f"{ci_pct}% bootstrap CI", "rounds"], rows) + [""]
    out += ["## Counts", "", *_table(["what", "count"], [[k.replace("_", " "), str(v)] for k, v in c.items()]), ""]
    if report["notes"]:
        out += ["## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    out += ["## Per round", ""]
    out += _group_table("Generated answers", report["per_round"].get("text", {}), TEXT_METRICS, "round")
    out += _group_table("Ranking", report["per_round"].get("ranking", {}), RANK_METRICS, "round")
    out += _group_table("NDCG (dense rounds)", report["per_round"].get("ndcg", {}), ["ndcg"], "round")
    if report.get("per_kind"):
        out += ["## Per question kind", ""]
        out += _group_table("Generated answers", report["per_kind"].get("text", {}), TEXT_METRICS, "kind")
        out += _group_table("Ranking", report["per_kind"].get("ranking", {}), RANK_METRICS, "kind")
        out += _group_table("NDCG (dense rounds)", report["per_kind"].get("ndcg", {}), ["ndcg"], "kind")
    out += ["## How each figure was computed", ""]
    for name, how in report["methods"].items():
        if isinstance(how, dict):
            how = "; ".join(f"{k}={v}" for k, v in how.items())
        out.append(f"- **{name}**: {how}")
    if report.get("dialogs_html"):
        out += ["", "## Dialogs", "",
                f"Every dialog with its pictures, predictions, ranks and reminders, filterable by question kind and "
                f"errors: [{report['dialogs_html']}]({report['dialogs_html']})"]
    if report.get("plots"):
        out += ["", "## Plots", "", *[f"![{p}]({p})" for p in report["plots"]]]
    return "\n".join(out) + "\n"
