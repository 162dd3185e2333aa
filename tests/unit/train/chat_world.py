"""A small real-encoder world for the chat tests: pictures of every kind a user may upload, a VisDial-format split
over them, its cpu_default shards written by the real extract verb (in the extract venv), and a tiny random LLM.

The pictures are drawn here (no data files): RGB, RGBA, a palette with transparency, grayscale, a JPEG and pictures
that are not square or not 64 px, so the chat's copy of the extract recipe meets every conversion and resize path.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from tests.demo_artifacts import ROOT, venv_python
from tests.unit.train.toy_world import save_tiny_llm

ANSWERS = ["red", "green", "blue", "yellow", "circle", "square", "yes", "no"]
QUESTIONS = ["what color is the shape?", "what shape is it?", "is there a red shape?",
             "what was the color of the shape in the first picture?"]
# image id -> (file suffix, mode, size, colour, shape)
PICTURES = {1: (".png", "RGB", (64, 64), "red", "circle"), 2: (".png", "RGBA", (64, 64), "blue", "square"),
            3: (".png", "P", (80, 48), "green", "circle"), 4: (".png", "L", (64, 64), "yellow", "square"),
            5: (".jpg", "RGB", (200, 120), "red", "square"), 6: (".png", "RGB", (33, 90), "blue", "circle")}
# dialogs: (image id shown at each round, question index, answer)
DIALOGS = [
    [(1, 0, "red"), (1, 1, "circle"), (2, 0, "blue"), (2, 3, "red")],
    [(3, 0, "green"), (4, 0, "yellow"), (4, 2, "no"), (4, 3, "green")],
    [(5, 1, "square"), (6, 0, "blue"), (6, 1, "circle"), (6, 3, "red")],
]


@dataclass
class ChatWorld:
    root: Path
    dialogs: Path
    images: Path
    embeddings: Path
    llm: Path


def draw(path: Path, mode: str, size: tuple[int, int], colour: str, shape: str) -> None:
    image = Image.new("RGB", size, "white")
    box = (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4)
    (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)(box, fill=colour)
    if mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(Image.new("L", size, 200))
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
        image.info["transparency"] = 0
    elif mode == "L":
        image = image.convert("L")
    image.save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))


def write_split(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for image_id, (suffix, mode, size, colour, shape) in PICTURES.items():
        draw(images / f"{image_id}{suffix}", mode, size, colour, shape)
    dialogs = []
    for plan in DIALOGS:
        rounds = []
        for image_id, question, answer in plan:
            options = list(range(len(ANSWERS)))
            rounds.append({"question": question, "answer": ANSWERS.index(answer), "answer_options": options,
                           "gt_index": ANSWERS.index(answer), "image_id": image_id,
                           "kind": "memory" if question == 3 else "current"})
            if question == 3:
                rounds[-1]["evidence_round"] = 1
        dialogs.append({"image_id": plan[0][0], "caption": "a shape", "dialog": rounds})
    doc = {"version": "1.0", "split": "train",
           "data": {"num_options": len(ANSWERS), "questions": QUESTIONS, "answers": ANSWERS, "dialogs": dialogs}}
    path = root / "train.json"
    path.write_text(json.dumps(doc))
    return path, images


def build(root: Path) -> ChatWorld:
    dialogs, images = write_split(root)
    out_root = root / "embeddings"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([venv_python("extract"), "-m", "services.extract", "--config",
                           str(ROOT / "configs/extract/cpu_default.yaml"), "split=train", f"data.dataset={dialogs}",
                           f"data.image_root={images}", f"out_root={out_root}", "num_workers=0", "progress=none"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"extract failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    llm = root / "llm"
    save_tiny_llm(llm, QUESTIONS + ANSWERS + [" ".join(ANSWERS)] * 3)
    return ChatWorld(root, dialogs, images, out_root / "cpu_default" / "train", llm)


def bridge_overrides(world: ChatWorld, run: str) -> list[str]:
    """A tiny bridge over this world's real 1280/384-d shards, with reminders in the prompt."""
    return [f"run={run}", f"outputs_root={world.root / 'outputs'}", f"data.dialogs={world.dialogs}",
            f"data.embeddings={world.embeddings}", "data.encoder_id=cpu_default", f"model.llm.path={world.llm}",
            "model.dim=16", "model.max_turns=6", "model.memory_bank_length=2", "model.max_pictures=3",
            "model.query_memory_bank=true", "model.qformer.num_query_tokens=4", "model.qformer.hidden_size=16",
            "model.qformer.num_hidden_layers=2", "model.qformer.num_attention_heads=2",
            "model.qformer.intermediate_size=32", "prompt.reminder=retrieved", "prompt.max_prompt_tokens=160",
            "optim.batch_size=4", "optim.micro_batch_size=4", "optim.warmup_steps=0", "optim.max_steps=3",
            "optim.lr=0.003", "save_every=3", "log_every=1", "num_threads=1", "device=cpu"]
