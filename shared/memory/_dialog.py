"""Replay a dialog through a `MemoryStore` the way a live system would, and collect each round's reminder.

Before round t is answered the store holds turns 1..t-1 only, so a round's reminder can never contain its own
answer. After retrieving for round t the store notes the question's references and then stores turn t. Usage:

    reminders = replay_dialog(dialog, MemoryConfig(), k=3); render_reminder(reminders[5])
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shared.dialog_text import picture_numbers, shown_image
from shared.memory._config import MemoryConfig, Retrieved
from shared.memory._store import MemoryStore
from shared.memory._text import IdfTable

# Called before each round's retrieval with (store, round, query embedding or None, picture number).
RoundHook = Callable[[MemoryStore, Any, "np.ndarray | None", int], None]


def replay_dialog(dialog: Any, config: MemoryConfig, k: int, idf: IdfTable | None = None,
                  question_embeddings: np.ndarray | None = None, answer_embeddings: np.ndarray | None = None,
                  upto_round: int | None = None,
                  before_retrieval: RoundHook | None = None) -> dict[int, list[Retrieved]]:
    """Top-k memories for every round of `dialog` (round_id -> list, empty for round 1).

    Args:
        question_embeddings / answer_embeddings: [R, D] per round of this dialog (e.g. a cpu_default shard row);
            without them relevance falls back to the lexical score.
        upto_round: stop after retrieving for this round (its answer is never added).
        before_retrieval: hook for measurements (bench/memory.py scores the evidence turn there).
    """
    store = MemoryStore(config, idf=idf)
    numbers = picture_numbers(dialog)
    last = len(dialog.rounds) if upto_round is None else upto_round
    out: dict[int, list[Retrieved]] = {}
    for t, rnd in enumerate(dialog.rounds[:last]):
        picture = numbers[shown_image(dialog, rnd)]
        query = None if question_embeddings is None else np.asarray(question_embeddings[t], dtype=np.float32)
        if before_retrieval is not None:
            before_retrieval(store, rnd, query, picture)
        out[rnd.round_id] = store.retrieve(rnd.question, k, rnd.round_id, query, current_picture=picture) \
            if len(store) else []
        if t == last - 1 or rnd.answer is None:
            break  # the open round: nothing after it may enter the store
        store.note_references(rnd.question, current_picture=picture)
        answer_emb = None if answer_embeddings is None else answer_embeddings[t]
        store.add(rnd.question, rnd.answer, rnd.round_id, image_id=shown_image(dialog, rnd),
                  question_embedding=query, answer_embedding=answer_emb)
    return out
