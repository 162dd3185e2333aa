"""The chat's bridge engine is the bridge `infer` runs: fed a dialog's pictures, questions and earlier answers, it
gives the same answer and the same option log-probs as `infer` for that round, and shows the memory it used.

A tiny bridge is trained for 3 steps on the chat world's real cpu_default shards (reminders in the prompt, a 2-slot
memory bank, so the 4th turn sees two turns merged into one slot).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from services.train.__main__ import main as train_cli
from services.train.chat.bridge_engine import BridgeEngine
from services.train.chat.config import ChatConfig, ChatError
from services.train.chat.session import ChatInputError, Session
from shared.config import load_config
from shared.memory import COMPONENTS
from shared.visdial import load_visdial
from tests.unit.train.chat_world import PICTURES, bridge_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(chat_world):
    assert train_cli(["bridge", *bridge_overrides(chat_world, "chat")]) == 0
    overrides = [o for o in bridge_overrides(chat_world, "chat") if o.split("=")[0] in ("run", "outputs_root")]
    assert train_cli(["infer", *overrides, f"data.dialogs={chat_world.dialogs}",
                      f"data.embeddings={chat_world.embeddings}", "max_new_tokens=6", "device=cpu"]) == 0
    return overrides


@pytest.fixture(scope="module")
def engine(chat_world, trained):
    cfg = load_config(ChatConfig, None, [*trained, "device=cpu", f"bridge.candidates={chat_world.dialogs}",
                                         "bridge.max_new_tokens=6", f"images={chat_world.images}"])
    return BridgeEngine(cfg)


def picture_path(world, image_id: int):
    return world.images / f"{image_id}{PICTURES[image_id][0]}"


def test_the_chat_answers_as_infer_does(chat_world, trained, engine):
    split = load_visdial(chat_world.dialogs)
    predictions = {(r["image_id"], r["round_id"]): r for r in map(json.loads, (
        chat_world.root / "outputs/chat/predictions.jsonl").read_text().splitlines())}
    dialog = split.dialogs[0]  # pictures 1, 1, 2, 2; round 4 asks about the first picture
    session = Session()
    for rnd in dialog.rounds[:-1]:  # the history as the dataset has it: ground-truth answers
        if not session.pictures or session.current_picture.path != picture_path(chat_world, rnd.image_id):
            session.add_picture(picture_path(chat_world, rnd.image_id)).embedding = \
                engine.encoder.image(picture_path(chat_world, rnd.image_id))
        session.record(rnd.question, rnd.answer, engine.encoder.text(rnd.question), None)
    last = dialog.rounds[-1]
    streamed = list(engine.respond(session, last.question))
    turn = session.turns[-1]
    expected = predictions[(dialog.image_id, last.round_id)]
    assert turn.answer == expected["answer"] == streamed[-1]
    tokens = engine.tokenizer(turn.answer, add_special_tokens=False)["input_ids"] if turn.answer else []
    assert len(streamed) >= len(tokens)  # one update per generated token (+ the final one): streamed
    if len(tokens) > 1:
        assert len(set(streamed)) > 1 and all(streamed[-1].startswith(p) for p in streamed)
    # the top-5 candidates with their log-probs are infer's option scores (same options, same prefix)
    infer_scores = dict(zip(last.options, expected["scores"]))
    assert len(turn.memory.candidates) == 5
    for text, logprob in turn.memory.candidates:
        assert logprob == pytest.approx(infer_scores[text], abs=2e-3)
    assert [s for _, s in turn.memory.candidates] == sorted((s for _, s in turn.memory.candidates), reverse=True)
    # the prompt's reminder lines are infer's (predictions.jsonl carries them) and the panel marks them used
    assert expected["reminders"] and all(line in turn.memory.prompt for line in expected["reminders"])
    assert {r.turn for r in turn.memory.reminders if r.used} == {int(line.split("]")[0][6:])
                                                                 for line in expected["reminders"]}
    assert all(set(r.components) == set(COMPONENTS) for r in turn.memory.reminders)
    # 3 past turns in a 2-slot bank: the two most similar neighbours merged, every turn covered once
    assert sum(s.size for s in turn.memory.bank) == 3 and len(turn.memory.bank) == 2
    assert [(s.first_turn, s.last_turn) for s in turn.memory.bank] in ([(1, 2), (3, 3)], [(1, 1), (2, 3)])


def test_a_live_conversation_and_its_limits(chat_world, engine):
    session = Session()
    with pytest.raises(ChatInputError, match="add a picture first"):
        list(engine.respond(session, "what color is the shape?"))
    session.add_picture(picture_path(chat_world, 5), "upload")
    first = list(engine.respond(session, "what color is the shape?"))
    view = session.turns[0].memory
    assert first and view.reminders == [] and view.bank == []  # nothing to remember at turn 1
    session.add_picture(picture_path(chat_world, 3), "demo")
    list(engine.respond(session, "what was the color of the shape in the first picture?"))
    view = session.turns[1].memory
    assert [r.turn for r in view.reminders] == [1] and [(s.first_turn, s.size) for s in view.bank] == [(1, 1)]
    assert view.query_bank_sizes == [1] * len(view.query_bank_sizes) and view.query_bank_sizes
    assert session.turns[1].picture == 2 and session.dialog("x").rounds[-1].image_id == 2
    for _ in range(engine.model_cfg.max_turns - 2):
        list(engine.respond(session, "what shape is it?"))
    with pytest.raises(ChatInputError, match="at most 6 turns"):
        list(engine.respond(session, "one more?"))


def test_recording_the_banks_does_not_change_the_soft_tokens(chat_world, engine):
    session = Session()
    session.add_picture(picture_path(chat_world, 1)).embedding = engine.encoder.image(picture_path(chat_world, 1))
    session.record("what color is the shape?", "red", engine.encoder.text("what color is the shape?"), None)
    inputs = engine._turn_tensors(session, engine.encoder.text("what shape is it?"))
    with_hook = engine.bridge(*inputs)
    engine.bridge.record_banks = False
    try:
        without = engine.bridge(*inputs)
    finally:
        engine.bridge.record_banks = True
    assert np.array_equal(with_hook.detach().numpy(), without.detach().numpy())


def test_a_missing_run_is_one_line_naming_make_demo(tmp_path, capsys):
    code = train_cli(["chat", f"outputs_root={tmp_path}", "run=nothing"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "no trained bridge run 'nothing' yet" in err[0] and "make demo" in err[0] and "make train-bridge" in err[0]
    with pytest.raises(ChatError, match="no finished fine-tuning run"):
        from services.train.chat import preflight

        preflight.check(load_config(ChatConfig, None, ["model=gemma", f"outputs_root={tmp_path}"]))


def test_the_app_builds_over_the_engine(chat_world, engine):
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from services.train.chat.app import build_app

    app = build_app(engine, [str(picture_path(chat_world, 1))])
    ids = {getattr(block, "elem_id", None) for block in app.blocks.values()}
    assert {"chatbot", "question", "send", "status", "image-upload", "demo-gallery", "memory-panel", "reset"} <= ids
    assert app.analytics_enabled is False
