"""Build one generation request: the rendered conversation, optional <reminder> block, and the pictures shown.

The open round's answer is never part of a prompt: the conversation comes from shared.dialog_text (which stops at
"A:") and the reminder from shared.memory._dialog (which retrieves before the open turn is stored).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.generate.backends import Request
from services.generate.config import GenerateConfig
from shared.dialog_text import render_conversation, shown_image
from shared.reminder import render_reminder

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


@dataclass
class Prompt:
    request: Request
    conversation: str
    reminder: str
    image_ids: list[int]


def fill(template: str, **values: str) -> str:
    """Replace only the known {placeholders}, so other braces in a prompt stay as written."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template.strip("\n")


def images_shown(dialog: Any, round_id: int, mode: str) -> list[int]:
    """Image ids to send: none, the picture on screen at `round_id`, or every picture shown so far (in order)."""
    if mode == "none":
        return []
    rounds = dialog.rounds[:round_id]
    if mode == "current":
        return [shown_image(dialog, rounds[-1])]
    return list(dict.fromkeys(shown_image(dialog, r) for r in rounds))


def build_prompt(cfg: GenerateConfig, dialog: Any, rnd: Any, memories: list | None, image_index: Any,
                 accepts_images: bool) -> Prompt:
    """The request for round `rnd` of `dialog`; `memories` are the retrieved turns (None: retrieval off)."""
    conversation = render_conversation(dialog, rnd.round_id, caption=cfg.data.caption)
    reminder = render_reminder(memories) if memories is not None else ""
    user = fill(cfg.prompt.user, conversation=conversation, reminder=reminder, question=rnd.question)
    ids = images_shown(dialog, rnd.round_id, cfg.backend.images) if accepts_images else []
    images = []
    for image_id in ids:
        path = Path(image_index.path(image_id))
        images.append((path.read_bytes(), MIME.get(path.suffix.lower(), "application/octet-stream")))
    return Prompt(Request(cfg.prompt.system.strip(), user, images), conversation, reminder, ids)
