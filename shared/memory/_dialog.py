"""Replay a conversation through a `MemoryStore` the way a live system would, and collect each turn's retrieval.

`replay_turns` is the one path: for each turn that replies to something, retrieve with what it replies to (before
the turn is stored, so a retrieval never contains its own answer), count the references, then store the turn.
`replay_dialog` turns a VisDial dialog into such turns (each round: the answer, replying to the question);
`dialog_gates` says which rounds' reminders the gate lets through (`_gate`). Usage:

    reminders = replay_dialog(dialog, MemoryConfig(), k=3); render_reminder(reminders[5])
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from shared.dialog_text import picture_numbers, shown_image
from shared.memory._config import GateConfig, MemoryConfig, Retrieved, Turn
from shared.memory._gate import gate_reason
from shared.memory._store import MemoryStore
from shared.memory._text import IdfTable

# Called before each round's retrieval with (store, round, query embedding or None, picture number).
RoundHook = Callable[[MemoryStore, Any, "np.ndarray | None", int], None]
# Called before each turn's retrieval with (store, turn position, turn, query embedding or None, picture number).
TurnHook = Callable[[MemoryStore, int, Turn, "np.ndarray | None", "int | None"], None]


def _row(matrix: np.ndarray | None, i: int) -> np.ndarray | None:
    return None if matrix is None else np.asarray(matrix[i], dtype=np.float32)


def replay_turns(store: MemoryStore, turns: Sequence[Turn], k: int, text_embeddings: np.ndarray | None = None,
                 reply_embeddings: np.ndarray | None = None,
                 caption_embeddings: Mapping[int, np.ndarray] | None = None,
                 current_pictures: Sequence[int | None] | None = None, last_is_open: bool = False,
                 before_retrieval: TurnHook | None = None) -> list[list[Retrieved]]:
    """Each turn's top-k memories ([] for turns that reply to nothing and while the store is empty).

    Args:
        text_embeddings / reply_embeddings: [n, D] per turn; the reply_to embedding is also the turn's query.
        current_pictures: picture number shown at each turn (default: the store's number for its image).
        last_is_open: the last turn is only asked (retrieved for), never stored (the open round of a dialog).
        before_retrieval: hook for measurements (bench/memory.py scores evidence turns there).
    """
    out: list[list[Retrieved]] = []
    clock_turns = store.config.clock == "turn"
    for i, turn in enumerate(turns):
        query = _row(reply_embeddings, i)
        if current_pictures is not None:
            picture = current_pictures[i]
        elif turn.image_id is None:
            picture = None
        else:
            picture = store.pictures.get(int(turn.image_id), len(store.pictures) + 1)
        if before_retrieval is not None:
            before_retrieval(store, i, turn, query, picture)
        now = (turn.turn if turn.turn is not None else len(store) + 1) if clock_turns else turn.time
        asks = bool(turn.reply_to) and len(store) > 0
        out.append(store.retrieve(turn.reply_to, k, now, query, current_picture=picture) if asks else [])
        if last_is_open and i == len(turns) - 1:
            break
        if turn.reply_to:
            store.note_references(turn.reply_to, current_picture=picture)
        store.add_turns([turn], None if text_embeddings is None else _row(text_embeddings, i)[None],
                        None if query is None else query[None], caption_embeddings)
    return out


def replay_dialog(dialog: Any, config: MemoryConfig, k: int, idf: IdfTable | None = None,
                  question_embeddings: np.ndarray | None = None, answer_embeddings: np.ndarray | None = None,
                  upto_round: int | None = None,
                  before_retrieval: RoundHook | None = None) -> dict[int, list[Retrieved]]:
    """Top-k memories for every round of `dialog` (round_id -> list, empty for round 1).

    Args:
        question_embeddings / answer_embeddings: [R, D] per round of this dialog (e.g. a cpu_default shard row);
            without them relevance is lexical only.
        upto_round: stop after retrieving for this round (its answer is never added).
        before_retrieval: hook for measurements (bench/memory.py scores the evidence turn there).
    """
    numbers = picture_numbers(dialog)
    last = len(dialog.rounds) if upto_round is None else upto_round
    rounds = []
    for rnd in dialog.rounds[:last]:
        rounds.append(rnd)
        if rnd.answer is None:
            break  # the open round: nothing after it may enter the store
    turns = [Turn(rnd.answer or "", speaker="answerer", turn=rnd.round_id, image_id=shown_image(dialog, rnd),
                  caption=dialog.caption if shown_image(dialog, rnd) == dialog.image_id else None,
                  reply_to=rnd.question) for rnd in rounds]
    hook = None
    if before_retrieval is not None:
        def hook(store: MemoryStore, i: int, turn: Turn, query: np.ndarray | None, picture: int | None) -> None:
            before_retrieval(store, rounds[i], query, picture)

    n = len(rounds)
    retrieved = replay_turns(MemoryStore(config, idf=idf), turns, k,
                             None if answer_embeddings is None else answer_embeddings[:n],
                             None if question_embeddings is None else question_embeddings[:n],
                             current_pictures=[numbers[shown_image(dialog, r)] for r in rounds], last_is_open=True,
                             before_retrieval=hook)
    return {rnd.round_id: memories for rnd, memories in zip(rounds, retrieved, strict=True)}


def dialog_gates(dialog: Any, retrieved: Mapping[int, list[Retrieved]], gate: GateConfig | None = None
                 ) -> dict[int, str | None]:
    """The reminder gate of every round of `dialog` (round_id -> one of GATE_REASONS, or None: no reminder), from
    `replay_dialog`'s retrieval; each round's picture number is the one shown at it. Usage:

        retrieved = replay_dialog(dialog, MemoryConfig(), k=3); gates = dialog_gates(dialog, retrieved, GateConfig())
    """
    numbers = picture_numbers(dialog)
    return {rnd.round_id: gate_reason(rnd.question, retrieved.get(rnd.round_id, []),
                                      numbers[shown_image(dialog, rnd)], gate)
            for rnd in dialog.rounds if rnd.round_id in retrieved}
