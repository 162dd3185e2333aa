"""Gemma-3 `<reminder>` LoRA fine-tuning: records, the unsloth (CUDA) and peft backends, inference.

Verbs `finetune` (train.py), `finetune-infer` (infer.py) and `tiny-gemma` (tiny.py); config.py holds their settings.
"""
