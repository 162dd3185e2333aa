"""Fine-tuning records (image, conversation, response) and the chat messages built from them.

A record is one open round of a dialog: the image shown at that round, the conversation rendered by
shared.dialog_text (history + the open question + "A:", never its answer) and, for training, the response:
the short answer, optionally preceded by a `<reminder>` block of earlier turns (retrieved by shared.memory and
rendered by shared.reminder, or written by an LLM through the generate service). With `reminder="gated"` the block
is there only in rounds whose question needs the past (shared.memory.memory_needed), so the model learns to recall
when it matters and to answer straight away otherwise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import InputError
from shared.dialog_text import render_conversation, shown_image
from shared.images import ImageIndex, MissingImageError
from shared.memory import GateConfig, IdfTable, MemoryConfig, dialog_gates, replay_dialog
from shared.reminder import extract_reminders, render_reminder, strip_blocks
from shared.visdial import Dialog, load_visdial

INSTRUCTIONS = {
    "none": "Answer the last question about the picture in a short phrase.",
    "retrieved": "First recall the earlier turns that matter inside <reminder></reminder>, "
                 "then answer the last question about the picture in a short phrase.",
}
INSTRUCTIONS["generated"] = INSTRUCTIONS["retrieved"]
INSTRUCTIONS["gated"] = ("If the last question is about an earlier turn or picture, first recall the earlier turns "
                         "that matter inside <reminder></reminder>; then answer the last question about the picture "
                         "in a short phrase.")
RETRIEVING = ("retrieved", "gated")  # the modes whose responses carry shared.memory's reminders


class RecordError(InputError):
    """Input that cannot become fine-tuning records; the message names the file, the place and the fix."""


@dataclass(frozen=True)
class FinetuneRecord:
    image_id: int  # the dialog's image id: with round_id the key of predictions.jsonl
    round_id: int  # 1-based open round
    image_path: Path  # the image shown at that round
    conversation: str  # ends with the open question and "A:"
    response: str | None  # None at inference
    kind: str | None = None  # "current" | "memory" (demo data)
    gate: bool | None = None  # reminder="gated": whether the response carries the reminder (else None)


def instruction_for(reminder: str, instruction: str | None) -> str:
    return INSTRUCTIONS[reminder] if instruction is None else instruction


def user_text(instruction: str, conversation: str) -> str:
    return f"{instruction}\n\n{conversation}" if instruction else conversation


def build_messages(record: FinetuneRecord, image: Any, instruction: str, with_response: bool = True) -> list[dict]:
    """Chat messages: a user turn with the image and the text, then (training) the assistant's response."""
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": user_text(instruction, record.conversation)}]}]
    if with_response:
        if record.response is None:
            raise RecordError(f"record {record.image_id}/{record.round_id} has no response to train on")
        messages.append({"role": "assistant", "content": [{"type": "text", "text": record.response}]})
    return messages


def _selected(dialog: Dialog, rounds: str) -> set[int]:
    if rounds == "last":
        return {dialog.rounds[-1].round_id}
    if rounds == "all":
        return {r.round_id for r in dialog.rounds}
    return {r.round_id for r in dialog.rounds if r.kind == rounds}


def dialog_records(dialog: Dialog, images: ImageIndex, rounds: str, reminder: str, top_k: int,
                   memory: MemoryConfig, caption: bool, with_response: bool,
                   idf: IdfTable | None = None, gate: GateConfig | None = None) -> list[FinetuneRecord]:
    """Records of one dialog; reminders come only from the earlier, answered turns of this dialog."""
    # replay_dialog retrieves on every round, chosen or not, so recalls update the store as in a live dialog.
    reminders = replay_dialog(dialog, memory, top_k, idf) if reminder in RETRIEVING else {}
    gates = dialog_gates(dialog, reminders, gate) if reminder == "gated" else {}
    chosen, out = _selected(dialog, rounds), []
    for rnd in dialog.rounds:
        if rnd.round_id not in chosen or (with_response and rnd.answer is None):
            continue
        fired = gates.get(rnd.round_id) is not None if reminder == "gated" else None
        response = None
        if with_response:
            answer = " ".join(rnd.answer.split())
            recall = reminder == "retrieved" or fired
            response = f"{render_reminder(reminders[rnd.round_id])}\n{answer}" if recall else answer
        out.append(FinetuneRecord(dialog.image_id, rnd.round_id, images.path(shown_image(dialog, rnd)),
                                  render_conversation(dialog, rnd.round_id, caption=caption), response, rnd.kind,
                                  fired))
    return out


