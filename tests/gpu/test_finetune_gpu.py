"""The unsloth backend for real (skipped without CUDA): 2 steps of FastVisionModel 4-bit + LoRA + SFTTrainer with
unsloth's vision collator on a tiny random Gemma-3, then the adapter reloads through the peft path and generates.

Training runs through the command line in a fresh process: unsloth refuses to start in a process that has already
imported transformers (as pytest's has, through the other tests). The real-size run is bench/gpu_check.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_two_unsloth_steps_then_generate(tmp_path):
    from services.train.finetune.config import FinetuneInferConfig
    from services.train.finetune.infer import Predictor, predict_split
    from services.train.finetune.tiny import build_tiny_gemma3
    from shared.config import load_config
    from shared.predictions import read_predictions
    from tests.unit.train.test_finetune_data import write_split

    dialogs, images = write_split(tmp_path)
    model = build_tiny_gemma3(tmp_path / "tiny-gemma3", hidden=128, layers=2)
    roots = [f"outputs_root={tmp_path / 'outputs'}"]
    subprocess.run([sys.executable, "-m", "services.train", "finetune",
                    "run=unsloth2", *roots, "backend=unsloth", f"model.path={model}", "model.load_in_4bit=true",
                    "model.dtype=bfloat16", "model.max_seq_length=512", f"data.dialogs={dialogs}",
                    f"data.images={images}", "data.num_workers=0", "optim.max_steps=2", "optim.batch_size=2",
                    "optim.micro_batch_size=2", "optim.optimizer=adamw_8bit", "optim.precision=bf16"],
                   check=True, cwd=Path(__file__).resolve().parents[2])
    summary = json.loads((tmp_path / "outputs" / "unsloth2" / "summary.json").read_text())
    assert summary["backend"] == "unsloth" and summary["finished"] and summary["step"] == 2
    run_dir = tmp_path / "outputs" / "unsloth2" / "adapter"
    assert json.loads((run_dir / "adapter_config.json").read_text())["r"] == 16
    assert (run_dir / "adapter_model.safetensors").is_file()
    infer = load_config(FinetuneInferConfig, None, ["run=unsloth2", *roots, "device=cuda", f"data.dialogs={dialogs}",
                                                    f"images={images}", "max_new_tokens=4"])
    rows = read_predictions(predict_split(infer, Predictor(infer)))
    assert len(rows) == 6
