"""`python -m services.train finetune --config configs/train/gemma3_4b_reminder_qlora.yaml`: Gemma-3 LoRA fine-tuning.

Records (image, conversation, `<reminder>` + answer) from a VisDial-format split or the generate service's
records; backend unsloth (CUDA) or peft (anywhere), see docs/FINETUNE.md. Everything goes to <outputs_root>/<run>/:
config.yaml, metrics.jsonl, loss.png, summary.json, resumable checkpoints (checkpoints/checkpoint-<step>/) and the
final PEFT adapter (adapter/: adapter_config.json + adapter_model.safetensors, the processor and
finetune_config.yaml). An interrupted run resumes from its newest complete checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local folders only
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from services.train.finetune.config import ADAPTER_DIR, TRAIN_CONFIG, FinetuneConfig  # noqa: E402
from services.train.finetune.records import (  # noqa: E402
    FinetuneRecord, instruction_for, records_from_generated, records_from_visdial)
from shared.config import config_hash, save_config  # noqa: E402

log = logging.getLogger("services.train.finetune.train")


def load_records(cfg: FinetuneConfig) -> list[FinetuneRecord]:
    d = cfg.data
    if d.source == "generated":
        return records_from_generated(d.generated, d.images, reminder=d.reminder, limit=d.limit_dialogs)
    return records_from_visdial(d.dialogs, d.images, rounds=d.rounds, reminder=d.reminder, top_k=d.reminder_top_k,
                                memory=d.memory, caption=d.caption, limit_dialogs=d.limit_dialogs, gate=d.gate)


def resolve_backend(name: str) -> str:
    import torch

    if name == "auto":
        return "unsloth" if torch.cuda.is_available() else "peft"
    return name


def run(cfg: FinetuneConfig) -> dict:
    """Train (or resume) the run; returns the summary also written to outputs/<run>/summary.json."""
    import torch

    from services.train.finetune.model import check_model_dir

    check_model_dir(cfg.model.path)  # before anything slow: the most likely thing to be missing
    backend = resolve_backend(cfg.backend)
    if backend == "unsloth":  # before anything imports transformers/peft/trl, which unsloth patches on import
        from services.train.finetune.unsloth_first import import_unsloth

        import_unsloth()
    from transformers import AutoProcessor

    from services.train.finetune.collate import check_lengths
    from services.train.finetune.trainer import MetricsCallback, StopAtStep, global_step, resume_point
    from shared.runlog import plot_metrics

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run_dir = cfg.run_dir
    checkpoint = resume_point(cfg, run_dir)
    records = load_records(cfg)
    instruction = instruction_for(cfg.data.reminder, cfg.data.instruction)
    longest = check_lengths(AutoProcessor.from_pretrained(cfg.model.path), records, instruction,
                            cfg.model.max_seq_length)  # before the slow model load; unsloth would cut silently
    log.info("%d records (%s, reminder=%s, longest %d tokens), backend %s", len(records), cfg.data.source,
             cfg.data.reminder, longest, backend)
    save_config(cfg, run_dir)
    callbacks = [MetricsCallback(run_dir / "metrics.jsonl", config_hash(cfg), global_step(checkpoint))]
    if cfg.stop_at_step is not None:
        callbacks.append(StopAtStep(cfg.stop_at_step))
    if backend == "unsloth":
        from services.train.finetune.unsloth_backend import build_trainer
    else:
        from services.train.finetune.peft_backend import build_trainer
    trainer, processor = build_trainer(cfg, records, instruction, run_dir / "checkpoints", callbacks)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    step, target = trainer.state.global_step, trainer.state.max_steps
    finished = step >= target
    if finished:  # the final adapter, self-contained: what finetune-infer loads
        trainer.model.save_pretrained(run_dir / ADAPTER_DIR)
        processor.save_pretrained(run_dir / ADAPTER_DIR)
        save_config(cfg, run_dir / ADAPTER_DIR, name=TRAIN_CONFIG)
    summary = {"run": cfg.run, "backend": backend, "records": len(records), "step": step, "max_steps": target,
               "finished": finished, "resumed_from": checkpoint.name if checkpoint else None,
               "train_loss": result.training_loss, "seconds": round(time.time() - started, 2),
               "config_hash": config_hash(cfg)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    try:
        plot_metrics(run_dir / "metrics.jsonl", run_dir / "loss.png", ["loss"])
    except (ValueError, FileNotFoundError) as e:  # no loss logged yet (a run stopped before its first log)
        log.warning("no loss plot: %s", e)
    log.info("%s at step %d/%d: %s", "done" if finished else "stopped", step, target,
             f"adapter in {run_dir / ADAPTER_DIR}" if finished else f"resume it with the same command ({run_dir})")
    return summary

