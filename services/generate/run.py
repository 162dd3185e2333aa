"""The generation loop shared by gen-base, gen-reason and gen-eval: select rounds, prompt, generate, validate, append.

Outputs under <outputs_root>/<run>/: config.yaml (resolved), then
- gen-base / gen-reason: records.jsonl (services/generate/schema.py) and rejects.jsonl (gen-reason responses that do
  not fit the format, with the reason; they are skipped on resume unless validation.retry_rejected);
- gen-eval: predictions.jsonl (shared/predictions.py): answer = response with reminder/reasoning blocks stripped.
"""
from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.generate.backends import OllamaBackend, OpenAIBackend
from services.generate.config import BackendConfig, GenerateConfig
from services.generate.jsonl import JsonlLog
from services.generate.prompts import build_prompt
from services.generate.schema import check_reason_response, check_record, clean_answer, record_id
from shared.config import save_config
from shared.memory import IdfTable, dialog_gates, replay_dialog
from shared.predictions import PredictionWriter
from shared.visdial import load_visdial

log = logging.getLogger(__name__)


@dataclass
class Summary:
    written: int = 0
    skipped: int = 0  # already in the output (resume)
    rejected: Counter = field(default_factory=Counter)  # reason -> count (gen_reason)
    out_dir: Path | None = None

    @property
    def attempts(self) -> int:
        return self.written + sum(self.rejected.values())

    def line(self, verb: str) -> str:
        rejected = sum(self.rejected.values())
        reasons = "; ".join(f"{n} x {r}" for r, n in self.rejected.most_common()) or "none"
        return (f"{verb}: {self.written} written, {self.skipped} already done (skipped), {rejected} rejected "
                f"({reasons}) -> {self.out_dir}")


def make_backend(cfg: BackendConfig, **kwargs):
    """The backend named by `cfg.kind`; e.g. `make_backend(BackendConfig(kind="ollama", model="gemma3:27b"))`."""
    if cfg.kind == "ollama":
        return OllamaBackend(cfg, **kwargs)
    if cfg.kind == "openai":
        return OpenAIBackend(cfg, **kwargs)
    from services.generate.hf_backend import HFBackend  # torch + transformers only when asked for

    return HFBackend(cfg)


def selected_rounds(dialog: Any, mode: str) -> list:
    rounds = list(dialog.rounds)
    if mode == "last":
        return rounds[-1:]
    if mode in ("memory", "current"):
        return [r for r in rounds if r.kind == mode]
    return rounds


class DialogEmbeddings:
    """Per-dialog question/answer text embeddings from a shard folder, for cosine relevance in retrieval."""

    def __init__(self, directory: Path):
        from shared.shards import ShardSet

        self.shards = ShardSet(directory)
        self.has_answers = "answer" in self.shards.tensor_names

    def get(self, image_id: int) -> tuple[np.ndarray, np.ndarray | None]:
        row = self.shards.row_of(image_id)
        answers = self.shards.get("answer", row).astype(np.float32) if self.has_answers else None
        return self.shards.get("question", row).astype(np.float32), answers


