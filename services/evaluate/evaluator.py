"""The evaluation job: predictions + VisDial split (+ dense relevances) -> report.json, report.md, plots, config."""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from services.evaluate.aggregate import ItemMetric, bootstrap_intervals, group_values
from services.evaluate.align import Aligned, align
from services.evaluate.compare import run_name
from services.evaluate.config import EvaluateConfig
from services.evaluate.dialogs_html import FILE_NAME as DIALOGS_HTML, check_images, write_dialogs_html
from services.evaluate.ranking import TIE_RULE, ndcg_from_ranks, retrieval_item_values
from services.evaluate.report import METRIC_LABELS, REPORT_FORMAT, render_markdown, write_json, write_text
from shared.config import ConfigError, config_hash, save_config
from shared.errors import InputError
from shared.files import sha256_file
from shared.predictions import PredictionError
from shared.visdial import load_dense, load_visdial

log = logging.getLogger(__name__)
NDCG_METHOD = ("VisDial definition: k = number of options with non-zero relevance, DCG@k = sum_p rel_p / log2(p+1) "
               "(linear gain) over the model's top k, divided by the ideal DCG@k; all-zero rounds are skipped")


class Scoreboard:
    """Collects populations of ItemMetrics into headline values, CIs and per-round / per-kind tables."""

    def __init__(self, cfg: EvaluateConfig, with_kinds: bool):
        self.cfg, self.with_kinds = cfg, with_kinds
        self.headline: dict[str, dict] = {}
        self.per_round: dict[str, dict] = {}
        self.per_kind: dict[str, dict] = {}

    def add(self, population: str, metrics: list[ItemMetric], rounds: np.ndarray, kinds: np.ndarray) -> None:
        b = self.cfg.bootstrap
        intervals = bootstrap_intervals(metrics, b.samples, b.confidence, b.seed)
        for m in metrics:
            ci = intervals.get(m.name)
            self.headline[m.name] = {"value": m.value(), "ci": list(ci) if ci else None, "n": len(m.stats)}
        self.per_round[population] = group_values(metrics, rounds)
        if self.with_kinds:
            self.per_kind[population] = group_values(metrics, kinds)

    def ordered_headline(self) -> dict[str, dict]:
        known = [m for m in METRIC_LABELS if m in self.headline]
        return {m: self.headline[m] for m in known + sorted(set(self.headline) - set(known))}


def _text_population(cfg: EvaluateConfig, a: Aligned, board: Scoreboard, methods: dict, notes: list[str]) -> int:
    has_ref = np.array([r is not None for r in a.reference], dtype=bool)
    if (~has_ref).any():
        notes.append(f"{int((~has_ref).sum())} round(s) have no ground-truth answer (the test split's open round): "
                     "excluded from the generated-answer metrics")
    if not has_ref.any() or not (cfg.text.enabled or cfg.bertscore.enabled):
        return 0
    hyps = [h for h, keep in zip(a.answer, has_ref) if keep]
    refs = [r for r in a.reference if r is not None]
    metrics: list[ItemMetric] = []
    if cfg.bertscore.enabled:
        from services.evaluate.bertscore import BertScoreRunner

        start = time.perf_counter()
        runner = BertScoreRunner(cfg.bertscore)
        p, r, f = runner.score(hyps, refs)
        metrics += [ItemMetric.mean_of("bertscore_p", p), ItemMetric.mean_of("bertscore_r", r),
                    ItemMetric.mean_of("bertscore_f1", f)]
        methods["bertscore"] = runner.describe()
        notes.append(f"BERTScore: {runner.resolved.model}, layer {runner.resolved.num_layers}, {runner.resolved.note} "
                     f"(bert-score {methods['bertscore']['library_version']})")
        log.info("BERTScore over %d rounds in %.1f s", len(hyps), time.perf_counter() - start)
    if cfg.text.enabled:
        from services.evaluate import textmetrics as tm

        start = time.perf_counter()
        metrics += tm.text_metrics(hyps, refs, cfg.text.bleu_smoothing_epsilon, cfg.text.rouge_use_stemmer)
        sacre = tm.sacrebleu_score(hyps, refs, cfg.text.sacrebleu_lowercase)
        methods |= tm.text_method_notes(cfg.text.bleu_smoothing_epsilon, cfg.text.rouge_use_stemmer)
        methods["sacrebleu"] += f"; signature {sacre['signature']}"
        methods["text_libraries"] = tm.library_versions()
        mean_len = float(np.mean([len(tm.tokenize(r)) for r in refs]))
        if mean_len < 4:
            notes.append(f"references average {mean_len:.1f} tokens: most rounds have no 2-4-grams, so BLEU-2..4 and "
                         "sacreBLEU sit near 0 whatever the model does; BLEU-1, ROUGE-L and BERTScore are informative")
        log.info("BLEU/ROUGE-L/METEOR/CIDEr-D over %d rounds in %.1f s", len(hyps), time.perf_counter() - start)
    board.add("text", metrics, a.round_id[has_ref], a.kind[has_ref])
    if cfg.text.enabled:
        board.headline["sacrebleu"] = {"value": sacre["score"], "ci": None, "n": len(hyps)}
    return len(hyps)


