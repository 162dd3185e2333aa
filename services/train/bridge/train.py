"""`python -m services.train bridge --config configs/train/bridge_demo.yaml`: train the MA-LMM bridge on shards.

AdamW with linear warmup and cosine decay, gradient accumulation, clipping, bf16 autocast on CUDA, seeded. Every
`save_every` optimizer steps the trainable weights, optimizer, scheduler, RNG and data position are checkpointed
atomically; `resume=true` continues exactly where the last checkpoint left off (same data order, same dropout).
Under `torchrun --nproc_per_node N` each process takes its slice of every global micro-batch.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from shared.config import ConfigError, config_hash, save_config, to_dict
from shared.runlog import MetricsLogger, plot_metrics
from shared.settings import refuse_old_layout

from services.train.bridge import checkpoints as train_state, distributed
from services.train.bridge.data import DialogData, PromptBuilder, check_paths, make_batch
from services.train.bridge.runtime import (autocast, build, embedded_turns, load_saved_weights, pick_device,
                                          saved_weights, seed_everything, trainable_parameters)
from services.train.bridge.config import BridgeTrainConfig
from services.train.bridge.llm import answer_loss, set_llm_mode

log = logging.getLogger("services.train.bridge")


class Sampler:
    """Seeded global order of samples per epoch; a position (epoch, cursor) fully determines what comes next."""

    def __init__(self, count: int, global_micro: int, seed: int):
        if count < global_micro:
            raise ValueError(f"only {count} training samples but a global micro-batch needs {global_micro}; "
                             "lower optim.micro_batch_size or add data")
        self.count, self.global_micro, self.seed = count, global_micro, seed
        self.epoch, self.cursor = 0, 0

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.count)

    def next(self) -> np.ndarray:
        """Indices of the next global micro-batch (an epoch's tail shorter than one micro-batch is skipped)."""
        if self.cursor + self.global_micro > self.count:
            self.epoch, self.cursor = self.epoch + 1, 0
        chosen = self._order()[self.cursor: self.cursor + self.global_micro]
        self.cursor += self.global_micro
        return chosen

    def position(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def restore(self, position: dict) -> None:
        self.epoch, self.cursor = int(position["epoch"]), int(position["cursor"])


def lr_lambda(cfg) -> callable:
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min((step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1), 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def _same_run(saved: dict, cfg: BridgeTrainConfig, folder: Path) -> None:
    """A resumed run must use the settings it was started with (resume itself may differ)."""
    diff = train_state.changed_settings(saved, cfg)
    if diff:
        raise ConfigError(f"{folder}: was trained with different settings ({', '.join(diff)})",
                          fix="resume with the config it was started with (its config.yaml), or choose a new run name")


def _resume(cfg: BridgeTrainConfig, folder: Path, world, bridge, llm, optimizer, scheduler, sampler) -> int:
    """Restore the newest checkpoint in `folder` (resume=true) and return its step; 0 for a fresh run."""
    latest = train_state.latest_checkpoint(folder)
    if latest is None:
        return 0
    if not cfg.resume:
        if not cfg.overwrite:
            raise ConfigError(f"{folder} already holds checkpoints of this run",
                              fix="resume=true continues it; overwrite=true starts it afresh (its checkpoints and "
                                  "metrics are deleted); or choose another run name")
        if world.is_main:  # replacing was asked for explicitly: nothing of the old run may mix into the new one
            shutil.rmtree(folder)
            (cfg.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        distributed.barrier(world)
        return 0
    state = train_state.read_state(latest)
    _same_run(state["config"], cfg, latest)  # before loading anything
    train_state.restore(latest, state, optimizer, scheduler, world.rank)
    load_saved_weights(bridge, llm, train_state.load_weights(latest), latest)
    sampler.restore(state["position"])
    log.info("resumed %s at step %d", latest, state["step"])
    return int(state["step"])


def train(cfg: BridgeTrainConfig) -> Path:
    device = distributed.local_device(pick_device(cfg.device))  # cuda:LOCAL_RANK under torchrun
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    world = distributed.init(device)
    opt = cfg.optim
    global_micro = opt.micro_batch_size * world.size
    if opt.batch_size % global_micro:
        raise ConfigError(f"optim.batch_size={opt.batch_size} is not a multiple of micro_batch_size x processes "
                          f"= {global_micro}", fix="change optim.batch_size or optim.micro_batch_size")
    accumulation = opt.batch_size // global_micro
    out_dir = cfg.run_dir
    ckpt_dir = out_dir / "checkpoints"
    refuse_old_layout(cfg.run, out_dir)
    check_paths(cfg.data)
    data = DialogData(cfg.data)
    samples = data.samples(cfg.data.rounds, answered_only=True, repeat_memory=cfg.data.repeat_memory_rounds)
    seed_everything(cfg.seed)
    bridge, llm, tokenizer = build(cfg.model, data.image_dim, data.text_dim, device, cfg.seed)
    params = trainable_parameters(bridge, llm)
    distributed.broadcast_parameters(list(params.values()), world)
    optimizer = torch.optim.AdamW(params.values(), lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(opt))
    sampler = Sampler(len(samples), global_micro, cfg.seed)
    builder = PromptBuilder(cfg.prompt, tokenizer)
    steps = embedded_turns(cfg.model)

    step = _resume(cfg, ckpt_dir, world, bridge, llm, optimizer, scheduler, sampler)
    if world.is_main:
        save_config(cfg, out_dir)
    metrics = MetricsLogger(out_dir / "metrics.jsonl", resume_step=step) if world.is_main else None
    extra = {"config": to_dict(cfg), "config_hash": config_hash(cfg), "encoder_id": data.shards.encoder_id,
             "dims": {"image": data.image_dim, "text": data.text_dim}, "world_size": world.size,
             "qformer": bridge.qformer_report}
    bridge.train()
    set_llm_mode(llm, training=True)  # the frozen LLM stays in eval mode, its LoRA dropout (if any) is on
    started, seen_tokens = time.monotonic(), 0
    while step < opt.max_steps:
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(accumulation):
            chosen = sampler.next()[world.rank * opt.micro_batch_size: (world.rank + 1) * opt.micro_batch_size]
            batch = make_batch(data, builder, [samples[i] for i in chosen], steps, with_answers=True)
            with autocast(device):
                soft = bridge(batch.image.to(device), batch.question.to(device), batch.turn.to(device),
                              batch.picture.to(device))
                losses = answer_loss(llm, soft, builder.bos, batch.prompts, batch.answers, tokenizer.pad_token_id)
            (losses.sum() / opt.batch_size).backward()
            loss_sum += float(losses.detach().sum())
            seen_tokens += sum(len(p) + len(a) + soft.shape[1] + len(builder.bos)
                               for p, a in zip(batch.prompts, batch.answers))
        distributed.sum_gradients(list(params.values()), world)
        grad_norm = torch.nn.utils.clip_grad_norm_(params.values(), opt.clip_norm)
        lr = scheduler.get_last_lr()[0]  # the rate this step uses
        optimizer.step()
        scheduler.step()
        step += 1
        loss = distributed.sum_scalar(loss_sum, world, device) / opt.batch_size
        if world.is_main and (step % cfg.log_every == 0 or step == opt.max_steps or step == 1):
            elapsed = time.monotonic() - started
            metrics.log(step, loss=loss, lr=lr, grad_norm=float(grad_norm),
                        epoch=sampler.epoch, tokens_per_s=seen_tokens * world.size / max(elapsed, 1e-9))
            log.info("step %d/%d loss %.4f lr %.2e", step, opt.max_steps, loss, lr)
        if step % cfg.save_every == 0 or step == opt.max_steps:
            rngs = distributed.gather_objects(train_state.rng_state(), world)
            if world.is_main:
                train_state.save_checkpoint(ckpt_dir, step, saved_weights(bridge, llm), optimizer, scheduler,
                                            sampler.position(), extra, cfg.keep_checkpoints, rngs)
            distributed.barrier(world)
    if world.is_main:
        metrics.close()
        plot_metrics(out_dir / "metrics.jsonl", out_dir / "loss.png", ["loss", "lr"])
        log.info("done: %s (weights in %s)", out_dir, ckpt_dir)
    distributed.shutdown(world)
    return ckpt_dir

