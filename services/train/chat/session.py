"""One browser session's conversation: the pictures shown, the turns asked and answered, and what memory showed.

No torch here: the engines (bridge.py, gemma.py) fill a turn's `MemoryView`, the panel (panel.py) renders it, and
`dialog()` turns the session into the `shared.visdial.Dialog` every prompt builder and memory replay reads, so the
chat's prompts and reminders are made by the very code that made the training prompts.

Pictures are numbered 1, 2, ... in the order they are first asked about, which is how the model numbers them
(`shared.dialog_text.picture_numbers`): a picture added while the previous one has not been asked about yet replaces
it, so "the first picture" always means the same thing to the user and to the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.visdial import Dialog, Round


@dataclass
class Picture:
    number: int  # 1-based, in the order pictures enter the conversation (also its image id in `dialog()`)
    path: Path
    label: str  # what the user picked: a demo picture's file name or the uploaded file's name
    embedding: np.ndarray | None = None  # filled by the engine once, on the first question about it


@dataclass
class ReminderRow:
    """A memory retrieved for the open question, with its scores (shared.memory.Retrieved) and whether it was used."""

    turn: int
    question: str
    answer: str
    picture: str | None
    score: float
    components: dict[str, float]
    used: bool  # in the prompt (bridge) or recalled in the model's own <reminder> (Gemma)


@dataclass
class BankSlot:
    """One slot of the bridge's visual memory bank: how many past turns it averages, and which ones."""

    slot: int
    size: int
    first_turn: int
    last_turn: int


@dataclass
class MemoryView:
    """What memory did for one turn: shown beside the answer."""

    reminder_mode: str  # the prompt's reminder setting ("none", "retrieved", "gated", ...)
    reminders: list[ReminderRow] = field(default_factory=list)
    gate: str | None = None  # "fired" / "closed" when the run gates its reminders; None when it has no gate
    bank_length: int = 0  # slots of the visual memory bank (0: no bank)
    bank: list[BankSlot] = field(default_factory=list)  # the occupied slots the open turn attended to
    query_bank_sizes: list[int] = field(default_factory=list)  # occupied slots per Q-Former query bank
    candidates: list[tuple[str, float]] = field(default_factory=list)  # top answer options with their log-probs
    prompt: str = ""  # the text part of the prompt (after the soft tokens)
    notes: list[str] = field(default_factory=list)


@dataclass
class Turn:
    number: int  # 1-based
    question: str
    answer: str
    picture: int  # number of the picture shown at this turn
    question_embedding: np.ndarray | None = None
    memory: MemoryView | None = None


class ChatInputError(ValueError):
    """Something the user must do first (add a picture, start over); shown in the UI, never a traceback."""


@dataclass
class Session:
    pictures: list[Picture] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    def add_picture(self, path: str | Path, label: str | None = None) -> Picture:
        """Show a picture: it is the one the next questions are about. Replaces a picture not asked about yet."""
        path = Path(path)
        picture = Picture(len(self.pictures) + 1, path, label or path.name)
        if self.pictures and not self.turns_about(self.pictures[-1].number):
            picture.number = self.pictures[-1].number
            self.pictures[-1] = picture
        else:
            self.pictures.append(picture)
        return picture

    def turns_about(self, number: int) -> list[Turn]:
        return [t for t in self.turns if t.picture == number]

    @property
    def current_picture(self) -> Picture:
        if not self.pictures:
            raise ChatInputError("add a picture first (upload one, or pick a demo picture)")
        return self.pictures[-1]

    def picture(self, number: int) -> Picture:
        return self.pictures[number - 1]

    def dialog(self, open_question: str) -> Dialog:
        """The conversation as a VisDial dialog: the turns so far, then the open question (no answer)."""
        current = self.current_picture.number
        rounds = [Round(t.number, t.question, t.answer, None, None, t.picture) for t in self.turns]
        rounds.append(Round(len(self.turns) + 1, open_question, None, None, None, current))
        return Dialog(rounds[0].image_id, "", tuple(rounds))

    def record(self, question: str, answer: str, question_embedding: np.ndarray | None,
               memory: MemoryView | None) -> Turn:
        turn = Turn(len(self.turns) + 1, question, answer, self.current_picture.number, question_embedding, memory)
        self.turns.append(turn)
        return turn


def bank_slots(sizes: list[int]) -> list[BankSlot]:
    """Occupied slots of a memory bank from their sizes in temporal order (empty padding slots, size 0, first).

    Compression only merges temporally adjacent slots, so the k-th occupied slot covers the turns right after those
    of the slots before it: sizes [0, 0, 2, 1] -> slot 2 holds turns 1-2, slot 3 turn 3.
    """
    out, turn = [], 1
    for slot, size in enumerate(sizes):
        if size > 0:
            out.append(BankSlot(slot, int(size), turn, turn + int(size) - 1))
            turn += int(size)
    return out