def _ranking_population(a: Aligned, board: Scoreboard, notes: list[str]) -> int:
    if a.rankings is None:
        notes.append("the predictions carry no scores/ranks: ranking metrics (R@k, MRR, mean rank, NDCG) not computed")
        return 0
    gradable = a.ranked & (a.gt_index >= 0)
    if (a.ranked & ~gradable).any():
        notes.append(f"{int((a.ranked & ~gradable).sum())} ranked round(s) have no gt_index (the test split's open "
                     "round): not scored here; submit them with shared.predictions.export_evalai")
    if not gradable.any():
        return 0
    rows = np.flatnonzero(gradable)
    ranks = a.rankings.gt_rank(rows, a.gt_index[rows])
    metrics = [ItemMetric.mean_of(name, v) for name, v in retrieval_item_values(ranks).items()]
    board.add("ranking", metrics, a.round_id[gradable], a.kind[gradable])
    return int(gradable.sum())


def _ndcg_population(cfg: EvaluateConfig, split, a: Aligned, board: Scoreboard, notes: list[str]) -> dict:
    dense = load_dense(cfg.dense, split)
    if a.rankings is None:
        notes.append(f"dense relevances given ({cfg.dense}) but the predictions carry no scores/ranks: NDCG skipped")
        return {"dense_rounds": len(dense)}
    row_of = {key: i for i, key in enumerate(zip(a.image_id.tolist(), a.round_id.tolist()))}
    missing = [key for key in dense if key not in row_of]
    if missing:
        raise PredictionError(f"{cfg.predictions}: no prediction for the densely annotated round image_id="
                              f"{missing[0][0]} round_id={missing[0][1]} ({len(missing)} such); set expect_rounds=all")
    rows = np.array([row_of[key] for key in dense], dtype=np.int64)
    relevance = np.array(list(dense.values()), dtype=np.float64)
    values, all_zero = ndcg_from_ranks(a.rankings.rank_matrix(rows), relevance)
    if all_zero.any():
        shown = ", ".join(f"image_id={a.image_id[i]} round_id={a.round_id[i]}" for i in rows[all_zero][:5])
        notes.append(f"{int(all_zero.sum())} dense round(s) have all-zero relevances (no ideal ranking): counted and "
                     f"skipped in NDCG, e.g. {shown}")
    kept = rows[~all_zero]
    if len(kept):
        board.add("ndcg", [ItemMetric.mean_of("ndcg", values[~all_zero])], a.round_id[kept], a.kind[kept])
    return {"dense_rounds": len(dense), "dense_rounds_all_zero": int(all_zero.sum()), "ndcg_rounds": len(kept)}


def _inputs(cfg: EvaluateConfig) -> dict:
    """What decides a report: the settings (without `out` and `overwrite`) and the bytes of every input file."""
    files = {key: sha256_file(path) for key in ("predictions", "data", "dense")
             if (path := getattr(cfg, key)) and Path(path).is_file()}
    return {"config_hash": config_hash(dataclasses.replace(cfg, out=None, overwrite=False)), "sha256": files}


