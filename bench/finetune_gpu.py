"""Gemma-3 LoRA fine-tuning speed and memory: the unsloth backend against the peft backend (CUDA only).

    python bench/finetune_gpu.py [--hidden 1024] [--layers 8] [--steps 12] [--warmup 3]

Both backends train the same randomly initialised, tiny-but-real-architecture Gemma3ForConditionalGeneration
(SigLIP vision tower + Gemma-3 decoder, services/train/finetune/tiny.py) with the original project's recipe: 4-bit nf4,
LoRA r=16 on vision+language attention+MLP, batch 2 x grad-accum 4, adamw_8bit, bf16, gradient checkpointing, on
the demo's <reminder> records. The peft backend runs first, because importing unsloth patches transformers for
the rest of the process. Steps/s is measured over the optimizer steps after `--warmup` (kernel compilation,
allocator growth); peak memory is torch.cuda.max_memory_allocated over the whole training of each backend.
Without CUDA it prints one "skipped" line and no figures.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(backend: str, model_dir: Path, work: Path, steps: int, warmup: int, data: Path) -> tuple[float, float]:
    """(optimizer steps per second after warmup, peak GiB) of one backend, in this (fresh) process."""
    if backend == "unsloth":  # first: it patches transformers, peft and trl, which the imports below load
        from services.train.finetune.unsloth_first import import_unsloth

        import_unsloth()
    import torch
    from transformers import TrainerCallback

    from services.train.finetune.train import load_records
    from services.train.finetune.config import FinetuneConfig
    from services.train.finetune.records import instruction_for
    from shared.config import load_config

    cfg = load_config(FinetuneConfig, None, [
        f"run=bench_{backend}", f"outputs_root={work}", f"backend={backend}",
        f"model.path={model_dir}", f"data.dialogs={data / 'train.json'}", f"data.images={data / 'images'}",
        "data.limit_dialogs=40", f"optim.max_steps={steps}", f"save_every={steps * 10}", "optim.warmup_steps=0",
        "model.max_seq_length=1024"])

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    clock = StepClock()
    if backend == "unsloth":
        from services.train.finetune.unsloth_backend import build_trainer
    else:
        from services.train.finetune.peft_backend import build_trainer
    records = load_records(cfg)
    trainer, _ = build_trainer(cfg, records, instruction_for(cfg.data.reminder, None), work / backend, [clock])
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    peak = torch.cuda.max_memory_allocated() / 2**30
    timed = clock.ends[warmup - 1:]
    return (len(timed) - 1) / (timed[-1] - timed[0]), peak


def in_own_process(backend: str, model_dir: Path, work: Path, args) -> tuple[float, float]:
    out = work / f"{backend}.json"
    subprocess.run([sys.executable, __file__, "--backend", backend, "--model", str(model_dir), "--work", str(work),
                    "--steps", str(args.steps), "--warmup", str(args.warmup), "--data", str(args.data),
                    "--result", str(out)], check=True)
    return tuple(json.loads(out.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "demo")
    # one backend in this process (what the parent starts for each): --backend, --model, --work, --result
    parser.add_argument("--backend", choices=("peft", "unsloth"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        args.result.write_text(json.dumps(measure(args.backend, args.model, args.work, args.steps, args.warmup,
                                                  args.data)))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("finetune_gpu: skipped (no CUDA device; the figures need a GPU)")
        return 0
    if not (args.data / "train.json").is_file():
        print(f"finetune_gpu: {args.data}/train.json missing; run `make data-demo` first", file=sys.stderr)
        return 2
    if args.steps < args.warmup + 2:
        parser.error("--steps must exceed --warmup by at least 2")
    from services.train.finetune.tiny import build_tiny_gemma3

    print(f"device: {torch.cuda.get_device_name()} | model: tiny Gemma-3 hidden={args.hidden} layers={args.layers}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build_tiny_gemma3(work / "model", hidden=args.hidden, layers=args.layers)
        peft_rate, peft_peak = in_own_process("peft", model_dir, work, args)
        unsloth_rate, unsloth_peak = in_own_process("unsloth", model_dir, work, args)
    print(f"unsloth_steps_per_s: {unsloth_rate:.4f}")
    print(f"peft_steps_per_s: {peft_rate:.4f}")
    print(f"unsloth_speedup: {unsloth_rate / peft_rate:.3f}")
    print(f"unsloth_peak_mem_gib: {unsloth_peak:.3f}")
    print(f"peft_peak_mem_gib: {peft_peak:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
