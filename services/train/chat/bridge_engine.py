"""The chat over a trained bridge run: each question goes through the very code `infer` uses, one turn at a time.

Per question: the new picture (once) and the question are embedded as the shards were (encoder.py); the bridge reads
every turn so far through its memory bank (model.Bridge, with `record_banks` on so the panel can show the slots); the
prompt is PromptBuilder's for the conversation as a dialog (so its reminder block comes from shared.memory exactly as
in training); the answer is scoring.greedy's, streamed token by token; in ranking mode every candidate answer is
scored by scoring.score_options from the same prefix.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from shared.memory import replay_dialog
from shared.reminder import parse_reminder, strip_blocks
from shared.visdial import load_visdial

from services.train.bridge import checkpoints as train_state
from services.train.bridge.config import InferConfig
from services.train.bridge.data import PromptBuilder
from services.train.bridge.infer import OptionTokens, load_trained
from services.train.bridge.llm import assemble
from services.train.bridge.runtime import autocast, build, embedded_turns, load_saved_weights, pick_device
from services.train.bridge.scoring import encode_prefix, greedy, score_options
from services.train.chat import preflight
from services.train.chat.config import ChatConfig, ChatError
from services.train.chat.encoder import TurnEncoder
from services.train.chat.session import (ChatInputError, MemoryView, ReminderRow, Session, bank_slots)

log = logging.getLogger(__name__)
TOP_CANDIDATES = 5


def answer_vocabulary(path: str | None, limit: int) -> list[str]:
    """Distinct answer options of a VisDial-format split, in first-seen order (the ranking mode's candidates)."""
    if path is None:
        return []
    seen = dict.fromkeys(o for d in load_visdial(path) for r in d.rounds for o in (r.options or ()))
    if len(seen) > limit:
        raise ChatError(f"bridge.candidates={path}: {len(seen)} distinct answer options, more than "
                        f"bridge.max_candidates={limit}", fix="raise bridge.max_candidates, or give a smaller split")
    return list(seen)


class BridgeEngine:
    kind = "bridge"

    def __init__(self, cfg: ChatConfig):
        preflight.check(cfg)
        infer_cfg = InferConfig(run=cfg.run, outputs_root=cfg.outputs_root, checkpoint=cfg.bridge.checkpoint,
                                device=cfg.device, num_threads=cfg.num_threads)
        folder, train_cfg, state = load_trained(infer_cfg)
        self.device = pick_device(cfg.device)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.encoder = TurnEncoder(Path(cfg.bridge.embeddings or train_cfg.data.embeddings), self.device)
        dims = {"image": self.encoder.image_dim, "text": self.encoder.text_dim}
        if dims != state["dims"]:
            raise ChatError(f"{folder}: trained on {state['encoder_id']} {state['dims']}, the chat embeds {dims}",
                            fix="chat with a bridge trained on cpu_default embeddings")
        self.model_cfg, self.prompt_cfg = train_cfg.model, train_cfg.prompt
        self.bridge, self.llm, self.tokenizer = build(train_cfg.model, dims["image"], dims["text"], self.device,
                                                      train_cfg.seed)
        load_saved_weights(self.bridge, self.llm, train_state.load_weights(folder), folder)
        self.bridge.eval()
        self.bridge.record_banks = True
        self.builder = PromptBuilder(train_cfg.prompt, self.tokenizer,
                                     None if cfg.bridge.reminder == "train" else cfg.bridge.reminder)
        self.options = OptionTokens(self.builder, with_eos=True)  # as `infer` scores them (score_with_eos)
        self.candidates = answer_vocabulary(cfg.bridge.candidates, cfg.bridge.max_candidates)
        self.max_new_tokens = cfg.bridge.max_new_tokens
        self.top_k = cfg.reminder_top_k or train_cfg.prompt.reminder_top_k
        self.description = (f"bridge run '{cfg.run}' ({folder.name}, step {state['step']}), LLM "
                            f"{Path(train_cfg.model.llm.path).name}, memory bank {train_cfg.model.memory_bank_length} "
                            f"slots, reminders: {self.builder.reminder}")
        log.info("chat: %s", self.description)

    def respond(self, session: Session, question: str) -> Iterator[str]:
        """Yield the answer as it grows; at the end the turn (with its MemoryView) is recorded in `session`."""
        picture = session.current_picture
        number = len(session.turns) + 1
        if number > self.model_cfg.max_turns:
            raise ChatInputError(f"this bridge was trained on dialogs of at most {self.model_cfg.max_turns} turns: "
                                 "start a new conversation")
        if picture.embedding is None:
            picture.embedding = self.encoder.image(picture.path)
        question_embedding = self.encoder.text(question)
        dialog = session.dialog(question)
        prompt = self.builder.texts(dialog)[-1]
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad(), autocast(self.device):
            soft = self.bridge(*self._turn_tensors(session, question_embedding))
            embeds, mask, positions = assemble(soft, self.builder.bos, [prompt_ids], self.llm.get_input_embeddings(),
                                               self.tokenizer.pad_token_id, left_pad=True)
            prefix = encode_prefix(self.llm, embeds, mask, positions)
        answer = ""
        for ids in self._stream(prefix):  # the last one is greedy's result
            answer = strip_blocks(self.tokenizer.decode(ids, skip_special_tokens=True))[0]
            yield answer
        memory = self._memory_view(dialog, prompt, self._ranked(prefix))
        session.record(question, answer, question_embedding, memory)

    def _turn_tensors(self, session: Session, question_embedding: np.ndarray) -> tuple[torch.Tensor, ...]:
        """(image, question, turn, picture) of every turn so far and the open one, as `DialogData.embeddings`."""
        pictures = [t.picture for t in session.turns] + [session.current_picture.number]
        images = [session.picture(p).embedding for p in pictures]
        questions = [t.question_embedding for t in session.turns] + [question_embedding]
        steps = embedded_turns(self.model_cfg) or len(pictures)  # memory off: only the open turn
        turn = np.arange(1, len(pictures) + 1)[-steps:]
        arrays = (np.stack(images)[-steps:], np.stack(questions)[-steps:], turn, np.array(pictures)[-steps:])
        return tuple(torch.from_numpy(np.ascontiguousarray(a))[None].to(self.device) for a in arrays)

    def _stream(self, prefix) -> Iterator[list[int]]:
        """scoring.greedy in a worker thread; yields the tokens so far after every step, then the final list."""
        steps: queue.Queue = queue.Queue()
        result: dict = {}

        def work() -> None:
            try:
                with autocast(self.device):
                    result["ids"] = greedy(self.llm, prefix, self.max_new_tokens, self.tokenizer.eos_token_id,
                                           on_step=lambda out: steps.put(list(out[0])))[0]
            except BaseException as e:  # handed to the caller's thread below
                result["error"] = e
            finally:
                steps.put(None)

        thread = threading.Thread(target=work, name="chat-greedy", daemon=True)
        thread.start()
        while (ids := steps.get()) is not None:
            yield ids
        thread.join()
        if "error" in result:
            raise result["error"]
        yield result["ids"]

    def _ranked(self, prefix) -> list[tuple[str, float]]:
        if not self.candidates:
            return []
        with torch.no_grad(), autocast(self.device):
            scores = score_options(self.llm, prefix, [[self.options(c) for c in self.candidates]])[0]
        order = np.argsort(-np.asarray(scores), kind="stable")[:TOP_CANDIDATES]  # ties: the earlier option first
        return [(self.candidates[i], float(scores[i])) for i in order]

    def _memory_view(self, dialog, prompt: str, candidates: list[tuple[str, float]]) -> MemoryView:
        mode = self.builder.reminder
        number = len(dialog.rounds)
        retrieved = replay_dialog(dialog, self.prompt_cfg.memory, self.top_k).get(number, []) if number > 1 else []
        used = {item.turn for item in parse_reminder(prompt)}
        view = MemoryView(reminder_mode=mode, prompt=prompt, candidates=candidates,
                          bank_length=self.model_cfg.memory_bank_length)
        view.reminders = [ReminderRow(r.turn, r.question, r.answer, r.image_note, r.score, dict(r.components),
                                      r.turn in used) for r in retrieved]
        if "gate" in mode:  # a gated reminder mode: the block is in the prompt only when the gate fired
            view.gate = "fired" if used else "closed"
        if mode == "none" and retrieved:
            view.notes.append("this bridge was trained without reminders: the memories below are what shared.memory "
                              "retrieves, not part of the prompt (bridge.reminder=retrieved puts them in)")
        recorded = self.bridge.recorded_banks
        if recorded is not None:
            sizes = recorded["visual"][1][0]  # (slots, token positions)
            view.bank = bank_slots(sizes[:, 0].tolist())
            if sizes.shape[1] > 1 and not bool((sizes == sizes[:, :1]).all()):
                view.notes.append("token positions were compressed differently; the slots of position 0 are shown")
            view.query_bank_sizes = [int((q[0, :, 0] > 0).sum()) for q in recorded["query_sizes"]]
        return view
