"""The chat over a Gemma-3 model, on the tiny random Gemma-3 (what it says is noise; the path is the real one):
finetune-infer's Predictor, the conversation as the training prompt renders it, the answer streamed, the model's own
<reminder> and shared.memory's retrieval in the panel."""
from __future__ import annotations

import pytest
from PIL import Image

from services.train.chat import panel
from services.train.chat.config import ChatConfig
from services.train.chat.gemma_engine import GemmaEngine
from services.train.chat.session import Session
from services.train.finetune.tiny import build_tiny_gemma3
from shared.config import load_config

pytestmark = pytest.mark.slow


def test_two_turns_with_the_tiny_gemma(tmp_path):
    model = build_tiny_gemma3(tmp_path / "tiny-gemma3")
    for name, colour in (("1.png", "red"), ("2.png", "blue")):
        Image.new("RGB", (40, 40), colour).save(tmp_path / name)
    engine = GemmaEngine(load_config(ChatConfig, None, [
        "model=gemma", "gemma.adapter=none", f"gemma.base_model={model}", "gemma.load_in_4bit=false",
        "gemma.dtype=float32", "gemma.max_new_tokens=6", "device=cpu"]))
    session = Session()
    session.add_picture(tmp_path / "1.png")
    first = list(engine.respond(session, "what color is the shape?"))
    session.add_picture(tmp_path / "2.png")
    second = list(engine.respond(session, "what color was the shape in the first picture?"))
    assert first and second and [t.picture for t in session.turns] == [1, 2]
    assert second[-1] == session.turns[1].answer
    view = session.turns[1].memory
    assert "[picture 2]" in view.prompt and "Q: what color is the shape?" in view.prompt  # the history, rendered
    assert [r.turn for r in view.reminders] == [1]  # shared.memory's retrieval for turn 2
    assert view.bank_length == 0 and view.candidates == []
    assert any(note.startswith("the model's own <reminder>") for note in view.notes)
    html = panel.render(session, engine.description)
    assert "no memory bank" in html and 'data-turn="1"' in html
