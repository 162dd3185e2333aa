"""The unsloth backend (CUDA): the original project's recipe — FastVisionModel 4-bit + LoRA, TRL SFTTrainer, vision collator.

unsloth is imported only when this backend runs, and before transformers/peft/trl: `finetune` calls
unsloth_first.import_unsloth() before it imports this module (whose helpers load transformers). Loss on the response
only comes from the collator's `train_on_responses_only` with the chat template's user/assistant headers (config
instruction_part/response_part). That collator cuts records longer than model.max_seq_length silently, so
`finetune` refuses them before training (collate.check_lengths).
"""
from __future__ import annotations

import logging
from pathlib import Path

from services.train.finetune.unsloth_first import import_unsloth  # noqa: I001  (before anything loads transformers)
from services.train.finetune.collate import MessagesDataset
from services.train.finetune.config import FinetuneConfig
from services.train.finetune.model import DTYPES, check_model_dir
from services.train.finetune.records import FinetuneRecord
from services.train.finetune.trainer import trainer_kwargs

log = logging.getLogger(__name__)


def load_unsloth_model(cfg: FinetuneConfig):
    """(model with fresh LoRA adapters, processor) through unsloth's FastVisionModel."""
    fast_vision_model, _ = import_unsloth()
    folder = check_model_dir(cfg.model.path)
    model, processor = fast_vision_model.from_pretrained(
        str(folder), load_in_4bit=cfg.model.load_in_4bit, dtype=DTYPES[cfg.model.dtype],
        max_seq_length=cfg.model.max_seq_length,
        use_gradient_checkpointing="unsloth" if cfg.model.gradient_checkpointing else False,
        random_state=cfg.seed)
    lora = cfg.lora
    model = fast_vision_model.get_peft_model(
        model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
        finetune_vision_layers=lora.finetune_vision_layers, finetune_language_layers=lora.finetune_language_layers,
        finetune_attention_modules=lora.finetune_attention_modules, finetune_mlp_modules=lora.finetune_mlp_modules,
        random_state=cfg.seed, use_gradient_checkpointing="unsloth" if cfg.model.gradient_checkpointing else False)
    fast_vision_model.for_training(model)
    return model, processor


def build_trainer(cfg: FinetuneConfig, records: list[FinetuneRecord], instruction: str, run_dir: Path,
                  callbacks: list):
    """(trainer, processor) for the unsloth backend; the trainer's model is unsloth's PeftModel."""
    _, vision_collator = import_unsloth()
    from trl import SFTConfig, SFTTrainer

    model, processor = load_unsloth_model(cfg)
    collator = vision_collator(model, processor, max_seq_length=cfg.model.max_seq_length,
                               train_on_responses_only=True, instruction_part=cfg.instruction_part,
                               response_part=cfg.response_part)
    args = SFTConfig(**trainer_kwargs(cfg, run_dir, use_cpu=False), max_length=cfg.model.max_seq_length,
                     dataset_text_field="", dataset_kwargs={"skip_prepare_dataset": True})
    trainer = SFTTrainer(model=model, processing_class=processor, data_collator=collator, args=args,
                         train_dataset=MessagesDataset(records, instruction), callbacks=callbacks)
    return trainer, processor
