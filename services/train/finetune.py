"""`python -m services.train finetune --config configs/train/gemma3_4b_reminder_qlora.yaml`: Gemma-3 LoRA fine-tuning.

Records (image, conversation, `<reminder>` + answer) from a VisDial-format split or the generate service's
records; backend unsloth (CUDA) or peft (anywhere), see docs/FINETUNE.md. Writes the final PEFT adapter
(adapter_config.json + adapter_model.safetensors), the processor and finetune_config.yaml to checkpoints/<run>/,
resumable checkpoints to checkpoints/<run>/checkpoint-<step>/, and config.yaml, metrics.jsonl, loss.png and
summary.json to outputs/<run>/. An interrupted run resumes from its newest complete checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local folders only
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from services.train.finetune_config import FinetuneConfig  # noqa: E402
from services.train.finetune_records import (  # noqa: E402
    FinetuneRecord, instruction_for, records_from_generated, records_from_visdial)
from shared.config import config_hash, load_config, save_config, split_cli  # noqa: E402

log = logging.getLogger("services.train.finetune")


def load_records(cfg: FinetuneConfig) -> list[FinetuneRecord]:
    d = cfg.data
    if d.source == "generated":
        return records_from_generated(d.generated, d.images, reminder=d.reminder, limit=d.limit_dialogs)
    return records_from_visdial(d.dialogs, d.images, rounds=d.rounds, reminder=d.reminder, top_k=d.reminder_top_k,
                                memory=d.memory, caption=d.caption, limit_dialogs=d.limit_dialogs)


def resolve_backend(name: str) -> str:
    import torch

    if name == "auto":
        return "unsloth" if torch.cuda.is_available() else "peft"
    return name


def run(cfg: FinetuneConfig) -> dict:
    """Train (or resume) the run; returns the summary also written to outputs/<run>/summary.json."""
    import torch

    from services.train.finetune_model import check_model_dir
    from services.train.finetune_trainer import (TRAIN_CONFIG, MetricsCallback, StopAtStep, global_step,
                                                 resume_point)
    from shared.runlog import plot_metrics

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    check_model_dir(cfg.model.path)  # before anything slow: the most likely thing to be missing
    backend = resolve_backend(cfg.backend)
    run_dir, out_dir = Path(cfg.checkpoints_root) / cfg.run, Path(cfg.outputs_root) / cfg.run
    checkpoint = resume_point(cfg, run_dir)
    records = load_records(cfg)
    instruction = instruction_for(cfg.data.reminder, cfg.data.instruction)
    log.info("%d records (%s, reminder=%s), backend %s", len(records), cfg.data.source, cfg.data.reminder, backend)
    save_config(cfg, out_dir)
    save_config(cfg, run_dir, name=TRAIN_CONFIG)
    callbacks = [MetricsCallback(out_dir / "metrics.jsonl", config_hash(cfg), global_step(checkpoint))]
    if cfg.train.stop_at_step is not None:
        callbacks.append(StopAtStep(cfg.train.stop_at_step))
    if backend == "unsloth":
        from services.train.finetune_unsloth import build_trainer
    else:
        from services.train.finetune_peft import build_trainer
    trainer, processor = build_trainer(cfg, records, instruction, run_dir, callbacks)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    step, target = trainer.state.global_step, trainer.state.max_steps
    finished = step >= target
    if finished:  # the final adapter beside the checkpoints: what finetune-infer loads
        trainer.model.save_pretrained(run_dir)
        processor.save_pretrained(run_dir)
    summary = {"run": cfg.run, "backend": backend, "records": len(records), "step": step, "max_steps": target,
               "finished": finished, "resumed_from": checkpoint.name if checkpoint else None,
               "train_loss": result.training_loss, "seconds": round(time.time() - started, 2),
               "config_hash": config_hash(cfg)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    try:
        plot_metrics(out_dir / "metrics.jsonl", out_dir / "loss.png", ["loss"])
    except (ValueError, FileNotFoundError) as e:  # no loss logged yet (a run stopped before its first log)
        log.warning("no loss plot: %s", e)
    log.info("%s at step %d/%d: adapter in %s, logs in %s", "done" if finished else "stopped", step, target,
             run_dir, out_dir)
    return summary


def main(argv: list[str]) -> int:
    from shared.runlog import setup_logging

    setup_logging()
    config, overrides, words = split_cli(argv)
    if words:
        print(f"finetune: unexpected arguments {words}; usage: python -m services.train finetune --config <yaml> "
              "[key=value ...]", file=sys.stderr)
        return 2
    from services.train.finetune_records import RecordError
    from shared.config import ConfigError
    from shared.images import ImageIndexError
    from shared.visdial import VisDialError

    try:
        run(load_config(FinetuneConfig, config, overrides))
    except (ConfigError, RecordError, VisDialError, ImageIndexError, FileNotFoundError) as e:
        print(f"finetune: error: {e}", file=sys.stderr)  # bad input: one clear line, no traceback
        return 2
    return 0