def records_from_visdial(dialogs_path: str | Path, images_dir: str | Path, *, rounds: str = "all",
                         reminder: str = "none", top_k: int = 3, memory: MemoryConfig | None = None,
                         caption: bool = True, with_response: bool = True,
                         limit_dialogs: int | None = None, gate: GateConfig | None = None) -> list[FinetuneRecord]:
    """Every selected round of a VisDial-format split as a record (raises VisDialError / RecordError)."""
    if reminder == "generated":
        raise RecordError("reminder=generated needs the generate service's records (data.source=generated)")
    split = load_visdial(dialogs_path)
    dialogs = split.dialogs[:limit_dialogs] if limit_dialogs else split.dialogs
    index = ImageIndex.scan(images_dir)
    missing = sorted({i for d in dialogs for i in d.image_ids() if i not in index})
    if missing:  # all of them up front, not one per failed batch hours into training
        raise MissingImageError(f"{len(missing)} image(s) of {dialogs_path} missing, e.g. ids {missing[:5]}: "
                                + str(_missing_error(index, missing[0])))
    # Saliency's IDF from the whole split (a single dialog has too few turns for meaningful statistics).
    idf = IdfTable.fit(f"{r.question} {r.answer or ''}" for d in split.dialogs for r in d.rounds) \
        if reminder in RETRIEVING else None
    out: list[FinetuneRecord] = []
    for dialog in dialogs:
        out.extend(dialog_records(dialog, index, rounds, reminder, top_k, memory or MemoryConfig(), caption,
                                  with_response, idf, gate))
    if not out:
        raise RecordError(f"{dialogs_path}: no rounds selected by rounds={rounds!r}"
                          + (" with answers" if with_response else "")
                          + "; 'memory'/'current' need rounds with a `kind` (demo data), else use rounds=all")
    return out


def _missing_error(index: ImageIndex, image_id: int) -> Exception:
    try:
        index.path(image_id)
    except MissingImageError as e:
        return e
    raise AssertionError(f"image {image_id} was reported missing but is indexed")


_GENERATED_TYPES = {"image_id": int, "round_id": int, "conversation": str, "response": str}


def _generated_record(row: Any, where: str, index: ImageIndex, reminder: str) -> FinetuneRecord:
    if not isinstance(row, dict):
        raise RecordError(f"{where}: not a JSON object; regenerate the file with services.generate")
    for key, tp in _GENERATED_TYPES.items():
        if not isinstance(row.get(key), tp) or isinstance(row.get(key), bool):
            raise RecordError(f"{where}: {key} missing or not {tp.__name__} ({row.get(key)!r}); "
                              "the file must hold services.generate records (gen-reason)")
    conversation, response = row["conversation"].rstrip(), row["response"].strip()
    if not conversation.endswith("A:"):
        raise RecordError(f"{where}: conversation does not end with the open question's 'A:'; its answer must "
                          "never be in the prompt — regenerate the record")
    if reminder == "generated" and not extract_reminders(response):
        raise RecordError(f"{where}: response has no <reminder> block; generate with gen-reason, "
                          "or train answers only with data.reminder=none")
    if reminder == "none":
        response = strip_blocks(response)[0]
    if not strip_blocks(response)[0]:
        raise RecordError(f"{where}: no answer after the reminder block; drop the record or regenerate it")
    shown = row.get("images") or [row["image_id"]]
    if not isinstance(shown, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in shown):
        raise RecordError(f"{where}: images must be a list of image ids, got {shown!r}")
    return FinetuneRecord(row["image_id"], row["round_id"], index.path(shown[-1]), conversation, response)


def records_from_generated(path: str | Path, images_dir: str | Path, *, reminder: str = "generated",
                           limit: int | None = None) -> list[FinetuneRecord]:
    """Records from the generate service's records.jsonl (the last image sent with a prompt is its image)."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: no such file; run `python -m services.generate gen-reason --config ...` "
                          "first, or set data.generated")
    index = ImageIndex.scan(images_dir)
    out: list[FinetuneRecord] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise RecordError(f"{path}:{n}: not valid JSON ({e}); fix or delete that line") from None
            out.append(_generated_record(row, f"{path}:{n}", index, reminder))
            if limit and len(out) >= limit:
                break
    if not out:
        raise RecordError(f"{path}: no records; the generate run wrote nothing yet")
    return out
