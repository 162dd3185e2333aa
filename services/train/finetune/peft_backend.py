"""The peft backend: transformers + peft (+ bitsandbytes 4-bit) with the plain `transformers.Trainer`.

Runs anywhere (CPU included). The plain Trainer rather than TRL's SFTTrainer because this backend brings its own
collator (services/train/finetune/collate.py) that masks everything but the response exactly; SFTTrainer would
only add dataset preparation that has to be switched off again. Checkpointing, resuming and logging are the
Trainer's, shared with the unsloth backend (services/train/finetune/trainer.py).
"""
from __future__ import annotations

from pathlib import Path

from services.train.finetune.collate import RecordDataset, ResponseOnlyCollator
from services.train.finetune.config import FinetuneConfig
from services.train.finetune.model import attach_lora, load_base, resolve_device
from services.train.finetune.records import FinetuneRecord
from services.train.finetune.trainer import trainer_kwargs


def build_trainer(cfg: FinetuneConfig, records: list[FinetuneRecord], instruction: str, run_dir: Path,
                  callbacks: list):
    """(trainer, processor) for the peft backend; the trainer's model is the PeftModel."""
    from transformers import Trainer, TrainingArguments

    device = resolve_device(cfg.device)
    dtype = cfg.model.dtype
    if device.type == "cpu" and cfg.optim.precision == "fp32":
        dtype = "float32"  # bf16 weights with fp32 compute would only cost conversions on CPU
    model, processor = load_base(cfg.model.path, cfg.model.load_in_4bit, dtype, device)
    model = attach_lora(model, cfg.lora, cfg.model.load_in_4bit, cfg.model.gradient_checkpointing, cfg.seed)
    args = TrainingArguments(**trainer_kwargs(cfg, run_dir, use_cpu=device.type == "cpu"))
    collator = ResponseOnlyCollator(processor, instruction, cfg.model.max_seq_length)
    trainer = Trainer(model=model, args=args, train_dataset=RecordDataset(records), data_collator=collator,
                      callbacks=callbacks)
    return trainer, processor
