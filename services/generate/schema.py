"""The generated-record schema and the gen_reason response format, checked before anything is written.

Record (one JSON object per line of records.jsonl):
    id             str   "<split>:<image_id>:<round_id>", unique in the file (the resume key)
    image_id       int   the dialog's image id
    round_id       int   1-based round whose question is answered
    prompt_kind    str   gen_base | gen_reason
    conversation   str   the rendered history ending with the open question and "A:" (never its answer)
    response       str   the model's text, as generated (new tokens only)
    answer         str   clean_answer(response): blocks stripped, a leading "A:" label dropped
    reminder       str   the <reminder> block given in the prompt ("" when retrieval is off)
    reference      str|None  the dataset's answer of that round (NOT shown to the model; for filtering/training)
    images         [int] image ids sent with the prompt (empty for text-only backends)
    backend, model, config_hash  str
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from shared.reminder import extract_reminders, strip_blocks

FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "image_id": (int,), "round_id": (int,), "prompt_kind": (str,), "conversation": (str,),
    "response": (str,), "answer": (str,), "reminder": (str,), "reference": (str, type(None)), "images": (list,),
    "backend": (str,), "model": (str,), "config_hash": (str,),
}
PROMPT_KINDS = ("gen_base", "gen_reason")
_CLOSED = re.compile(r"<\s*/\s*reminder\s*>", re.IGNORECASE)
_FIRST = re.compile(r"\s*<\s*reminder\b", re.IGNORECASE)
_LABEL = re.compile(r"^(?:a|answer)\s*:\s*", re.IGNORECASE)


def record_id(split: str, image_id: int, round_id: int) -> str:
    return f"{split}:{image_id}:{round_id}"


def check_record(record: Mapping[str, Any]) -> str | None:
    """None when `record` fits the schema, else what is wrong (missing/extra key, wrong type, bad value)."""
    missing = [k for k in FIELDS if k not in record]
    if missing:
        return f"missing keys {missing}"
    extra = sorted(set(record) - set(FIELDS))
    if extra:
        return f"unknown keys {extra}"
    for key, types in FIELDS.items():
        value = record[key]
        if not isinstance(value, types) or (int in types and isinstance(value, bool)):
            return f"{key} is {type(value).__name__}, expected {'/'.join(t.__name__ for t in types)}"
    if record["round_id"] < 1:
        return f"round_id {record['round_id']} < 1 (round ids are 1-based)"
    if record["prompt_kind"] not in PROMPT_KINDS:
        return f"prompt_kind {record['prompt_kind']!r} not in {PROMPT_KINDS}"
    if not record["conversation"].rstrip().endswith("A:"):
        return "conversation does not end with the open question's 'A:'"
    if not all(isinstance(i, int) for i in record["images"]):
        return "images must be a list of image ids"
    return None


def clean_answer(response: str) -> str:
    """The answer part of a response: reminder/reasoning/think blocks stripped, whitespace collapsed, and a leading
    "A:" / "Answer:" label dropped (prompts end with "A:", and chat models often repeat it)."""
    answer, _ = strip_blocks(response)
    return _LABEL.sub("", answer, count=1)


def check_reason_response(response: str, max_answer_words: int, require_reminder: bool = True) -> str | None:
    """gen_reason format: a closed <reminder>…</reminder> block first, then a short non-empty answer.

    Returns None when the response fits, else the reason it is rejected.
    """
    text = response.strip()
    blocks = extract_reminders(text)
    if require_reminder:
        if not blocks:
            return "no <reminder> block"
        if not _CLOSED.search(text):
            return "<reminder> block is never closed"
        if not _FIRST.match(text):
            return "text before the <reminder> block (the block must come first)"
        if not blocks[0].strip():
            return "empty <reminder> block"
    answer = clean_answer(text)
    if not answer:
        return "no answer after the <reminder> block"
    words = len(answer.split())
    if words > max_answer_words:
        return f"answer has {words} words (> {max_answer_words}); it should be a short phrase"
    return None
