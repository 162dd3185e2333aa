"""bench/gpu_check.py parts of Gemma-3 fine-tuning: the model folder + records, `finetune`, `finetune-infer`.

Each runs in its own process (gpu_check.py starts them): `finetune` on the unsloth backend must import unsloth before
anything imports transformers, and `finetune-infer` must work in a process that never imported unsloth.
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

from gpu_check import REPO, Ctx

COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "rectangle")
QUESTIONS = ("what color is the shape?", "what shape is it?", "is there a picture?")
FILLER = "green yellow gray black brown teal orange purple white circle rectangle triangle picture".split()
DIALOGS, ROUNDS = 16, 10


def sizes(ctx: Ctx) -> dict:
    """Real: the recipe's max_seq_length with records just under it. Dry: the tiny model's."""
    return {"max_seq_length": 384 if ctx.dry else 2048, "target_tokens": 340 if ctx.dry else 1960}


def write_dialogs(folder: Path, filler_words: int, seed: int = 0) -> tuple[Path, Path]:
    """A VisDial-format split of 10-round dialogs (one image each) whose captions carry `filler_words` extra words."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    answers = [*COLORS, *SHAPES, "yes", "no"]
    dialogs = []
    for image_id in range(1, DIALOGS + 1):
        color, shape = rng.choice(COLORS), rng.choice(SHAPES)
        image = Image.new("RGB", (96, 96), "gray")
        ImageDraw.Draw(image).ellipse((16, 16, 80, 80), fill=color)
        image.save(images / f"{image_id}.png")
        rounds = []
        for r in range(ROUNDS):
            q = r % len(QUESTIONS)
            answer = answers.index((color, shape, "yes")[q])
            rounds.append({"question": q, "answer": answer, "answer_options": [answer, (answer + 1) % len(answers)],
                           "gt_index": 0})
        caption = " ".join([f"a {color} {shape}"] + [FILLER[(image_id + i) % len(FILLER)] for i in range(filler_words)])
        dialogs.append({"image_id": image_id, "caption": caption, "dialog": rounds})
    path = folder / "train.json"
    path.write_text(json.dumps({"version": "1.0", "split": "train", "data": {
        "num_options": 2, "questions": list(QUESTIONS), "answers": answers, "dialogs": dialogs}}))
    return path, images


def _longest(processor, folder: Path, filler: int) -> int:
    from services.train.finetune.collate import token_lengths
    from services.train.finetune.records import instruction_for, records_from_visdial

    records = records_from_visdial(*write_dialogs(folder, filler), rounds="last", reminder="retrieved")
    return max(token_lengths(processor, records, instruction_for("retrieved", None)))


def part_gemma_model(ctx: Ctx) -> dict:
    """The model folder (random weights) and records whose longest is just under max_seq_length."""
    from transformers import AutoProcessor

    from services.train.finetune.collate import check_lengths
    from services.train.finetune.records import RecordError, instruction_for, records_from_visdial
    from services.train.finetune.tiny import build_gemma3_4b, build_tiny_gemma3

    started = time.perf_counter()
    folder = ctx.work / "gemma"
    build_tiny_gemma3(folder) if ctx.dry else build_gemma3_4b(folder, device="cuda")
    built = time.perf_counter() - started
    processor = AutoProcessor.from_pretrained(folder)
    size = sizes(ctx)
    data = ctx.work / "dialogs"
    low, high = _longest(processor, data, 0), _longest(processor, data, 200)  # tokens grow linearly with the words
    assert low < size["target_tokens"], f"records of {low} tokens without filler: lower DIALOGS/ROUNDS"
    filler = int((size["target_tokens"] - low) * 200 / (high - low))
    dialogs, images = write_dialogs(data, filler)
    records = records_from_visdial(dialogs, images, rounds="last", reminder="retrieved")
    instruction = instruction_for("retrieved", None)
    longest = check_lengths(processor, records, instruction, size["max_seq_length"])
    try:  # one token less and the same records are refused, naming one
        check_lengths(processor, records, instruction, longest - 1)
        raise AssertionError(f"a record of {longest} tokens passed max_seq_length={longest - 1}")
    except RecordError as e:
        assert "record " in str(e), e
    image_tokens = processor.image_seq_length
    gib = sum(f.stat().st_size for f in folder.iterdir()) / 2**30
    print(f"model {folder} ({gib:.2f} GiB, built in {built:.0f} s); "
          f"{len(records)} records, longest {longest} tokens ({image_tokens} image tokens)")
    return {"build_s": built, "longest_record_tokens": longest, "image_tokens": image_tokens}


