"""Reminder blocks: render/parse round trip, strict parsing, and stripping of reminder/reasoning/think blocks."""
import pytest

from shared.reminder import ReminderError, ReminderItem, parse_reminder, render_reminder, strip_blocks


def test_render_parse_round_trip_keeps_turns_text_and_picture_notes():
    items = [
        {"turn": 2, "question": "what  color is\nthe shape?", "answer": "red"},
        ReminderItem(turn=5, question="what shape is it?", answer="a circle. A: not a square", image_note="picture 2"),
    ]
    block = render_reminder(items)
    assert block.startswith("<reminder>\n") and block.endswith("\n</reminder>")
    assert "[turn 2] Q: what color is the shape? A: red" in block.splitlines()
    parsed = parse_reminder("Some preface " + block + " The answer is red.")
    assert parsed == [
        ReminderItem(2, "what color is the shape?", "red", None),
        ReminderItem(5, "what shape is it?", "a circle. A: not a square", "picture 2"),
    ]
    assert render_reminder(parsed) == block


def test_empty_reminder_and_missing_fields():
    assert render_reminder([]) == "<reminder>\n</reminder>"
    assert parse_reminder(render_reminder([])) == []
    with pytest.raises(ReminderError, match="needs turn, question and answer"):
        render_reminder([{"turn": 1, "question": "q?"}])
    with pytest.raises(ReminderError, match="contains ' A: '"):
        render_reminder([{"turn": 1, "question": "is it A: yes?", "answer": "no"}])


def test_parse_skips_prose_unless_strict():
    text = "<REMINDER>\nEarlier we saw a red circle.\n[turn 1] Q: what color? A: red\n</reminder>red"
    assert parse_reminder(text) == [ReminderItem(1, "what color?", "red")]
    with pytest.raises(ReminderError, match="line 2: "):
        parse_reminder(text, strict=True)


@pytest.mark.parametrize(
    "raw, expected, removed",
    [
        ("<reminder>\n[turn 1] Q: a? A: b\n</reminder>\nIt is red.", "It is red.", True),
        ("<Reasoning>the light</REASONING>  green  light ", "green light", True),
        ("<think>hm\n<think>deeper</think> still</think>yes", "yes", True),
        ("blue <think type='x'>never closed\nso everything goes", "blue", True),
        ("model thought here</think> two", "two", True),
        ("<reminder>a</reminder> red <reasoning>b</reasoning> circle", "red circle", True),
        ("just an answer\n", "just an answer", False),
        ("", "", False),
    ],
)
def test_strip_blocks(raw, expected, removed):
    assert strip_blocks(raw) == (expected, removed)
