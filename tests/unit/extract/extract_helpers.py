"""Test helpers: tiny VisDial-format splits with real PNG images, and configs for the tiny ImageBind."""
from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from services.extract.config import ExtractConfig
from shared.config import load_config

REPO = Path(__file__).resolve().parents[3]
COLORS = ["red", "green", "blue", "yellow", "teal", "brown", "gray", "black"]
SHAPES = ["circle", "rectangle", "triangle"]
# Tiny ImageBind: the real ImageBindModel classes, 2-3 orders of magnitude smaller.
TINY_ARCH = {"vision_embed_dim": 32, "vision_num_blocks": 1, "vision_num_heads": 2,
             "text_embed_dim": 32, "text_num_blocks": 1, "text_num_heads": 2, "out_embed_dim": 24}


def draw_image(path: Path, color: str, shape: str, size: int = 64) -> None:
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    box = (12, 12, size - 12, size - 12)
    if shape == "circle":
        draw.ellipse(box, fill=color)
    elif shape == "rectangle":
        draw.rectangle(box, fill=color)
    else:
        draw.polygon([(size // 2, 10), (10, size - 10), (size - 10, size - 10)], fill=color)
    image.save(path)


def make_split(root: Path, split: str = "train", dialogs: int = 6, rounds: int = 3, per_round_images: bool = False,
               test_style: bool = False, seed: int = 0, first_id: int = 1) -> Path:
    """Write <root>/<split>.json (VisDial v1.0 + demo extensions) and <root>/images/<id>.png; return the json path."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    questions, answers = ["what color is the shape?", "what shape is it?", "is there a shape?"], COLORS + SHAPES
    answers += ["yes", "no"]
    q_ids = {q: i for i, q in enumerate(questions)}
    a_ids = {a: i for i, a in enumerate(answers)}
    out, next_extra = [], first_id + 1000
    for d in range(dialogs):
        image_id = first_id + d
        color, shape = rng.choice(COLORS), rng.choice(SHAPES)
        draw_image(images / f"{image_id}.png", color, shape)
        n_rounds = rounds if d % 3 else max(1, rounds - 1)  # some dialogs are shorter: padding is exercised
        turns = []
        for r in range(n_rounds):
            q = questions[r % len(questions)]
            a = {0: color, 1: shape, 2: "yes"}[r % 3]
            turn = {"question": q_ids[q], "answer": a_ids[a], "answer_options": [a_ids[a], a_ids["no"], a_ids["yes"]],
                    "gt_index": 0}
            if per_round_images and r > 0:
                extra = next_extra
                next_extra += 1
                draw_image(images / f"{extra}.png", rng.choice(COLORS), rng.choice(SHAPES))
                turn["image_id"] = extra
            if test_style and r == n_rounds - 1:
                del turn["answer"], turn["gt_index"]
            turns.append(turn)
        out.append({"image_id": image_id, "caption": f"a {color} {shape}", "dialog": turns})
    data = {"version": "1.0", "split": split,
            "data": {"questions": questions, "answers": answers, "dialogs": out, "num_options": 3}}
    path = root / f"{split}.json"
    path.write_text(json.dumps(data))
    return path


def tiny_overrides(tmp_path: Path, checkpoint: Path, **extra: object) -> list[str]:
    base = {"data.dataset": f"{tmp_path}/data/{{split}}.json", "data.image_root": f"{tmp_path}/data/images",
            "out_root": f"{tmp_path}/emb", "encoder.name": "imagebind_huge", "encoder.id": "imagebind_tiny",
            "encoder.checkpoint": str(checkpoint), "encoder.architecture": json.dumps(TINY_ARCH),
            "num_workers": 0, "num_threads": 1, "device": "cpu", "progress": "none",
            "image_batch_size": 4, "text_batch_size": 5}
    base.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


def tiny_config(tmp_path: Path, checkpoint: Path, **extra: object) -> ExtractConfig:
    return load_config(ExtractConfig, REPO / "configs/extract/cpu_default.yaml",
                       tiny_overrides(tmp_path, checkpoint, **extra))
