"""Fine-tuning records: conversation without the open answer, <reminder> responses, generated records, configs.

Also holds the tiny VisDial split + images that the other test_finetune_* files build on (`write_split`).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.train.finetune.config import FinetuneConfig, FinetuneInferConfig
from services.train.finetune.records import (RecordError, build_messages, instruction_for, records_from_generated,
                                             records_from_visdial)
from shared.config import ConfigError, load_config
from shared.images import MissingImageError
from shared.memory import GateConfig
from shared.reminder import parse_reminder, strip_blocks

QUESTIONS = ["what color is the shape?", "what shape is it?", "is it big?",
             "what color was the shape in the first picture?"]
ANSWERS = ["red", "circle", "yes", "blue", "square", "no", "teal"]
COLORS = {11: (255, 0, 0), 12: (0, 0, 255), 13: (0, 128, 0)}


def _round(q: int, a: int, other: int, **extra) -> dict:
    return {"question": q, "answer": a, "answer_options": [a, other], "gt_index": 0, **extra}


def write_split(folder: Path) -> tuple[Path, Path]:
    """(dialogs json, images folder): dialog 11 (3 current rounds), dialog 12 (2 pictures + a memory question)."""
    from PIL import Image

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for image_id, color in COLORS.items():
        Image.new("RGB", (40, 40), color).save(images / f"{image_id}.png")
    dialogs = [
        {"image_id": 11, "caption": "a shape", "dialog": [
            _round(0, 0, 5, kind="current"), _round(1, 1, 4, kind="current"), _round(2, 2, 5, kind="current")]},
        {"image_id": 12, "caption": "another shape", "dialog": [
            _round(0, 3, 0, kind="current"), _round(1, 4, 1, image_id=13, kind="current"),
            _round(3, 6, 3, image_id=13, kind="memory", evidence_round=1)]},
    ]
    # dialog 12's memory answer is "teal" (index 6) so it appears nowhere else: a leak into the prompt would show.
    doc = {"version": "1.0", "split": "train",
           "data": {"num_options": 2, "questions": QUESTIONS, "answers": ANSWERS, "dialogs": dialogs}}
    path = folder / "train.json"
    path.write_text(json.dumps(doc))
    return path, images


@pytest.fixture
def split(tmp_path):
    return write_split(tmp_path)


def test_conversation_never_holds_the_open_answer(split):
    records = records_from_visdial(*split, reminder="retrieved")
    assert [(r.image_id, r.round_id) for r in records] == [(11, 1), (11, 2), (11, 3), (12, 1), (12, 2), (12, 3)]
    memory = records[-1]
    assert memory.conversation.endswith("Q: what color was the shape in the first picture?\nA:")
    assert "teal" not in memory.conversation and memory.response.endswith("\nteal")
    assert memory.image_path.name == "13.png" and memory.kind == "memory"  # the picture shown at that round


def test_retrieved_reminder_lists_earlier_turns_only(split):
    records = records_from_visdial(*split, reminder="retrieved", top_k=3)
    first, memory = records[3], records[-1]
    assert first.response == "<reminder>\n</reminder>\nblue"  # round 1: nothing to remember, same shape
    items = parse_reminder(memory.response, strict=True)
    assert {i.turn for i in items} == {1, 2} and all(i.turn < memory.round_id for i in items)
    evidence = next(i for i in items if i.turn == 1)
    assert (evidence.answer, evidence.image_note) == ("blue", "picture 1")
    assert strip_blocks(memory.response) == ("teal", True)


def test_top_k_and_no_reminder(split):
    assert len(parse_reminder(records_from_visdial(*split, reminder="retrieved", top_k=1)[2].response)) == 1
    plain = records_from_visdial(*split, reminder="none")
    assert [r.response for r in plain] == ["red", "circle", "yes", "blue", "square", "teal"]


def test_gated_reminder_only_where_the_question_refers_back(split):
    """Only dialog 12's memory round (about "the first picture" while the second is shown) recalls; every other
    response is the bare answer, and each record says whether its gate fired."""
    gated = records_from_visdial(*split, reminder="gated", top_k=3)
    retrieved = records_from_visdial(*split, reminder="retrieved", top_k=3)
    plain = records_from_visdial(*split, reminder="none")
    assert [r.gate for r in gated] == [r.kind == "memory" for r in gated] == [False] * 5 + [True]
    assert [g.response for g in gated] == [p.response for p in plain[:5]] + [retrieved[-1].response]
    assert all(r.gate is None for r in retrieved + plain)
    never = records_from_visdial(*split, reminder="gated", gate=GateConfig(refers_back=False))
    assert [r.response for r in never] == [r.response for r in plain]
    cfg = load_config(FinetuneConfig, None, ["data.reminder=gated", "data.gate.min_relevance=1.5"])
    assert cfg.data.gate.min_relevance == 1.5 and "earlier turn or picture" in instruction_for("gated", None)
    with pytest.raises(ConfigError, match="carries its own reminders"):
        load_config(FinetuneConfig, None, ["data.source=generated", "data.reminder=gated"])


def test_round_selection_and_inference_records(split):
    assert [r.round_id for r in records_from_visdial(*split, rounds="memory")] == [3]
    assert [(r.image_id, r.round_id) for r in records_from_visdial(*split, rounds="last")] == [(11, 3), (12, 3)]
    assert all(r.response is None for r in records_from_visdial(*split, with_response=False))
    assert len(records_from_visdial(*split, limit_dialogs=1)) == 3


def test_no_selected_round_is_an_error(tmp_path, split):
    doc = json.loads(split[0].read_text())
    for dialog in doc["data"]["dialogs"]:
        for rnd in dialog["dialog"]:
            rnd.pop("kind", None), rnd.pop("evidence_round", None)
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RecordError, match="no rounds selected by rounds='memory'"):
        records_from_visdial(path, split[1], rounds="memory")


def test_missing_image_names_the_id_and_folder(split):
    (split[1] / "13.png").unlink()
    with pytest.raises(MissingImageError, match=f"image id 13 under {split[1]}"):
        records_from_visdial(*split)


def test_messages_put_the_image_before_the_text(split):
    record = records_from_visdial(*split, reminder="retrieved")[1]
    messages = build_messages(record, "IMG", "Answer.")
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"][0] == {"type": "image", "image": "IMG"}
    assert messages[0]["content"][1]["text"] == "Answer.\n\n" + record.conversation
    assert messages[1]["content"][0]["text"] == record.response
    assert len(build_messages(record, "IMG", "Answer.", with_response=False)) == 1


def _generated(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "records.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"id": "train:12:3", "image_id": 12, "round_id": 3, "prompt_kind": "gen_reason", "images": [12, 13],
        "conversation": "Q: what color is the shape?\nA: blue\nQ: what color was it in the first picture?\nA:",
        "response": "<reminder>\n[turn 1] Q: what color is the shape? A: blue\n</reminder>\nblue"}


def test_generated_records_keep_or_strip_the_reminder(tmp_path, split):
    path = _generated(tmp_path, [GOOD])
    kept = records_from_generated(path, split[1], reminder="generated")[0]
    assert kept.response == GOOD["response"] and kept.image_path.name == "13.png"
    assert records_from_generated(path, split[1], reminder="none")[0].response == "blue"


@pytest.mark.parametrize("row, message", [
    ({**GOOD, "conversation": "Q: what color?\nA: blue"}, "does not end with the open question's 'A:'"),
    ({**GOOD, "response": "blue"}, "no <reminder> block"),
    ({**GOOD, "round_id": "3"}, "round_id missing or not int"),
    ({**GOOD, "response": "<reminder>x</reminder>"}, "no answer after the reminder block"),
    ("{not json", "not valid JSON"),
])
def test_bad_generated_records_name_file_and_line(tmp_path, split, row, message):
    path = _generated(tmp_path, [GOOD, row])
    with pytest.raises(RecordError, match=message) as err:
        records_from_generated(path, split[1], reminder="generated")
    assert f"{path}:2:" in str(err.value)


def test_config_rejects_inconsistent_switches(tmp_path):
    with pytest.raises(ConfigError, match="data.reminder=generated needs data.source=generated"):
        load_config(FinetuneConfig, None, ["data.reminder=generated"])
    with pytest.raises(ConfigError, match="finetune_attention_modules and finetune_mlp_modules are both false"):
        load_config(FinetuneConfig, None, ["lora.finetune_attention_modules=false", "lora.finetune_mlp_modules=false"])
    with pytest.raises(ConfigError, match="needs both image"):
        load_config(FinetuneInferConfig, None, ["image=x.png"])


def test_shipped_finetune_configs_load():
    root = Path(__file__).resolve().parents[3] / "configs" / "train"
    seed = load_config(FinetuneConfig, root / "gemma3_4b_reminder_qlora.yaml")
    assert (seed.lora.r, seed.lora.alpha, seed.lora.dropout) == (16, 16, 0.0)
    assert (seed.optim.micro_batch_size, seed.optim.batch_size // seed.optim.micro_batch_size, seed.optim.lr) == \
        (2, 4, 1e-5)  # batch 2 x grad-accum 4, as the original recipe
    assert (seed.optim.optimizer, seed.optim.precision, seed.model.max_seq_length) == ("adamw_8bit", "bf16", 2048)
    assert seed.model.load_in_4bit and seed.backend == "auto"
    for name in ("gemma3_tiny_cpu.yaml",):
        assert load_config(FinetuneConfig, root / name).backend == "peft"
    for name in ("finetune_infer_tiny_cpu.yaml", "finetune_infer_gemma3.yaml"):
        load_config(FinetuneInferConfig, root / name)


def test_missing_model_folder_is_one_clear_line(tmp_path, split, capsys):
    from services.train.__main__ import main

    code = main(["finetune", f"model.path={tmp_path / 'gemma3-tiny-random'}", f"data.dialogs={split[0]}",
                 f"data.images={split[1]}", f"outputs_root={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code == 2 and "config.json missing" in err and "python -m services.train tiny-gemma out=" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing half-written
