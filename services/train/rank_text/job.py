"""`python -m services.train rank-text --config configs/train/rank_text_visdial.yaml`: does the history help a
pretrained LM rank real VisDial answers? (docs/HISTORY.md)

For every selected round and every memory condition, the round's prompt (prompts.py) is encoded once and all its
candidate answers are scored from that prefix by the project's tree-attention scorer (bridge/scoring.py): an option's
score is its summed token log-prob. Text only: the dialog's caption stands in for the picture. Outputs, under
<outputs_root>/<run>/:
- <condition>/predictions.jsonl (shared.predictions: scores, ranks, the top option as `answer`; resumable, one
  config hash per condition, so changing one condition's settings never invalidates another's rows);
- context.json: mean prompt tokens per condition (and per round number), rounds, seconds per round;
- summary.md, config.yaml.
The evaluator scores each predictions file and `compare` sets them side by side (make eval-history, bench/history.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from shared.config import ConfigError, save_config, to_dict
from shared.files import atomic_write_text
from shared.predictions import PredictionWriter, scores_to_ranks
from shared.runlog import Progress
from shared.settings import torch_device
from shared.visdial import Dialog, load_visdial

from services.train.bridge.config import LLMSettings
from services.train.bridge.llm import load_llm
from services.train.bridge.scoring import encode_prefix, score_options
from services.train.rank_text.config import CONDITION_HELP, RankTextConfig
from services.train.rank_text.prompts import dialog_reminders, gated_reminders, option_ids, prompt_text

log = logging.getLogger("services.train.rank_text")
TEXT_ONLY = "Text only: each dialog's caption stands in for its picture (the LM never sees an image)."


def select_dialogs(cfg: RankTextConfig) -> tuple[list[Dialog], bool]:
    """The dialogs to rank: data.image_ids in that order (every one must exist), else the split's first
    limit_dialogs (all when null), and whether that is the whole split in its own order. Every selected round must
    carry its answer options."""
    split = load_visdial(cfg.data.dialogs)
    dialogs = list(split.dialogs)
    if cfg.data.image_ids is not None:
        by_id = {d.image_id: d for d in dialogs}
        missing = [i for i in cfg.data.image_ids if i not in by_id]
        if missing:
            raise ConfigError(f"data.image_ids: {missing[:5]} not in {cfg.data.dialogs}",
                              fix="list image ids of dialogs in that split")
        dialogs = [by_id[i] for i in cfg.data.image_ids]
    if cfg.data.limit_dialogs is not None:
        dialogs = dialogs[: cfg.data.limit_dialogs]
    for d in dialogs:
        for r in rounds_of(cfg, d):
            if not r.options:
                raise ConfigError(f"{cfg.data.dialogs}: dialog of image {d.image_id}, round {r.round_id} has no "
                                  "answer options to rank", fix="rank a split whose rounds list answer_options")
    whole = [d.image_id for d in dialogs] == [d.image_id for d in split.dialogs]
    return dialogs, whole


def write_selected_split(cfg: RankTextConfig, dialogs: list[Dialog], whole: bool) -> Path:
    """The split the predictions cover, for the evaluator: the source file itself when every dialog is ranked, else
    <run>/dialogs.json holding only the selected dialogs (same pools, same format)."""
    source = Path(cfg.data.dialogs)
    if whole:
        return source
    doc = json.loads(source.read_text(encoding="utf-8"))
    by_id = {int(d["image_id"]): d for d in doc["data"]["dialogs"]}
    doc["data"]["dialogs"] = [by_id[d.image_id] for d in dialogs]
    target = cfg.run_dir / "dialogs.json"
    atomic_write_text(target, json.dumps(doc))
    return target


def rounds_of(cfg: RankTextConfig, dialog: Dialog) -> list:
    return list(dialog.rounds[-1:] if cfg.data.rounds == "last" else dialog.rounds)


def condition_hash(cfg: RankTextConfig, condition: str) -> str:
    """What decides one condition's scores: the model, the options' form, the data and that condition's settings."""
    prompt = to_dict(cfg.prompt)
    retrieval = ["reminder_k", "reminder_order", "memory"]
    relevant = {"window": ["window"], "reminder": retrieval, "gated": retrieval + ["gate"]}.get(condition, [])
    identity = {"condition": condition, "lm": {k: v for k, v in to_dict(cfg.lm).items() if k != "rows_per_forward"},
                "dialogs": cfg.data.dialogs, "prompt": {k: prompt[k] for k in relevant}}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


