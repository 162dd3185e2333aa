"""`<reminder>` blocks: render retrieved memories into a prompt, parse them back, strip tag blocks from answers.

A reminder block holds one retrieved memory per line, with its turn number and, in multi-image dialogs, the
picture that was shown at that turn. A turn that answers a question shows both; any other turn (a picture shared
with its caption, a remark) shows who said it::

    <reminder>
    [turn 2] Q: what color is the shape? A: red
    [turn 5] (picture 2) Q: what shape is it? A: circle
    [turn 9] (picture 3) Maya said: a dog running on a beach
    </reminder>

`strip_blocks` is what every scorer calls before comparing an answer with a reference: reminder, reasoning and
think blocks are the model's scaffolding, not its answer.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import InputError

BLOCK_TAGS = ("reminder", "reasoning", "think")
_OPEN = re.compile(r"<\s*(reminder|reasoning|think)\b[^>]*>", re.IGNORECASE)
_CLOSE = {tag: re.compile(rf"<\s*/\s*{tag}\s*>", re.IGNORECASE) for tag in BLOCK_TAGS}
_ANY_CLOSE = re.compile(r"<\s*/\s*(?:reminder|reasoning|think)\s*>", re.IGNORECASE)
_REMINDER = re.compile(r"<\s*reminder\b[^>]*>(.*?)(?:<\s*/\s*reminder\s*>|\Z)", re.IGNORECASE | re.DOTALL)
_LINE = re.compile(r"^\[turn (\d+)\](?: \(([^()]*)\))? (?:Q: (.*?) A: (.*)|(?:(\S[^:]{0,39}) )?said: (.*))$")


class ReminderError(InputError):
    """A memory that cannot be written as one reminder line, or a reminder line that does not parse (strict mode)."""


@dataclass(frozen=True)
class ReminderItem:
    """One remembered turn: `ReminderItem(turn=3, question="what color?", answer="red", image_note="picture 2")`."""

    turn: int
    question: str  # "" for a turn that answers nothing (rendered "<speaker> said: <answer>")
    answer: str
    image_note: str | None = None
    speaker: str | None = None  # shown only for turns without a question


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _field(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


def render_line(item: Any) -> str:
    """One memory as `[turn 3] Q: ... A: ...` (or `[turn 3] Maya said: ...` when its question is "");
    e.g. `render_line({"turn": 3, "question": "q?", "answer": "a"})`."""
    turn, question, answer = _field(item, "turn"), _field(item, "question"), _field(item, "answer")
    if turn is None or question is None or answer is None:
        raise ReminderError(f"memory {item!r} needs turn, question and answer; pass all three")
    question, answer = _one_line(question), _one_line(answer)
    note = _field(item, "image_note")
    prefix = f"[turn {int(turn)}]"
    if note:
        prefix += " (" + _one_line(note).replace("(", "[").replace(")", "]") + ")"
    if not question:
        speaker = _one_line(_field(item, "speaker") or "").replace(":", " ")[:40].strip()
        return f"{prefix} {speaker + ' ' if speaker else ''}said: {answer}"
    if " A: " in f" {question} ":
        # The parser splits at the first " A: "; a question containing it would not come back intact.
        raise ReminderError(f"question {question!r} of turn {turn} contains ' A: '; rephrase it before rendering")
    return f"{prefix} Q: {question} A: {answer}"


def render_reminder(items: Iterable[Any]) -> str:
    """Render memories (mappings or objects with turn, question, answer[, image_note]) as a `<reminder>` block.

    Example: `render_reminder([{"turn": 2, "question": "what color is it?", "answer": "red"}])`.
    An empty list renders as an empty block, so a prompt template keeps the same shape with or without memories.
    """
    lines = [render_line(item) for item in items]
    return "<reminder>\n" + "".join(line + "\n" for line in lines) + "</reminder>"


def extract_reminders(text: str) -> list[str]:
    """Inner text of every `<reminder>` block (unclosed: to the end); e.g. `extract_reminders(raw)[0]`."""
    return [m.group(1) for m in _REMINDER.finditer(text)]


def parse_reminder(text: str, strict: bool = False) -> list[ReminderItem]:
    """Memories listed in the `<reminder>` blocks of `text`; e.g. `parse_reminder(render_reminder(items))`.

    Lines that are not `[turn N] Q: ... A: ...` (free prose a model wrote into its reminder) are skipped, or raise
    `ReminderError` naming the line when `strict` is true.
    """
    items: list[ReminderItem] = []
    for match in _REMINDER.finditer(text):
        first_line = text.count("\n", 0, match.start(1)) + 1
        for n, line in enumerate(match.group(1).split("\n"), start=first_line):
            line = line.strip()
            if not line:
                continue
            m = _LINE.match(line)
            if m is None:
                if strict:
                    raise ReminderError(
                        f"line {n}: reminder line {line[:80]!r} is not '[turn N] Q: ... A: ...' "
                        "or '[turn N] <speaker> said: ...'; "
                        "render memories with shared.reminder.render_reminder"
                    )
                continue
            turn, note, question, answer, speaker, said = m.groups()
            if question is None:
                items.append(ReminderItem(int(turn), "", said, note or None, speaker or None))
            else:
                items.append(ReminderItem(int(turn), question, answer, note or None))
    return items


def strip_blocks(text: str) -> tuple[str, bool]:
    """Remove reminder/reasoning/think blocks; return (answer, whether anything was removed).

    Example: `strip_blocks("<reminder>[turn 1] Q: a? A: b</reminder> It is red.") == ("It is red.", True)`.
    Tags match case-insensitively and may carry attributes; an unclosed block runs to the end of the text. A closing
    tag with no opening tag (chat templates that open `<think>` inside the prompt) drops everything before it.
    Whitespace in what remains is collapsed to single spaces.
    """
    kept: list[str] = []
    pos, removed = 0, False
    while True:
        opening = _OPEN.search(text, pos)
        if opening is None:
            kept.append(text[pos:])
            break
        kept.append(text[pos : opening.start()])
        removed = True
        closing = _CLOSE[opening.group(1).lower()].search(text, opening.end())
        if closing is None:
            break
        pos = closing.end()
    rest = " ".join(kept)
    strays = list(_ANY_CLOSE.finditer(rest))
    if strays:
        rest, removed = rest[strays[-1].end() :], True
    return " ".join(rest.split()), removed
