"""What each memory condition puts before the open question, and the token ids of the candidate answers.

Every prompt is plain text in the project's conversation format (shared/dialog_text.py), which a small LM continues
best (chat-template prompts scored lower in docs/HISTORY.md's check):

    Caption: <caption>            (every condition but `none`: the caption stands in for the picture)
    Q: <earlier question>         (full: every earlier turn; window: the last k)
    A: <earlier answer>
    <reminder>                    (reminder: the top-k earlier turns retrieved by shared.memory, [turn n] lines;
    [turn 2] Q: ... A: ...         gated: only where the gate says the question needs the past)
    </reminder>
    Q: <open question>
    A:

An option is " <answer>" followed by the end marker, so its summed log-prob includes "the answer stops here". The
open round's answer is never in its prompt; retrieval for round t only ever saw rounds 1..t-1 (replay_dialog).
"""
from __future__ import annotations

from shared.memory import Retrieved, dialog_gates, replay_dialog
from shared.reminder import render_reminder
from shared.visdial import Dialog

from services.train.rank_text.config import RankPromptSettings


def _clean(text: str) -> str:
    return " ".join(str(text).split())


def dialog_reminders(dialog: Dialog, settings: RankPromptSettings) -> dict[int, list[Retrieved]]:
    """round_id -> the memories retrieved for that round (a live replay of the dialog; [] for round 1)."""
    return replay_dialog(dialog, settings.memory, settings.reminder_k)


def gated_reminders(dialog: Dialog, settings: RankPromptSettings) -> dict[int, list[Retrieved]]:
    """As dialog_reminders, with [] wherever the gate says the question does not need the past."""
    retrieved = dialog_reminders(dialog, settings)
    reasons = dialog_gates(dialog, retrieved, settings.gate)
    return {r: items if reasons.get(r) is not None else [] for r, items in retrieved.items()}


def prompt_text(dialog: Dialog, round_id: int, condition: str, settings: RankPromptSettings,
                reminders: dict[int, list[Retrieved]] | None = None) -> str:
    """The text of round `round_id`'s prompt (1-based) under `condition`, ending with "Q: <question>\\nA:".
    `reminders`: dialog_reminders (reminder) or gated_reminders (gated) of the dialog."""
    rounds = dialog.rounds[:round_id]
    lines: list[str] = []
    if condition != "none":
        lines.append(f"Caption: {_clean(dialog.caption)}")
    earlier = [f"Q: {_clean(r.question)}\nA: {_clean(r.answer)}" for r in rounds[:-1]]
    if condition == "full":
        lines += earlier
    elif condition == "window":
        lines += earlier[len(earlier) - settings.window:] if len(earlier) > settings.window else earlier
    elif condition in ("reminder", "gated"):
        if reminders is None:
            raise ValueError("the reminder condition needs the dialog's retrieved memories (dialog_reminders)")
        items = list(reminders.get(round_id, []))
        if settings.reminder_order == "turn":
            items.sort(key=lambda m: m.turn)
        if items:  # round 1 has nothing to remember: no empty block
            lines.append(render_reminder(items))
    elif condition not in ("none", "caption"):
        raise ValueError(f"unknown condition {condition!r}")
    lines.append(f"Q: {_clean(rounds[-1].question)}\nA:")
    return "\n".join(lines)


def end_ids(tokenizer, option_end: str) -> list[int]:
    """Token ids that end every option: the tokenizer's EOS or a newline."""
    if option_end == "eos":
        return [tokenizer.eos_token_id]
    ids = tokenizer("\n", add_special_tokens=False).input_ids
    if not ids:
        raise ValueError("the tokenizer encodes a newline as nothing; use lm.option_end=eos")
    return ids


def option_ids(tokenizer, options: list[str], option_end: str) -> list[list[int]]:
    """Token ids of every candidate: " <answer>" then the end marker (tokenized on its own: the same ids in every
    option, so the options' trie shares them)."""
    end = end_ids(tokenizer, option_end)
    return [tokenizer(" " + _clean(o), add_special_tokens=False).input_ids + end for o in options]
