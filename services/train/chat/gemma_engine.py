"""The chat over a fine-tuned Gemma-3 `<reminder>` adapter, loaded and prompted as `finetune-infer` does it.

Per question: the conversation so far becomes a dialog, rendered by shared.dialog_text (the training prompt's text:
history, `[picture k]` markers, the open question, `A:`), and the picture shown at this turn goes in beside it;
finetune.infer.Predictor generates, streamed through a transformers TextIteratorStreamer. The model writes its own
`<reminder>` block first: the panel shows those lines, and beside them what shared.memory retrieves for the question
(the recipe the training reminders were made with when data.reminder=retrieved). Gemma has no memory bank and no
ranking here.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator

from shared.dialog_text import render_conversation
from shared.memory import replay_dialog
from shared.reminder import parse_reminder, render_line, strip_blocks

from services.train.chat import preflight
from services.train.chat.config import ChatConfig
from services.train.chat.session import ChatInputError, MemoryView, ReminderRow, Session
from services.train.finetune.config import FinetuneInferConfig
from services.train.finetune.records import FinetuneRecord

RECALLING = "(recalling earlier turns…)"  # shown while the model is still inside its <reminder> block


class GemmaEngine:
    kind = "gemma"

    def __init__(self, cfg: ChatConfig):
        from services.train.finetune.infer import Predictor

        preflight.check(cfg)
        g = cfg.gemma
        self.predictor = Predictor(FinetuneInferConfig(
            run=cfg.run, outputs_root=cfg.outputs_root, adapter=g.adapter, base_model=g.base_model,
            load_in_4bit=g.load_in_4bit, dtype=g.dtype, device=cfg.device, num_threads=cfg.num_threads))
        data = self.predictor.train_cfg.data
        self.memory, self.top_k = data.memory, cfg.reminder_top_k or data.reminder_top_k
        self.reminder_mode = data.reminder
        self.max_new_tokens = g.max_new_tokens
        self.description = (f"Gemma-3 adapter {self.predictor.adapter_dir or '(none: the base model)'}, trained "
                            f"with reminders: {data.reminder}")

    def respond(self, session: Session, question: str) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        picture = session.current_picture
        dialog = session.dialog(question)
        number = len(dialog.rounds)
        record = FinetuneRecord(0, number, picture.path, render_conversation(dialog, number), None)
        streamer = TextIteratorStreamer(self.predictor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict = {}

        def work() -> None:
            try:
                result["raw"] = self.predictor.generate([record], self.max_new_tokens, streamer=streamer)[0]
            except BaseException as e:  # handed to the caller's thread below
                result["error"] = e
                streamer.end()

        thread = threading.Thread(target=work, name="chat-gemma", daemon=True)
        thread.start()
        text = ""
        for piece in streamer:
            text += piece
            yield strip_blocks(text)[0] or RECALLING
        thread.join()
        if "error" in result:
            error = result["error"]
            raise ChatInputError(f"{picture.label}: {error}") if isinstance(error, ValueError) else error
        raw = result["raw"]
        answer = strip_blocks(raw)[0]
        session.record(question, answer, None, self._memory_view(dialog, raw))
        yield answer

    def _memory_view(self, dialog, raw: str) -> MemoryView:
        number = len(dialog.rounds)
        retrieved = replay_dialog(dialog, self.memory, self.top_k).get(number, []) if number > 1 else []
        written = {item.turn for item in parse_reminder(raw)}
        view = MemoryView(reminder_mode=f"written by the model (trained with: {self.reminder_mode})",
                          prompt=render_conversation(dialog, number))
        view.reminders = [ReminderRow(r.turn, r.question, r.answer, r.image_note, r.score, dict(r.components),
                                      r.turn in written) for r in retrieved]
        lines = [render_line(item) for item in parse_reminder(raw)]
        view.notes.append("the model's own <reminder>: " + (" | ".join(lines) if lines else "none written"))
        view.notes.append("'used' below = the model recalled that turn in its <reminder>; a Gemma adapter has no "
                          "memory bank and ranks no candidates here")
        return view
