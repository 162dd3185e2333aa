"""What both backends share around the Hugging Face trainer: its arguments, metrics.jsonl, stopping, resuming.

Both backends train with a `transformers.Trainer` (the peft backend the plain one, the unsloth backend TRL's
SFTTrainer), so checkpoints have one layout: `<outputs_root>/<run>/checkpoints/checkpoint-<step>/` with the adapter
(adapter_model.safetensors), optimizer, scheduler, RNG and trainer_state.json. The trainer writes
trainer_state.json last, so a folder without it is an interrupted save and is skipped when resuming; the trainer
reads those files with `torch.load(weights_only=True)` only.
"""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from services.train.finetune.config import ADAPTER_DIR, FinetuneConfig
from shared.config import ConfigError, load_config, to_dict
from shared.runlog import MetricsLogger
from shared.settings import refuse_old_layout

log = logging.getLogger(__name__)
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
# Sections that must not change when a run resumes (the rest — steps, saving, logging — may).
FIXED_ON_RESUME = ("model", "lora", "data", "seed", "backend")


def trainer_kwargs(cfg: FinetuneConfig, output_dir: Path, use_cpu: bool) -> dict[str, Any]:
    """Keyword arguments of TrainingArguments (and of TRL's SFTConfig, which extends it)."""
    t = cfg.optim
    return dict(
        output_dir=str(output_dir), per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.batch_size // t.micro_batch_size, learning_rate=t.lr,
        warmup_steps=t.warmup_steps, weight_decay=t.weight_decay, lr_scheduler_type=t.scheduler, optim=t.optimizer,
        bf16=t.precision == "bf16", fp16=t.precision == "fp16", max_grad_norm=t.clip_norm, max_steps=t.max_steps,
        logging_steps=cfg.log_every, save_strategy="steps", save_steps=cfg.save_every,
        save_total_limit=cfg.keep_checkpoints, seed=cfg.seed, data_seed=cfg.seed, report_to="none",
        remove_unused_columns=False, use_cpu=use_cpu, dataloader_num_workers=cfg.data.num_workers,
        label_names=["labels"], disable_tqdm=True,
        # Checkpointing is set up by the backend (peft's helper / unsloth's own); the trainer must not redo it.
        gradient_checkpointing=False,
    )


class MetricsCallback(TrainerCallback):
    """Appends the trainer's log records (loss, lr, grad_norm, ...) to outputs/<run>/metrics.jsonl."""

    def __init__(self, path: Path, config_hash: str, resume_step: int | None):
        self.logger = MetricsLogger(path, resume_step=resume_step)
        self.config_hash = config_hash

    def on_log(self, args, state, control, logs=None, **kwargs):
        numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if state.is_world_process_zero and numbers:
            self.logger.log(state.global_step, **{"epoch": state.epoch, **numbers, "config_hash": self.config_hash})

    def on_train_end(self, args, state, control, **kwargs):
        self.logger.close()


class StopAtStep(TrainerCallback):
    """Stops training after step `stop_at` with a checkpoint, as an interruption would (then resume continues)."""

    def __init__(self, stop_at: int):
        self.stop_at = stop_at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.stop_at:
            control.should_save = True
            control.should_training_stop = True
        return control


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete `checkpoint-<step>` folder (one holding trainer_state.json), or None."""
    found = []
    for folder in run_dir.glob("checkpoint-*"):
        match = _CHECKPOINT.fullmatch(folder.name)
        if match and folder.is_dir():
            if (folder / "trainer_state.json").is_file():
                found.append((int(match.group(1)), folder))
            else:
                log.warning("%s: no trainer_state.json (a save was interrupted); not resuming from it", folder)
    return max(found)[1] if found else None


def resume_point(cfg: FinetuneConfig, run_dir: Path) -> Path | None:
    """The checkpoint to resume from (in <run_dir>/checkpoints), after checking the run was started with a
    compatible config."""
    refuse_old_layout(cfg.run, run_dir)
    folder = run_dir / "checkpoints"
    checkpoint = latest_checkpoint(folder) if folder.is_dir() else None
    if checkpoint is None:
        return None
    if not cfg.resume:
        if not cfg.overwrite:
            raise ConfigError(f"{folder} already holds {checkpoint.name}",
                              fix="resume=true continues it; overwrite=true starts it afresh (its checkpoints, "
                                  "adapter and metrics are deleted); or choose another run name")
        for old in (folder, run_dir / ADAPTER_DIR):  # replacing was asked for: nothing old may mix into the new run
            shutil.rmtree(old, ignore_errors=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        return None
    saved_path = run_dir / "config.yaml"
    if saved_path.is_file():
        saved, now = to_dict(load_config(FinetuneConfig, saved_path)), to_dict(cfg)
        changed = [k for k in FIXED_ON_RESUME if saved[k] != now[k]]
        if changed:
            raise ConfigError(f"{saved_path}: the run was started with other {', '.join(changed)} settings; resuming "
                              "would mix two trainings", fix="restore them, or use another run=")
    log.info("resuming from %s", checkpoint)
    return checkpoint


def global_step(checkpoint: Path | None) -> int | None:
    return None if checkpoint is None else int(_CHECKPOINT.fullmatch(checkpoint.name).group(1))
