"""The chat's light parts: the session as a dialog, memory-bank slots, the panel's HTML, settings and preflight."""
from __future__ import annotations

import json

import numpy as np
import pytest

from services.train.chat import panel, preflight
from services.train.chat.app import demo_pictures
from services.train.chat.config import ChatConfig, ChatError
from services.train.chat.session import (BankSlot, ChatInputError, MemoryView, ReminderRow, Session, bank_slots)
from shared.config import ConfigError, load_config
from shared.dialog_text import picture_numbers, render_conversation


def config(*overrides: str) -> ChatConfig:
    return load_config(ChatConfig, None, list(overrides))


def test_pictures_are_numbered_as_the_model_numbers_them():
    session = Session()
    with pytest.raises(ChatInputError, match="add a picture first"):
        session.dialog("what color is it?")
    session.add_picture("/p/a.png")
    session.add_picture("/p/b.png", "demo b")  # a replaces a: nobody asked about a
    assert [(p.number, p.label) for p in session.pictures] == [(1, "demo b")]
    session.record("what color is it?", "red", None, None)
    session.add_picture("/p/c.png")
    session.record("what shape is it?", "circle", None, None)
    dialog = session.dialog("what color was the first picture?")
    assert [(r.round_id, r.image_id, r.answer) for r in dialog.rounds] == [(1, 1, "red"), (2, 2, "circle"),
                                                                          (3, 2, None)]
    assert picture_numbers(dialog) == {1: 1, 2: 2}  # the user's picture k is the model's picture k
    assert render_conversation(dialog, 3, caption=False).endswith(
        "[picture 2]\nQ: what shape is it?\nA: circle\nQ: what color was the first picture?\nA:")


def test_bank_slots_follow_the_turns_in_order():
    assert bank_slots([0, 0, 0]) == []
    assert bank_slots([0, 2, 1]) == [BankSlot(1, 2, 1, 2), BankSlot(2, 1, 3, 3)]
    assert bank_slots([1, 3, 1]) == [BankSlot(0, 1, 1, 1), BankSlot(1, 3, 2, 4), BankSlot(2, 1, 5, 5)]


def _session_with_memory(gate: str | None = None) -> Session:
    session = Session()
    session.add_picture("/p/a.png")
    session.record("what <b>color</b> is it?", "red", np.zeros(3), None)
    view = MemoryView(reminder_mode="retrieved", gate=gate, bank_length=4, bank=[BankSlot(3, 1, 1, 1)],
                      query_bank_sizes=[1, 1], candidates=[("red", -0.5), ("blue", -2.25)], prompt="<reminder>..")
    view.reminders = [ReminderRow(1, "what <b>color</b> is it?", "red", None, 1.2,
                                  {"recency": 1.0, "frequency": 0.0, "saliency": 0.5, "relevance": 0.25}, True)]
    session.record("and now?", "blue", np.zeros(3), view)
    return session


def test_the_panel_lists_turns_reminders_slots_and_candidates():
    html = panel.render(_session_with_memory(), "bridge run 'demo'")
    assert "Memory: 2 turns, 1 pictures" in html
    assert html.count('class="mem-turn"') == 2 and 'data-turn="1"' in html
    assert "<b>" not in html and "&lt;b&gt;color&lt;/b&gt;" in html  # user text is escaped
    row = html.split('class="mem-reminder"')[1].split("</tr>")[0]
    assert 'data-used="true"' in row and "<td>1.200</td><td>1.00</td><td>0.00</td><td>0.50</td><td>0.25</td>" in row
    assert "reminders: retrieved — 1 of 1 used" in html
    assert 'class="mem-slot" data-size="1"><td>3</td><td>1</td><td>1</td>' in html
    assert html.count('class="mem-candidate"') == 2 and "<td>-2.250</td>" in html
    assert "&lt;reminder&gt;.." in html  # the prompt, escaped, in a details block


def test_the_panel_shows_a_gate_when_the_run_has_one():
    assert "reminders: retrieved — gate fired" in panel.render(_session_with_memory(gate="fired"))
    empty = panel.render(Session())
    assert "no turns yet" in empty and "mem-reminders" not in empty  # nothing recalled before a question


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="port=70000"):
        config("port=70000")
    with pytest.raises(ConfigError, match="reminder_top_k=0"):
        config("reminder_top_k=0")
    with pytest.raises(ConfigError, match="bridge.max_new_tokens=0"):
        config("bridge.max_new_tokens=0")


def test_preflight_names_the_command_that_makes_what_is_missing(tmp_path):
    with pytest.raises(ChatError) as missing:
        preflight.check(config(f"outputs_root={tmp_path}"))
    assert "no trained bridge run 'demo' yet" in missing.value.message and "make demo" in missing.value.fix
    with pytest.raises(ChatError, match="state.json missing"):
        preflight.check(config(f"bridge.checkpoint={tmp_path}"))
    (tmp_path / "demo" / "checkpoints").mkdir(parents=True)
    (tmp_path / "demo" / "checkpoints" / "latest.json").write_text(json.dumps({"dir": "step-000001"}))
    with pytest.raises(ChatError, match="bridge.candidates=nowhere.json"):
        preflight.check(config(f"outputs_root={tmp_path}", "bridge.candidates=nowhere.json"))
    preflight.check(config(f"outputs_root={tmp_path}", "bridge.candidates=null"))
    with pytest.raises(ChatError) as no_adapter:
        preflight.check(config("model=gemma", f"outputs_root={tmp_path}"))
    assert "make finetune" in no_adapter.value.fix
    preflight.check(config("model=gemma", "gemma.adapter=none"))


def test_demo_pictures_come_from_the_image_index(tmp_path):
    for name in ("7.png", "3.png", "notes.txt", "12.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.split("/")[-1] for p in demo_pictures(config(f"images={tmp_path}", "gallery_size=2"))] == \
        ["3.png", "7.png"]
    assert demo_pictures(config("images=null")) == []
    with pytest.raises(ChatError, match="does not exist"):
        demo_pictures(config(f"images={tmp_path / 'nowhere'}"))
