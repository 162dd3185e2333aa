"""Fixtures of the generation tests: a tiny VisDial split with real PNGs, configs, and the loopback servers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.generate.config import GenerateConfig
from tests.unit.generate.protocol_servers import ProtocolServer

# Two dialogs; every answer is unique, so a test can check that an open round's answer never reaches a prompt.
DIALOGS = [
    {"image_id": 11, "caption": "a red circle", "rounds": [
        ("what color is the shape?", "ans-crimson-11-1", 11, "current", None),
        ("what shape is it?", "ans-round-11-2", 11, "current", None),
        ("is there a triangle?", "ans-nope-11-3", 11, "current", None)]},
    {"image_id": 21, "caption": "a blue square", "rounds": [
        ("what color is the shape?", "ans-azure-21-1", 21, "current", None),
        ("what shape is in the image?", "ans-square-21-2", 22, "current", None),
        ("what color was the shape in the first picture?", "ans-azure-21-3", 22, "memory", 1)]},
]
ROUNDS = sum(len(d["rounds"]) for d in DIALOGS)


def write_split(folder: Path, split: str = "train") -> Path:
    questions, answers = [], []
    dialogs = []
    for d in DIALOGS:
        rounds = []
        for question, answer, image_id, kind, evidence in d["rounds"]:
            questions.append(question)
            answers.append(answer)
            rnd = {"question": len(questions) - 1, "answer": len(answers) - 1, "image_id": image_id, "kind": kind,
                   "answer_options": [len(answers) - 1, 0], "gt_index": 0}
            if evidence:
                rnd["evidence_round"] = evidence
            rounds.append(rnd)
        dialogs.append({"image_id": d["image_id"], "caption": d["caption"], "dialog": rounds})
    doc = {"version": "1.0", "split": split,
           "data": {"questions": questions, "answers": answers, "dialogs": dialogs, "num_options": 2}}
    path = folder / f"{split}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """data/{train,val}.json + images/<id>.png (real PNGs drawn with Pillow)."""
    from PIL import Image

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for split in ("train", "val"):
        write_split(data, split)
    for image_id, color in ((11, "red"), (21, "blue"), (22, "green")):
        Image.new("RGB", (8, 8), color).save(data / "images" / f"{image_id}.png")
    return data


def make_config(dataset: Path, out: Path, split: str = "train", **backend) -> GenerateConfig:
    """A config over `dataset`/<split>.json writing to `out`/gen/."""
    cfg = GenerateConfig(run="gen", outputs_root=str(out))
    cfg.data.dialogs = str(dataset / f"{split}.json")
    cfg.data.images = str(dataset / "images")
    cfg.backend.max_retries, cfg.backend.backoff_s = 2, 0.01
    for key, value in backend.items():
        setattr(cfg.backend, key, value)
    return cfg


@pytest.fixture
def servers():
    started: list[ProtocolServer] = []

    def start(protocol: str, script) -> ProtocolServer:
        started.append(ProtocolServer(protocol, script))
        return started[-1]

    yield start
    for server in started:
        server.close()
