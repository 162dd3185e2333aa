"""Dialogs + embedding shards -> bridge batches: right-aligned turn embeddings, prompt and answer token ids.

A sample is (dialog, round): the model sees the turns 1..round (their images and questions as embeddings) and the
prompt text of that round; the target is the round's ground-truth answer. The prompt is an optional `<reminder>`
block, retrieved from the EARLIER rounds' questions and answers (the dialog history VisDial gives), followed by the
open question; with `reminder: gated` only in rounds whose question needs the past (shared.memory.memory_needed).
The open round's answer is never part of any prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared.memory import dialog_gates, replay_dialog
from shared.reminder import render_reminder
from shared.shards import ShardError, ShardSet
from shared.visdial import Dialog, load_visdial

from services.train.bridge.config import BridgeDataSettings, PromptSettings


@dataclass
class Batch:
    """One micro-batch: embeddings (B,S,·) right-aligned so the open turn is the last step, and token ids."""

    image: torch.Tensor
    question: torch.Tensor
    turn: torch.Tensor  # (B, S) 1-based turn ids, 0 where a row has no turn yet
    picture: torch.Tensor  # (B, S) 1-based index of the picture each turn shows (first-appearance order), 0 = none
    prompts: list[list[int]]
    answers: list[list[int]] | None
    keys: list[tuple[int, int]]  # (image_id, round_id) per row


class DialogData:
    """A split's dialogs aligned with their embedding rows (checked: every dialog has a row, rounds agree)."""

    def __init__(self, settings: BridgeDataSettings):
        self.split = load_visdial(settings.dialogs)
        self.dialogs: tuple[Dialog, ...] = self.split.dialogs[: settings.limit_dialogs]
        self.shards = ShardSet(settings.embeddings, encoder_id=settings.encoder_id, verify=settings.verify)
        self.rows = self.shards.rows_of([d.image_id for d in self.dialogs])
        stored = self.shards.get("num_rounds", self.rows)
        for dialog, count in zip(self.dialogs, stored):
            if int(count) != dialog.num_rounds:
                raise ShardError(f"{settings.embeddings}: image {dialog.image_id} has {int(count)} rounds embedded but "
                                 f"{dialog.num_rounds} in {settings.dialogs}; re-extract the split from this file")
        self.per_round_images = "round_image" in self.shards.tensor_names
        multi = next((d for d in self.dialogs if len(d.image_ids()) > 1), None)
        if multi is not None and not self.per_round_images:
            raise ShardError(f"{settings.embeddings}: no round_image tensor, but dialog of image {multi.image_id} in "
                             f"{settings.dialogs} shows several images; re-extract with per-round images")
        self.image_dim, self.text_dim = self.shards.dims["image"], self.shards.dims["text"]
        self.pictures = [_picture_numbers(d) for d in self.dialogs]

    def samples(self, rounds: str = "all", answered_only: bool = False, repeat_memory: int = 1
                ) -> list[tuple[int, int]]:
        """(dialog index, 1-based round) pairs of the selected rounds ("all", "last", or the rounds of kind "memory"
        or "current"); training asks for `answered_only`; rounds of kind "memory" are listed `repeat_memory` times."""
        out = []
        for d, dialog in enumerate(self.dialogs):
            for rnd in dialog.rounds:
                if answered_only and rnd.answer is None:
                    continue
                if rounds == "last" and rnd.round_id != dialog.num_rounds:
                    continue
                if rounds in ("memory", "current") and rnd.kind != rounds:
                    continue
                out.extend([(d, rnd.round_id)] * (repeat_memory if rnd.kind == "memory" else 1))
        return out

    def embeddings(self, samples: list[tuple[int, int]], steps: int | None) -> tuple[torch.Tensor, ...]:
        """Right-aligned (image, question, turn, picture) for `samples`; `steps` = 1 keeps only the open turn."""
        width = steps or max(r for _, r in samples)
        rows = self.rows[[d for d, _ in samples]]
        question = self.shards.get("question", rows)
        source = self.shards.get("round_image" if self.per_round_images else "image", rows)
        batch = len(samples)
        turn = np.zeros((batch, width), dtype=np.int64)
        picture = np.zeros((batch, width), dtype=np.int64)
        image = np.zeros((batch, width, self.image_dim), dtype=np.float32)
        text = np.zeros((batch, width, self.text_dim), dtype=np.float32)
        for b, (d, rnd) in enumerate(samples):
            first = max(rnd - width + 1, 1)
            turns = np.arange(first, rnd + 1)
            cols = np.arange(width - len(turns), width)
            turn[b, cols] = turns
            picture[b, cols] = self.pictures[d][turns - 1]
            text[b, cols] = question[b, turns - 1]
            image[b, cols] = source[b, turns - 1] if self.per_round_images else source[b]
        return tuple(torch.from_numpy(a) for a in (image, text, turn, picture))