def part_finetune(ctx: Ctx) -> dict:
    late = []
    if not ctx.dry:  # first of all, as `finetune` does: unsloth patches what it finds unimported
        import warnings

        from services.train.finetune.unsloth_first import import_unsloth

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import_unsloth()
        late = [str(w.message) for w in caught if "imported before" in str(w.message)]
        assert not late, late
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from services.train.finetune import train as finetune
    from services.train.finetune.config import FinetuneConfig
    from shared.config import load_config
    from shared.runlog import read_metrics

    backend = "peft" if ctx.dry else "unsloth"
    module = __import__(f"services.train.finetune.{backend}_backend", fromlist=["build_trainer"])
    cuda = not ctx.dry

    class StepClock(TrainerCallback):
        ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    built, original = {}, module.build_trainer

    def spy(cfg, records, instruction, run_dir, callbacks):  # keeps the trainer to inspect it, adds the clock
        built["trainer"], built["processor"] = original(cfg, records, instruction, run_dir, callbacks + [StepClock()])
        return built["trainer"], built["processor"]

    module.build_trainer = spy
    overrides = [f"run=gpu_check", f"outputs_root={ctx.work / 'outputs'}", f"backend={backend}",
                 f"device={ctx.device}", f"model.path={ctx.work / 'gemma'}",
                 f"model.max_seq_length={sizes(ctx)['max_seq_length']}",
                 f"data.dialogs={ctx.work / 'dialogs/train.json'}",
                 f"data.images={ctx.work / 'dialogs/images'}", "data.rounds=last", "optim.max_steps=3",
                 "optim.warmup_steps=0", "save_every=100", "log_every=1"]
    if ctx.dry:
        overrides += ["model.dtype=float32", "model.gradient_checkpointing=false", "optim.precision=fp32",
                      "data.num_workers=0", "num_threads=2"]
    cfg = load_config(FinetuneConfig, REPO / "configs/train/gemma3_4b_reminder_qlora.yaml", overrides)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    summary = finetune.run(cfg)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else _rss_gib()
    assert summary["finished"] and summary["step"] == 3 and summary["backend"] == backend, summary
    losses = [m["loss"] for m in read_metrics(cfg.run_dir / "metrics.jsonl") if "loss" in m]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), losses
    weights = load_file(cfg.run_dir / "adapter" / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    moved = {k for k, v in lora_b.items() if v.float().abs().sum() > 0}
    towers = {tower: sum(tower in k for k in moved) for tower in ("vision_tower", "language_model")}
    assert all(towers.values()), f"LoRA B moved in {towers} of {len(lora_b)}: a tower got no gradient"
    trainer, processor = built["trainer"], built["processor"]
    dataset = trainer.train_dataset
    batch = trainer.data_collator([dataset[0], dataset[1]])
    tokenizer = getattr(processor, "tokenizer", processor)
    for row in range(2):
        labels = batch["labels"][row]
        decoded = tokenizer.decode(labels[labels != -100])
        response = dataset.records[row].response
        assert decoded.removesuffix("\n").removesuffix("<end_of_turn>") == response, (decoded, response)
    ends = StepClock.ends
    step_s = (ends[-1] - ends[0]) / (len(ends) - 1)  # steps 2..3: the first pays for compilation and warm-up
    print(f"{type(trainer).__name__} on {type(trainer.model).__name__}; losses {losses}; LoRA B moved {towers} of "
          f"{len(lora_b)}; labels = responses; peak {peak:.2f} GiB; {step_s:.2f} s per optimizer step")
    return {"peak_mem_gib": peak, "step_s": step_s, "steps_per_s": 1 / step_s,
            "samples_per_s": cfg.optim.batch_size / step_s, "loss": losses[-1], "lora_b_moved": len(moved),
            "late_imports": len(late)}


def part_finetune_infer(ctx: Ctx) -> dict:
    import torch

    from services.train.finetune.config import FinetuneInferConfig
    from services.train.finetune.infer import Predictor, predict_split
    from shared.config import load_config
    from shared.predictions import read_predictions

    cfg = load_config(FinetuneInferConfig, REPO / "configs/train/finetune_infer_gemma3.yaml", [
        "run=gpu_check", f"outputs_root={ctx.work / 'outputs'}", f"device={ctx.device}",
        f"data.dialogs={ctx.work / 'dialogs/train.json'}", f"images={ctx.work / 'dialogs/images'}",
        "data.rounds=last", "data.limit_dialogs=2", "batch_size=2", "max_new_tokens=16", "resume=false",
        "overwrite=true"])
    started = time.perf_counter()
    predictor = Predictor(cfg)  # raises if an adapter weight finds no module, or a module no weight
    load_s = time.perf_counter() - started
    assert "unsloth" not in sys.modules, "finetune-infer imported unsloth"
    names = {n: type(m).__name__ for n, m in predictor.model.named_modules()}
    four_bit = [n for n, kind in names.items() if kind == "Linear4bit"]
    assert four_bit and not [n for n in four_bit if ".vision_tower." in n], "vision tower loaded in 4-bit"
    adapters = sum(n.endswith(".lora_A") for n in names)
    started = time.perf_counter()
    rows = read_predictions(predict_split(cfg, predictor))
    if ctx.device == "cuda":
        torch.cuda.synchronize()
    generate_s = time.perf_counter() - started
    assert len(rows) == 2 and all(isinstance(r["raw"], str) for r in rows), rows
    print(f"adapter: {adapters} LoRA modules, no missing or unexpected keys; base: {len(four_bit)} nf4 modules, none "
          f"in the vision tower; loaded in {load_s:.1f} s; generated {[r['raw'][:40] for r in rows]}")
    return {"load_s": load_s, "generate_s": generate_s, "lora_modules": adapters}


def _rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