def existing_report(cfg: EvaluateConfig) -> dict | None:
    """The report already in `out` for the same inputs (None: there is none); refuses to write into another job's
    folder, or over an evaluation of other inputs without overwrite=true."""
    out = cfg.out_dir
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not names:
        return None
    if "report.json" not in names:
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        raise InputError(f"out={out} holds files of another job ({shown})",
                         fix="give the evaluation a folder of its own: leave out unset (<predictions' folder>/eval) "
                             "or name an empty folder")
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        report = {}
    if report.get("inputs") == _inputs(cfg):
        return report
    if not cfg.overwrite:
        raise InputError(f"{out} holds an evaluation of other predictions or settings",
                         fix="overwrite=true replaces it, or choose another out=")
    return None


def evaluate(cfg: EvaluateConfig) -> dict:
    """Run the whole evaluation and write its outputs into `cfg.out_dir`; returns the report dict (the one already
    there when the inputs have not changed)."""
    if (done := existing_report(cfg)) is not None:
        log.info("%s/report.json is up to date (same predictions, data and settings)", cfg.out_dir)
        return done
    start = time.perf_counter()
    split = load_visdial(cfg.data)
    aligned = align(cfg.predictions, split, cfg.expect_rounds)
    # pictures are checked before any metric runs: a wrong folder must not cost a whole evaluation
    pictures = check_images(cfg.images, split) if cfg.dialogs_html and cfg.images else None
    notes: list[str] = []
    methods: dict = {}
    board = Scoreboard(cfg, aligned.has_kinds)
    counts = dict(aligned.counts)
    counts["text_rounds"] = _text_population(cfg, aligned, board, methods, notes)
    counts["ranked_rounds"] = _ranking_population(aligned, board, notes)
    if cfg.dense:
        counts |= _ndcg_population(cfg, split, aligned, board, notes)
        methods["ndcg"] = NDCG_METHOD
    if aligned.rankings is not None:
        methods["ranking"] = f"R@k / mean rank / MRR over every round with a gt_index; ties: {TIE_RULE}"
    n = counts["predictions"]
    counts["stripped_share"] = round(counts["raw_with_blocks"] / n, 4)
    notes.insert(0, f"{counts['raw_with_blocks']} of {n} generations ({100 * counts['stripped_share']:.1f}%) contained "
                 "<reminder>/<reasoning>/<think> blocks, removed before scoring"
                 + (f"; {counts['answers_with_blocks']} `answer` fields still held blocks and were stripped here"
                    if counts["answers_with_blocks"] else ""))
    if counts["empty_answers"]:
        notes.insert(1, f"{counts['empty_answers']} answer(s) are empty after stripping: scored as they are (misses)")
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "format": REPORT_FORMAT, "run": run_name(out),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_hash": config_hash(cfg), "inputs": _inputs(cfg),
        "predictions": cfg.predictions, "data": cfg.data, "dense": cfg.dense, "split": split.split,
        "prediction_config_hashes": aligned.config_hashes,
        "bootstrap": {"samples": cfg.bootstrap.samples, "confidence": cfg.bootstrap.confidence,
                      "seed": cfg.bootstrap.seed, "method": "percentile, rounds resampled with replacement"},
        "headline": board.ordered_headline(), "counts": counts, "notes": notes,
        "per_round": board.per_round, "per_kind": board.per_kind or None, "methods": methods, "plots": [],
    }
    save_config(cfg, out)
    if cfg.plots:
        from services.evaluate.plots import plot_per_kind, plot_per_round

        report["plots"] = plot_per_round(report, out) + plot_per_kind(report, out)
    if cfg.dialogs_html:
        write_dialogs_html(split, aligned, out, pictures, f"Dialogs of {report['run']}")
        report["dialogs_html"] = DIALOGS_HTML
    report["seconds"] = round(time.perf_counter() - start, 2)
    write_json(out / "report.json", report)
    write_text(out / "report.md", render_markdown(report))
    return report


def run(cfg: EvaluateConfig) -> None:
    """The `evaluate` verb: write the report and print its headline."""
    report = evaluate(cfg)
    out = cfg.out_dir
    log.info("report: %s/report.md (%s s)", out, report["seconds"])
    headline = (out / "report.md").read_text().split("\n## Counts")[0]
    extra = f", {DIALOGS_HTML}" if report.get("dialogs_html") else ""
    print(f"{headline}\nfull report: {out}/report.md (+ report.json, plots{extra})")
