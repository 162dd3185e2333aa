"""Memory of a conversation: past turns scored by recency, frequency, saliency and relevance (docs/RETRIEVAL.md).

The public API is what this module exports; the underscore modules behind it are its implementation:
`_store` (MemoryStore: the columns, `add_turns`, the query-independent components), `_scoring` (hybrid relevance,
the weighted total, top-k), `_config` (settings, Turn and result dataclasses), `_text` (content words, IDF, question
types, picture references), `_words` (the inverted word index), `_when` (time and session phrases), `_arrays`
(growable columns, top-k), `_screen` (the exact int8 first pass for very large stores), `_dialog` (replaying a
conversation or a VisDial dialog turn by turn) and `_gate` (whether a question needs its reminder at all).

    store = MemoryStore(MemoryConfig())
    store.add_turns([Turn("red", speaker="Maya", reply_to="what color is the shape?", turn=1, image_id=7)])
    memories = store.retrieve("what color was it?", k=3, now=2)
    if memory_needed("what color was it?", memories, current_picture=None, gate=GateConfig()):
        render_reminder(memories)   # shared.reminder
"""
from __future__ import annotations

from shared.memory._config import GateConfig, Memory, MemoryConfig, Retrieved, Scores, ScoreWeights, Turn
from shared.memory._dialog import dialog_gates, replay_dialog, replay_turns
from shared.memory._gate import GATE_REASONS, best_relevance, calibrate_min_relevance, gate_reason, memory_needed
from shared.memory._store import COMPONENTS, MemoryStore
from shared.memory._text import IdfTable

__all__ = ["COMPONENTS", "GATE_REASONS", "GateConfig", "IdfTable", "Memory", "MemoryConfig", "MemoryStore", "Retrieved",
           "Scores", "ScoreWeights", "Turn", "best_relevance", "calibrate_min_relevance", "dialog_gates", "gate_reason",
           "memory_needed", "replay_dialog", "replay_turns"]