def run(verb: str, cfg: GenerateConfig, backend: Any = None) -> Summary:
    """Generate every selected round of the split not yet in the output; returns what was done."""
    out = cfg.run_dir
    split = load_visdial(cfg.data.dialogs)
    name = split.split  # the split the file declares: record ids and `{split}` in paths
    backend = backend or make_backend(cfg.backend)
    image_index = None
    if backend.accepts_images and cfg.backend.images != "none":
        from shared.images import ImageIndex

        image_index = ImageIndex.scan(cfg.data.images)
    retrieval = cfg.retrieval
    idf = None
    if retrieval.enabled and retrieval.idf_from:
        idf_split = load_visdial(retrieval.idf_from.format(split=name))
        idf = IdfTable.fit(f"{r.question} {r.answer or ''}" for d in idf_split.dialogs for r in d.rounds)
    embeddings = DialogEmbeddings(Path(retrieval.embeddings.format(split=name))) \
        if retrieval.enabled and retrieval.embeddings else None

    chash = cfg.record_hash()  # the writers refuse files of other settings before anything is written
    if verb == "gen_eval":
        writer = PredictionWriter(out / "predictions.jsonl", chash, resume=cfg.resume, overwrite=cfg.overwrite)
        done = {f"{name}:{i}:{r}" for i, r in writer.done_keys()}
        rejects = None
    else:
        writer = JsonlLog(out / "records.jsonl", chash, cfg.resume, check=check_record, overwrite=cfg.overwrite)
        rejects = JsonlLog(out / "rejects.jsonl", chash, cfg.resume, overwrite=cfg.overwrite)
        done = writer.ids | (set() if cfg.validation.retry_rejected else rejects.ids)
    save_config(cfg, out)
    summary = Summary(out_dir=out)
    started = time.perf_counter()
    dialogs = split.dialogs[: cfg.data.limit_dialogs]
    try:
        for dialog in dialogs:
            todo = []
            for rnd in selected_rounds(dialog, cfg.data.rounds):
                if record_id(name, dialog.image_id, rnd.round_id) in done:
                    summary.skipped += 1
                else:
                    todo.append(rnd)
            if not todo:
                continue
            memories = None
            if retrieval.enabled:
                q_emb, a_emb = embeddings.get(dialog.image_id) if embeddings else (None, None)
                memories = replay_dialog(dialog, retrieval.memory, retrieval.k, idf, q_emb, a_emb)
                if retrieval.gated:  # a round the gate turns down gets no block at all ({reminder} = "")
                    gates = dialog_gates(dialog, memories, retrieval.gate)
                    memories = {rid: found if gates.get(rid) else None for rid, found in memories.items()}
            for rnd in todo:
                if cfg.max_records and summary.attempts >= cfg.max_records:
                    log.info("max_records=%d reached; rerun to continue", cfg.max_records)
                    return summary
                prompt = build_prompt(cfg, dialog, rnd, None if memories is None else memories[rnd.round_id],
                                      image_index, backend.accepts_images)
                response = backend.generate(prompt.request)
                _store(verb, cfg, name, writer, rejects, summary, dialog, rnd, prompt, response, backend)
                if cfg.log_every and summary.written and summary.written % cfg.log_every == 0:
                    rate = (time.perf_counter() - started) / summary.written
                    log.info("%s: %d written, %d rejected, %.2f s/record", verb, summary.written,
                             sum(summary.rejected.values()), rate)
        return summary
    finally:
        writer.close()
        if rejects is not None:
            rejects.close()
        log.info(summary.line(verb))


def _store(verb, cfg, split_name, writer, rejects, summary, dialog, rnd, prompt, response, backend) -> None:
    answer = clean_answer(response)
    if verb == "gen_eval":
        writer.write([{"image_id": dialog.image_id, "round_id": rnd.round_id, "answer": answer, "raw": response}])
        summary.written += 1
        return
    rid = record_id(split_name, dialog.image_id, rnd.round_id)
    if verb == "gen_reason":
        problem = check_reason_response(response, cfg.validation.max_answer_words, cfg.validation.require_reminder)
        if problem:
            rejects.write({"id": rid, "reason": problem, "response": response})
            summary.rejected[re.sub(r"\d+", "N", problem)] += 1
            log.warning("%s rejected: %s", rid, problem)
            return
    writer.write({
        "id": rid, "image_id": dialog.image_id, "round_id": rnd.round_id, "prompt_kind": verb,
        "conversation": prompt.conversation, "response": response, "answer": answer, "reminder": prompt.reminder,
        "reference": rnd.answer, "images": prompt.image_ids, "backend": backend.kind, "model": backend.model,
    })
    summary.written += 1


def _verb(verb: str):
    def run_verb(cfg: GenerateConfig) -> None:
        print(run(verb, cfg).line(verb.replace("_", "-")))
    return run_verb


# The three verbs (services/generate/verbs.py); `prompt_kind` in records keeps the underscore names.
gen_base, gen_reason, gen_eval = _verb("gen_base"), _verb("gen_reason"), _verb("gen_eval")
