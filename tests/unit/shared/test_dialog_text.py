"""Conversation rendering: past turns as Q/A lines, the open question last, its answer never shown."""
import pytest

from shared.dialog_text import picture_numbers, render_conversation
from shared.visdial import Dialog, Round


def _round(i, question, answer, image_id=None):
    return Round(round_id=i, question=question, answer=answer, options=None, gt_index=None, image_id=image_id,
                 kind=None, evidence_round=None)


def _dialog(image_ids=(7, 7, 7)):
    rounds = [_round(i + 1, f"question {i + 1}?", f"SECRET answer {i + 1}", image) for i, image in enumerate(image_ids)]
    return Dialog(image_id=image_ids[0], caption="a red  circle", rounds=rounds)


def test_past_turns_then_open_question_without_its_answer():
    dialog = _dialog()
    text = render_conversation(dialog, 3)
    assert text == (
        "Caption: a red circle\nQ: question 1?\nA: SECRET answer 1\nQ: question 2?\nA: SECRET answer 2\n"
        "Q: question 3?\nA:"
    )
    assert "SECRET answer 3" not in text
    assert render_conversation(dialog, 1, caption=False) == "Q: question 1?\nA:"


def test_picture_changes_are_marked_and_future_pictures_not_revealed():
    dialog = _dialog((7, 7, 9, 9, 7))
    assert picture_numbers(dialog) == {7: 1, 9: 2}
    assert "[picture" not in render_conversation(dialog, 2)  # only one picture shown so far
    text = render_conversation(dialog, 5, caption=False)
    assert text.splitlines() == [
        "[picture 1]", "Q: question 1?", "A: SECRET answer 1", "Q: question 2?", "A: SECRET answer 2",
        "[picture 2]", "Q: question 3?", "A: SECRET answer 3", "Q: question 4?", "A: SECRET answer 4",
        "[picture 1]", "Q: question 5?", "A:",
    ]


def test_bad_round_ids_and_unanswered_history_raise():
    dialog = _dialog()
    with pytest.raises(ValueError, match="round_id 4 not in 1..3"):
        render_conversation(dialog, 4)
    with pytest.raises(ValueError, match="round_id 0"):
        render_conversation(dialog, 0)
    unanswered = Dialog(image_id=7, caption="", rounds=[_round(1, "q?", None), _round(2, "q2?", None)])
    assert render_conversation(unanswered, 1) == "Q: q?\nA:"
    with pytest.raises(ValueError, match="past round 1 has no answer"):
        render_conversation(unanswered, 2)
