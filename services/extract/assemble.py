"""Turn per-image and per-string embeddings into the shard tensors of docs/CONTRACTS.md (one row per dialog).

VisDial repeats questions and answers a lot ("is it sunny?", "yes"): `TextTable` keeps each distinct string once
and remembers, per (dialog, round), which one to scatter back, so each string is encoded once per shard.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.extract.config import TextsConfig
from shared.visdial import Dialog


@dataclass
class TextTable:
    strings: list[str] = field(default_factory=list)
    _ids: dict[str, int] = field(default_factory=dict)

    def id_of(self, text: str) -> int:
        if text not in self._ids:
            self._ids[text] = len(self.strings)
            self.strings.append(text)
        return self._ids[text]


@dataclass
class ShardLayout:
    """Index arrays into the image / string tables; -1 marks padding (rounds past num_rounds, no answer)."""

    image_ids: np.ndarray  # int64 [N]
    num_rounds: np.ndarray  # int64 [N]
    image: np.ndarray  # [N] rows of the image table
    round_image: np.ndarray | None  # [N, R]
    question: np.ndarray  # [N, R] rows of the string table
    answer: np.ndarray | None  # [N, R]
    caption: np.ndarray | None  # [N]


def layout(dialogs: list[Dialog], rounds: int, image_row: dict[int, int], texts: TextTable,
           with_round_images: bool, which: TextsConfig) -> ShardLayout:
    """Index arrays for `dialogs` (already stripped of dropped ones); registers their strings in `texts`."""
    n = len(dialogs)
    question = np.full((n, rounds), -1, dtype=np.int64)
    answer = np.full((n, rounds), -1, dtype=np.int64) if which.answers else None
    round_image = np.full((n, rounds), -1, dtype=np.int64) if with_round_images else None
    for d, dialog in enumerate(dialogs):
        for r, rnd in enumerate(dialog.rounds):
            question[d, r] = texts.id_of(rnd.question)
            if answer is not None and rnd.answer is not None:  # the open round of a test dialog has none
                answer[d, r] = texts.id_of(rnd.answer)
            if round_image is not None:
                round_image[d, r] = image_row[rnd.image_id]
    return ShardLayout(
        image_ids=np.array([d.image_id for d in dialogs], dtype=np.int64),
        num_rounds=np.array([d.num_rounds for d in dialogs], dtype=np.int64),
        image=np.array([image_row[d.image_id] for d in dialogs], dtype=np.int64),
        round_image=round_image,
        question=question,
        answer=answer,
        caption=np.array([texts.id_of(d.caption) for d in dialogs], dtype=np.int64) if which.captions else None,
    )


def gather(table: np.ndarray, index: np.ndarray, dtype: str) -> np.ndarray:
    """table[index] with zeros where index == -1 (padding the readers mask out via num_rounds), cast to dtype."""
    out = table[np.clip(index, 0, None)].astype(dtype)
    out[index < 0] = 0
    return out


def tensors(lay: ShardLayout, image_table: np.ndarray, text_table: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    result = {
        "image_ids": lay.image_ids,
        "num_rounds": lay.num_rounds,
        "image": gather(image_table, lay.image, dtype),
        "question": gather(text_table, lay.question, dtype),
    }
    if lay.round_image is not None:
        result["round_image"] = gather(image_table, lay.round_image, dtype)
    if lay.answer is not None:
        result["answer"] = gather(text_table, lay.answer, dtype)
    if lay.caption is not None:
        result["caption"] = gather(text_table, lay.caption, dtype)
    return result
