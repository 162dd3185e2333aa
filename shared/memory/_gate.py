"""The reminder gate: inject a retrieved `<reminder>` only when the question needs the past (docs/RETRIEVAL.md).

Retrieved reminders help questions about earlier turns and pictures but cost the others: a prompt that always
carries three remembered turns dilutes what the model knows about the picture in front of it (docs/FINETUNE.md,
the ablation). The gate decides from the question and the retrieval itself, no model:

- explicit references back (`GateConfig.refers_back`): a picture other than the one shown ("the first picture",
  "the previous photo"), an earlier turn ("your last answer", "turn 3"), a time or session phrase of `_when`
  ("two weeks ago", "last time we talked"; "today" is the present) or a word that points back (earlier, again,
  previously, already, "you said", "remember");
- optionally a third-person pronoun (`pronouns`: "is he smiling?"), VisDial's usual way of pointing back;
- the best retrieved memory's raw relevance at least `min_relevance`, a threshold calibrated on a TRAIN split with
  `calibrate_min_relevance` (raw relevance: lexical share of the question's words + caption and picture/time/speaker
  bonuses [+ cosine], comparable across questions, unlike the min-max normalised components).

Usage: `memory_needed(question, store.retrieve(question, 3, now), current_picture, GateConfig())`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from shared.memory._config import GateConfig, Retrieved
from shared.memory._text import picture_refs, tokenize
from shared.memory._when import parse_when

GATE_REASONS = ("picture", "turn", "time", "words", "pronoun", "relevance")

_PICTURE = r"(?:picture|image|photo|pic)s?"
_BACK_PICTURE = re.compile(rf"\b(?:previous|earlier|last|prior|preceding|other|former)\s+{_PICTURE}\b")
_TURN_WORD = r"(?:question|answer|turn|round|reply|message)s?"
_TURN_REF = re.compile(rf"\b(?:first|second|third|last|previous|earlier|prior|preceding|former)\s+{_TURN_WORD}\b"
                       rf"|\b(?:turn|round|question)\s*#?\s*\d+\b")
_BACK_WORDS = re.compile(r"\b(?:earlier|previously|again|already|before|remember|recall|mentioned)\b"
                         r"|\b(?:you|i|we)\s+(?:said|told|asked|mentioned|talked|discussed)\b")
# "it" is left out: mostly the expletive of "is it sunny?", "is it a photo?"
_PRONOUNS = frozenset("he she they him her them his hers their theirs".split())


def _refers_back(question: str, current_picture: int | None, now: float | None) -> str | None:
    """The kind of explicit reference to the past in `question` ("picture", "turn", "time", "words") or None."""
    text = " ".join(tokenize(question))  # lower-case words only: the patterns below need no punctuation
    refs = picture_refs(question, current_picture)
    if refs - ({current_picture} if current_picture is not None else set()) or _BACK_PICTURE.search(text):
        return "picture"
    if _TURN_REF.search(text):
        return "turn"
    when = parse_when(question, 0.0 if now is None else now)
    if when.days or when.sessions or when.sessions_back or any(center > 0 for center, _ in when.ages):
        return "time"
    if _BACK_WORDS.search(text):
        return "words"
    return None


def best_relevance(retrieved: Sequence[Retrieved]) -> float | None:
    """The highest raw relevance among the retrieved memories (None: nothing retrieved or relevance not scored)."""
    values = [r.relevance for r in retrieved if r.relevance is not None]
    return max(values) if values else None


def gate_reason(question: str, retrieved: Sequence[Retrieved], current_picture: int | None = None,
                gate: GateConfig | None = None, now: float | None = None) -> str | None:
    """Why a reminder should be injected (one of GATE_REASONS) or None when it should not; e.g.
    `gate_reason("what was in the first picture?", memories, current_picture=2) == "picture"`.

    Nothing retrieved never fires. `current_picture` (1-based, in order of first appearance) tells a reference to
    the picture shown from one to an earlier picture; `now` (epoch seconds) dates calendar phrases.
    """
    gate = gate or GateConfig()
    if not retrieved:
        return None
    if gate.refers_back and (reason := _refers_back(question, current_picture, now)):
        return reason
    if gate.pronouns and _PRONOUNS.intersection(tokenize(question)):
        return "pronoun"
    best = best_relevance(retrieved)
    if gate.min_relevance is not None and best is not None and best >= gate.min_relevance:
        return "relevance"
    return None


def memory_needed(question: str, retrieved: Sequence[Retrieved], current_picture: int | None = None,
                  gate: GateConfig | None = None, now: float | None = None) -> bool:
    """Whether the question needs the past, i.e. whether to inject `retrieved` as a reminder (`gate_reason`)."""
    return gate_reason(question, retrieved, current_picture, gate, now) is not None


def calibrate_min_relevance(best: Sequence[float | None], needed: Sequence[bool],
                            fired: Sequence[bool] | None = None, max_false_rate: float = 0.05) -> float | None:
    """The `min_relevance` that best tells rounds needing the past from the others, from a TRAIN split.

    Args:
        best: per round, `best_relevance` of its retrieval (None: nothing retrieved; never fires).
        needed: per round, whether it needs the past (e.g. the demo's `kind == "memory"`).
        fired: per round, whether the other rules already fire (`gate_reason` with min_relevance None).
        max_false_rate: at most this share of the rounds that do not need the past may fire.
    Returns the threshold (midway between two observed values) maximising the whole gate's true-positive rate minus
    its false-positive rate within that bound, or None when no threshold beats the other rules alone.
    """
    if not (len(best) == len(needed) and (fired is None or len(fired) == len(best))):
        raise ValueError(f"calibrate_min_relevance: {len(best)} relevances, {len(needed)} labels"
                         f"{'' if fired is None else f', {len(fired)} fired flags'}; give one per round")
    labels = np.asarray(needed, dtype=bool)
    fire = np.zeros(len(best), bool) if fired is None else np.asarray(fired, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return None
    known = np.array([b is not None for b in best], dtype=bool)
    values = np.array([np.nan if b is None else float(b) for b in best], dtype=np.float64)
    # Rounds the threshold can still add: not fired by the other rules, with a relevance.
    open_rows = known & ~fire
    pos_values, neg_values = np.sort(values[open_rows & labels]), np.sort(values[open_rows & ~labels])
    base_tp, base_fp = int((fire & labels).sum()), int((fire & ~labels).sum())
    distinct = np.unique(values[known])
    thresholds = (distinct[:-1] + distinct[1:]) / 2
    tp = base_tp + len(pos_values) - np.searchsorted(pos_values, thresholds, side="left")
    fp = base_fp + len(neg_values) - np.searchsorted(neg_values, thresholds, side="left")
    gain = tp / positives - fp / negatives
    allowed = (fp / negatives <= max_false_rate) & (gain > base_tp / positives - base_fp / negatives + 1e-12)
    if not allowed.any():
        return None
    best_at = int(np.flatnonzero(allowed)[np.argmax(gain[allowed])])  # ties: the lowest such threshold
    return float(thresholds[best_at])