class RoundScorer:
    """Scores one round's options from its prompt with the loaded LM.

    Conditions often build the very same prompt (round 1 is "caption + question" under every condition but `none`;
    `window` equals `full` while fewer than `window` turns exist): those scores are computed once and reused, which
    is exact. `computed` and `seconds` count only real scoring.
    """

    def __init__(self, cfg: RankTextConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.llm, self.tokenizer = load_llm(LLMSettings(path=cfg.lm.path, dtype=cfg.lm.dtype), device)
        self.embed = self.llm.get_input_embeddings()
        self._options: dict[tuple[str, ...], list[list[int]]] = {}
        self._scores: dict[tuple[tuple[int, ...], tuple[str, ...]], list[float]] = {}
        self.computed, self.seconds = 0, 0.0

    def prompt_ids(self, text: str) -> list[int]:
        return self.tokenizer(text).input_ids  # with the tokenizer's own BOS, as the model was trained

    def options(self, options: tuple[str, ...]) -> list[list[int]]:
        if options not in self._options:
            self._options[options] = option_ids(self.tokenizer, list(options), self.cfg.lm.option_end)
        return self._options[options]

    @torch.no_grad()
    def __call__(self, prompt: list[int], options: tuple[str, ...]) -> list[float]:
        key = (tuple(prompt), tuple(options))
        if key not in self._scores:
            started = time.perf_counter()
            ids = torch.tensor([prompt], device=self.device)
            positions = torch.arange(len(prompt), device=self.device)[None]
            prefix = encode_prefix(self.llm, self.embed(ids), torch.ones_like(ids), positions)
            rows = self.cfg.lm.rows_per_forward
            self._scores[key] = score_options(self.llm, prefix, [self.options(options)], rows)[0]
            self.seconds += time.perf_counter() - started
            self.computed += 1
        return self._scores[key]


def rank_condition(cfg: RankTextConfig, condition: str, dialogs: list[Dialog], scorer: RoundScorer) -> dict:
    """Write <run>/<condition>/predictions.jsonl (resuming), return its context figures."""
    out = cfg.run_dir / condition / "predictions.jsonl"
    tokens: dict[int, list[int]] = {}
    reminder_rounds = scored = 0
    computed, seconds = scorer.computed, scorer.seconds
    with PredictionWriter(out, condition_hash(cfg, condition), resume=cfg.resume, overwrite=cfg.overwrite) as writer:
        done = writer.done_keys()
        todo = sum(1 for d in dialogs for r in rounds_of(cfg, d) if (d.image_id, r.round_id) not in done)
        log.info("%s: %d rounds to rank (%d already done)", out, todo, len(done))
        with Progress(todo, f"rank-text {condition}") as progress:
            for dialog in dialogs:
                reminders = {"reminder": dialog_reminders, "gated": gated_reminders}.get(
                    condition, lambda *_: None)(dialog, cfg.prompt)
                rows = []
                for rnd in rounds_of(cfg, dialog):
                    text = prompt_text(dialog, rnd.round_id, condition, cfg.prompt, reminders)
                    ids = scorer.prompt_ids(text)
                    tokens.setdefault(rnd.round_id, []).append(len(ids))
                    reminder_rounds += "<reminder>" in text
                    if (dialog.image_id, rnd.round_id) in done:
                        continue
                    scores = scorer(ids, rnd.options)
                    best = max(range(len(scores)), key=scores.__getitem__)
                    row = {"image_id": dialog.image_id, "round_id": rnd.round_id, "answer": rnd.options[best],
                           "scores": scores, "ranks": scores_to_ranks(scores).tolist()}
                    if condition == "gated":  # whether the gate let the reminder in (docs/CONTRACTS.md)
                        row["gate"] = bool(reminders.get(rnd.round_id))
                    rows.append(row)
                writer.write(rows)  # a dialog at a time: an interruption loses at most one dialog's rounds
                scored += len(rows)
                progress.update(len(rows))
    computed, seconds = scorer.computed - computed, scorer.seconds - seconds
    every = [n for per_round in tokens.values() for n in per_round]
    return {"description": CONDITION_HELP[condition], "predictions": str(out), "rounds": len(every),
            "mean_prompt_tokens": sum(every) / len(every),
            "mean_prompt_tokens_by_round": {str(k): sum(v) / len(v) for k, v in sorted(tokens.items())},
            "rounds_with_reminder": reminder_rounds if condition in ("reminder", "gated") else None,
            "rounds_written_now": scored, "rounds_computed_now": computed,  # the rest reused an identical prompt
            "seconds_per_round_now": seconds / computed if computed else None,
            "config_hash": condition_hash(cfg, condition)}


def summary_markdown(cfg: RankTextConfig, context: dict) -> str:
    fast = ", the FAST option: ranks may move" if cfg.lm.dtype != "float32" else ""
    lines = [f"# rank-text: {cfg.run}", "", TEXT_ONLY, "",
             f"Model `{cfg.lm.path}` ({cfg.lm.dtype}{fast}), "
             f"options end with {cfg.lm.option_end}; data `{cfg.data.dialogs}`, {context['dialogs']} dialogs.", "",
             "| condition | what precedes the question | rounds | mean prompt tokens | s/round (this run) |",
             "|---|---|---|---|---|"]
    for name, c in context["conditions"].items():
        speed = f"{c['seconds_per_round_now']:.2f}" if c["seconds_per_round_now"] else "–"
        lines.append(f"| {name} | {c['description']} | {c['rounds']} | {c['mean_prompt_tokens']:.1f} | {speed} |")
    lines += ["", "Scores: `python -m services.evaluate --config configs/evaluate/default.yaml "
              "predictions=<run>/<condition>/predictions.jsonl data=<split> images=null "
              "out=<run>/<condition>/eval`, then "
              "`python -m services.evaluate compare runs=[...]` (make eval-history does both)."]
    return "\n".join(lines) + "\n"


def run(cfg: RankTextConfig) -> None:
    device = torch_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dialogs, whole = select_dialogs(cfg)
    scorer = RoundScorer(cfg, device)
    save_config(cfg, cfg.run_dir)
    context = {"format": "vdmem-rank-text/1", "text_only": TEXT_ONLY, "lm": cfg.lm.path, "dtype": cfg.lm.dtype,
               "data": cfg.data.dialogs, "evaluate_data": str(write_selected_split(cfg, dialogs, whole)),
               "rounds": cfg.data.rounds, "dialogs": len(dialogs), "image_ids": [d.image_id for d in dialogs],
               "threads": torch.get_num_threads(), "conditions": {}}
    for condition in cfg.prompt.conditions:
        context["conditions"][condition] = rank_condition(cfg, condition, dialogs, scorer)
        log.info("%s: mean prompt tokens %.1f", condition, context["conditions"][condition]["mean_prompt_tokens"])
    atomic_write_text(cfg.run_dir / "context.json", json.dumps(context, indent=2))
    atomic_write_text(cfg.run_dir / "summary.md", summary_markdown(cfg, context))
    print(summary_markdown(cfg, context))
    log.info("wrote %s", Path(cfg.run_dir))
