"""Render a dialog's history as the `Q: ...\\nA: ...` text every prompt uses, ending with the open question.

The open round's answer is never rendered (the original project's fine-tuned predictions had the ground truth in the prompt).
In multi-image dialogs a `[picture k]` line marks the turn where the k-th distinct image is shown (k counts images in
order of first appearance; the dialog's own image is picture 1 and is only marked once a second one has been shown).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the annotations; shared.visdial is plain data classes
    from shared.visdial import Dialog


def picture_numbers(dialog: Any) -> dict[int, int]:
    """Image id -> 1-based picture number, in order of first appearance; e.g. `picture_numbers(d)[d.image_id] == 1`."""
    numbers = {int(dialog.image_id): 1}
    for rnd in dialog.rounds:
        shown = int(rnd.image_id if getattr(rnd, "image_id", None) is not None else dialog.image_id)
        numbers.setdefault(shown, len(numbers) + 1)
    return numbers


def shown_image(dialog: Any, rnd: Any) -> int:
    """Image id shown at round `rnd` (the round's own image, else the dialog's); e.g. `shown_image(d, d.rounds[0])`."""
    return int(rnd.image_id if getattr(rnd, "image_id", None) is not None else dialog.image_id)


def render_conversation(dialog: Dialog, round_id: int, caption: bool = True) -> str:
    """History of `dialog` up to `round_id` (1-based), ending with that round's question and `A:`.

    Example: `render_conversation(split.dialogs[0], 3)` -> "Caption: ...\\nQ: q1\\nA: a1\\nQ: q2\\nA: a2\\nQ: q3\\nA:".
    Raises ValueError when `round_id` is outside the dialog or a past round has no answer.
    """
    rounds = list(dialog.rounds)
    if not 1 <= round_id <= len(rounds):
        raise ValueError(
            f"dialog of image {dialog.image_id}: round_id {round_id} not in 1..{len(rounds)}; round ids are 1-based"
        )
    numbers = picture_numbers(dialog)
    # Only the images shown so far count: the text must not reveal that a new picture is coming.
    multi_image = len({shown_image(dialog, rnd) for rnd in rounds[:round_id]}) > 1
    lines: list[str] = []
    if caption and getattr(dialog, "caption", None):
        lines.append(f"Caption: {' '.join(str(dialog.caption).split())}")
    previous = int(dialog.image_id)
    for index, rnd in enumerate(rounds[:round_id]):
        current = shown_image(dialog, rnd)
        # In multi-image dialogs picture 1 is marked at the start too, so "the first picture" has an anchor.
        if multi_image and (index == 0 or current != previous):
            lines.append(f"[picture {numbers[current]}]")
        previous = current
        lines.append(f"Q: {' '.join(str(rnd.question).split())}")
        if index == round_id - 1:
            lines.append("A:")  # the open round: its answer is what the model must produce
            break
        if rnd.answer is None:
            raise ValueError(
                f"dialog of image {dialog.image_id}: past round {rnd.round_id} has no answer; "
                "only the last round of a test dialog may be unanswered"
            )
        lines.append(f"A: {' '.join(str(rnd.answer).split())}")
    return "\n".join(lines)