def _picture_numbers(dialog: Dialog) -> np.ndarray:
    """1-based picture shown at each round, numbered in order of first appearance."""
    number = {image_id: n for n, image_id in enumerate(dialog.image_ids(), 1)}
    return np.array([number[r.image_id] for r in dialog.rounds])


class PromptBuilder:
    """Token ids of prompts (optional reminder + question) and answers, cached per dialog."""

    def __init__(self, settings: PromptSettings, tokenizer, reminder: str | None = None):
        self.settings, self.tokenizer = settings, tokenizer
        self.reminder = reminder or settings.reminder
        # `bos` = every token before the soft tokens: BOS (if asked for) + the prefix text
        self.bos = [tokenizer.bos_token_id] if settings.add_bos and tokenizer.bos_token_id is not None else []
        self.bos += self._ids(settings.prefix) if settings.prefix else []
        self._cache: dict[int, tuple[list[list[int]], list[bool | None]]] = {}

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def texts(self, dialog: Dialog) -> list[str]:
        """Prompt text of every round in order; reminders retrieved only from earlier rounds of this dialog."""
        return self.texts_and_gates(dialog)[0]

    def texts_and_gates(self, dialog: Dialog) -> tuple[list[str], list[bool | None]]:
        """Prompt texts of every round, and per round whether the gate let the reminder in (None unless `gated`)."""
        question_part = [self.settings.template.format(question=" ".join(r.question.split())) for r in dialog.rounds]
        if self.reminder == "none":
            return question_part, [None] * len(question_part)
        # shared.memory._dialog replays the dialog: round t's store holds turns 1..t-1 only
        retrieved = replay_dialog(dialog, self.settings.memory, self.settings.reminder_top_k)
        if self.reminder == "retrieved":
            return [self._fit(retrieved.get(rnd.round_id, []), tail)
                    for rnd, tail in zip(dialog.rounds, question_part)], [None] * len(question_part)
        # gated: a round the gate turns down gets the plain question, as with `none` (no empty block either)
        reasons = dialog_gates(dialog, retrieved, self.settings.gate)
        gates: list[bool | None] = [reasons.get(rnd.round_id) is not None for rnd in dialog.rounds]
        return [self._fit(retrieved[rnd.round_id], tail) if fire else tail
                for rnd, tail, fire in zip(dialog.rounds, question_part, gates)], gates

    def _fit(self, items: list, tail: str) -> str:
        """Reminder + question within max_prompt_tokens: the lowest-ranked memories are dropped first."""
        items = list(items)
        while True:
            text = render_reminder(items) + "\n" + tail
            if len(self._ids(text)) <= self.settings.max_prompt_tokens or not items:
                return text
            items.pop()

    def prompts(self, dialog_index: int, dialog: Dialog) -> list[list[int]]:
        return self._cached(dialog_index, dialog)[0]

    def gates(self, dialog_index: int, dialog: Dialog) -> list[bool | None]:
        """Per round: whether the gate fired (None unless the reminder is `gated`)."""
        return self._cached(dialog_index, dialog)[1]

    def _cached(self, dialog_index: int, dialog: Dialog) -> tuple[list[list[int]], list[bool | None]]:
        if dialog_index not in self._cache:
            texts, gates = self.texts_and_gates(dialog)
            self._cache[dialog_index] = ([self._ids(t) for t in texts], gates)
        return self._cache[dialog_index]

    def answer(self, text: str, truncate: bool = True) -> list[int]:
        """Token ids of an answer as the model must produce it: answer_prefix + text + EOS (targets and options)."""
        ids = self._ids(self.settings.answer_prefix + " ".join(text.split()))
        return (ids[: self.settings.max_answer_tokens] if truncate else ids) + [self.tokenizer.eos_token_id]


def make_batch(data: DialogData, builder: PromptBuilder, samples: list[tuple[int, int]], steps: int | None,
               with_answers: bool) -> Batch:
    image, question, turn, picture = data.embeddings(samples, steps)
    prompts, answers, keys = [], [], []
    for d, rnd in samples:
        dialog = data.dialogs[d]
        prompts.append(builder.prompts(d, dialog)[rnd - 1])
        keys.append((dialog.image_id, rnd))
        if with_answers:
            answers.append(builder.answer(dialog.rounds[rnd - 1].answer))
    return Batch(image, question, turn, picture, prompts, answers if with_answers else None, keys)


def check_paths(settings: BridgeDataSettings) -> None:
    for label, path in (("data.dialogs", settings.dialogs), ("data.embeddings", settings.embeddings)):
        if not Path(path).exists():
            raise FileNotFoundError(f"{label}: {path} does not exist; build it with `make data-demo extract-demo` "
                                    "(demo) or point the config at your files")
