"""`python -m services.train infer --config configs/train/infer_demo.yaml`: answers + option ranking with a bridge.

For every round: the bridge's soft tokens + the prompt (optional reminder from EARLIER rounds + the open question) are
encoded once; greedy decoding continues from that prefix (only new tokens are decoded), and every answer option is
scored by its summed token log-probability from the same prefix cache. Rows go to predictions.jsonl through
shared.predictions.PredictionWriter, so an interrupted run resumes where it stopped; with `reminder: gated` each row
says whether the gate let the round's reminder in ("gate": true/false).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from shared.config import ConfigError, from_dict, save_config, to_dict
from shared.predictions import PredictionWriter, scores_to_ranks
from shared.reminder import parse_reminder, render_line, strip_blocks
from shared.runlog import Progress
from shared.settings import location_keys, refuse_old_layout

from services.train.bridge import checkpoints as train_state
from services.train.bridge.data import DialogData, PromptBuilder, check_paths, make_batch
from services.train.bridge.runtime import autocast, build, embedded_turns, load_saved_weights, pick_device
from services.train.bridge.config import BridgeTrainConfig, InferConfig
from services.train.bridge.llm import assemble, set_llm_mode
from services.train.bridge.scoring import encode_prefix, greedy, score_options

log = logging.getLogger("services.train.infer")


def load_trained(cfg: InferConfig) -> tuple[Path, BridgeTrainConfig, dict]:
    """The checkpoint folder, the training config it was made with, and its state.json."""
    run_dir = cfg.run_dir
    if cfg.checkpoint is None:
        refuse_old_layout(cfg.run, run_dir)
    folder = Path(cfg.checkpoint) if cfg.checkpoint else train_state.latest_checkpoint(run_dir / "checkpoints")
    if folder is None:
        raise ConfigError(f"{run_dir / 'checkpoints'}: no trained bridge (latest.json missing)",
                          fix="run `make train-bridge` first, or set checkpoint=<step folder>")
    state = train_state.read_state(folder)
    train_cfg = from_dict(BridgeTrainConfig, state["config"])  # a step folder carries its training config
    if state["step"] < train_cfg.optim.max_steps:
        log.warning("%s is step %d of %d: the training run has not finished", folder, state["step"],
                    train_cfg.optim.max_steps)
    return folder, train_cfg, state


class OptionTokens:
    """Token ids of answer options, exactly as training targets are built (shared strings tokenized once)."""

    def __init__(self, builder: PromptBuilder, with_eos: bool):
        self.builder, self.with_eos, self._cache = builder, with_eos, {}

    def __call__(self, text: str) -> list[int]:
        if text not in self._cache:
            ids = self.builder.answer(text, truncate=False)
            self._cache[text] = ids if self.with_eos or len(ids) == 1 else ids[:-1]
        return self._cache[text]


def infer(cfg: InferConfig) -> Path:
    device = pick_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    folder, train_cfg, state = load_trained(cfg)
    check_paths(cfg.data)
    data = DialogData(cfg.data)
    dims = {"image": data.image_dim, "text": data.text_dim}
    if dims != state["dims"] or data.shards.encoder_id != state["encoder_id"]:
        raise ConfigError(f"{cfg.data.embeddings}: {data.shards.encoder_id} {dims} but {folder} was trained on "
                          f"{state['encoder_id']} {state['dims']}", fix="use embeddings of the same encoder")
    bridge, llm, tokenizer = build(train_cfg.model, data.image_dim, data.text_dim, device, train_cfg.seed)
    load_saved_weights(bridge, llm, train_state.load_weights(folder), folder)
    bridge.eval()
    set_llm_mode(llm, training=False)  # LoRA dropout off too: the same answers on every run
    builder = PromptBuilder(train_cfg.prompt, tokenizer, None if cfg.reminder == "train" else cfg.reminder)
    options = OptionTokens(builder, cfg.score_with_eos)
    out = Path(cfg.out) if cfg.out else cfg.run_dir / "predictions.jsonl"
    settings = {k: v for k, v in to_dict(cfg).items() if k not in location_keys(cfg)}  # not results
    identity = json.dumps({"infer": settings, "trained": state["config_hash"], "step": state["step"]},
                          sort_keys=True)
    run_hash = hashlib.sha256(identity.encode()).hexdigest()[:12]
    steps = embedded_turns(train_cfg.model)
    with PredictionWriter(out, run_hash, resume=cfg.resume, overwrite=cfg.overwrite) as writer:
        save_config(cfg, out.parent, name="infer_config.yaml")  # only once the predictions file is known to fit
        done = writer.done_keys()
        todo = [(d, r) for d, r in data.samples(cfg.data.rounds) if (data.dialogs[d].image_id, r) not in done]
        log.info("%s: %d rounds to predict (%d already done), checkpoint %s", out, len(todo), len(done), folder)
        with Progress(len(todo), "infer") as progress, torch.no_grad(), autocast(device):
            for start in range(0, len(todo), cfg.batch_size):
                chunk = todo[start: start + cfg.batch_size]
                writer.write(predict(bridge, llm, tokenizer, builder, options, data, chunk, steps, cfg, device))
                progress.update(len(chunk))
    log.info("wrote %s", out)
    return out


def predict(bridge, llm, tokenizer, builder: PromptBuilder, options: OptionTokens, data: DialogData,
            samples: list[tuple[int, int]], steps: int | None, cfg: InferConfig, device: torch.device) -> list[dict]:
    """Prediction rows for a batch of (dialog, round) samples."""
    batch = make_batch(data, builder, samples, steps, with_answers=False)
    soft = bridge(batch.image.to(device), batch.question.to(device), batch.turn.to(device), batch.picture.to(device))
    embeds, mask, positions = assemble(soft, builder.bos, batch.prompts, llm.get_input_embeddings(),
                                       tokenizer.pad_token_id, left_pad=True)
    prefix = encode_prefix(llm, embeds, mask, positions)
    rounds = [data.dialogs[d].rounds[r - 1] for d, r in samples]
    gates = [builder.gates(d, data.dialogs[d])[r - 1] for d, r in samples]  # None unless the reminder is gated
    scores = None
    if cfg.score_options and all(rnd.options for rnd in rounds):
        scores = score_options(llm, prefix, [[options(o) for o in rnd.options] for rnd in rounds],
                               cfg.option_batch_size)
    generated = greedy(llm, prefix, cfg.max_new_tokens, tokenizer.eos_token_id)
    rows = []
    for i, ((image_id, round_id), ids) in enumerate(zip(batch.keys, generated)):
        raw = tokenizer.decode(ids, skip_special_tokens=True)
        row = {"image_id": image_id, "round_id": round_id, "answer": strip_blocks(raw)[0], "raw": raw}
        if builder.reminder != "none":  # the reminder lines this round's prompt held (the evaluator shows them)
            row["reminders"] = [render_line(item) for item in parse_reminder(tokenizer.decode(batch.prompts[i]))]
        if scores is not None:
            row["scores"] = scores[i]
            row["ranks"] = scores_to_ranks(np.asarray(scores[i])).tolist()
        if gates[i] is not None:
            row["gate"] = gates[i]  # whether this round's prompt got its reminder
        rows.append(row)
    return rows

