"""`python -m services.train finetune-infer --config configs/train/finetune_infer_gemma3.yaml`: answers from an adapter.

Two modes:
- one example: `image=path/to.png conversation='Q: what color is it?\\nA: red\\nQ: and the shape?\\nA:'` prints
  `{"answer", "raw"}` as JSON (a literal `\\n` in the conversation is read as a line break);
- a split: every selected round of `data.dialogs` -> <outputs_root>/<run>/predictions.jsonl (shared.predictions),
  resumable.
The prompt is the training prompt (instruction + conversation, never the open round's answer); only the new
tokens are decoded (`raw`), and `answer` is `raw` without its `<reminder>`/`<reasoning>` blocks.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from services.train.finetune.config import (ADAPTER_DIR, TRAIN_CONFIG, FinetuneConfig,  # noqa: E402
                                           FinetuneInferConfig)
from services.train.finetune.records import FinetuneRecord, instruction_for, records_from_visdial  # noqa: E402
from shared.config import load_config, save_config, to_dict  # noqa: E402
from shared.reminder import strip_blocks  # noqa: E402
from shared.settings import refuse_old_layout  # noqa: E402

log = logging.getLogger("services.train.finetune.infer")
# Fields that only steer the run (not what is predicted): changing them keeps a predictions file resumable.
RUN_CONTROL = ("batch_size", "resume", "overwrite", "num_threads", "out", "device", "outputs_root")


class Predictor:
    """Base model + adapter + processor, generating greedily from (image, conversation) pairs."""

    def __init__(self, cfg: FinetuneInferConfig):
        import torch

        from services.train.finetune.model import load_adapter, load_base, resolve_device

        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if cfg.adapter is None:
            refuse_old_layout(cfg.run, cfg.run_dir)
        self.adapter_dir = None if cfg.adapter == "none" else Path(cfg.adapter or cfg.run_dir / ADAPTER_DIR)
        saved = self.adapter_dir / TRAIN_CONFIG if self.adapter_dir else None
        if saved is not None and not saved.is_file():
            raise FileNotFoundError(f"{saved}: missing; {self.adapter_dir} is not a finished finetune run; fix: train "
                                    "it with `python -m services.train finetune --config ...`, or set adapter=")
        self.train_cfg = load_config(FinetuneConfig, saved) if saved else FinetuneConfig()
        base = cfg.base_model or self.train_cfg.model.path
        self.device = resolve_device(cfg.device)
        dtype = self.train_cfg.model.dtype if cfg.dtype == "auto" else cfg.dtype
        if cfg.dtype == "auto" and self.device.type == "cpu":
            dtype = "float32"  # half precision on CPU is slow and gains nothing for inference
        four_bit = self.train_cfg.model.load_in_4bit if cfg.load_in_4bit is None else cfg.load_in_4bit
        model, processor = load_base(base, four_bit, dtype, self.device)
        self.model = load_adapter(model, self.adapter_dir) if self.adapter_dir else model
        self.model.eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"  # generation continues at the right edge of every row
        self.instruction = instruction_for(self.train_cfg.data.reminder, self.train_cfg.data.instruction)
        end_of_turn = self.tokenizer.convert_tokens_to_ids("<end_of_turn>")
        self.eos = [i for i in {self.tokenizer.eos_token_id, end_of_turn} if i is not None and i >= 0
                    and i != self.tokenizer.unk_token_id]
        self.identity = {"base": str(base), "adapter": str(self.adapter_dir), "train": to_dict(self.train_cfg)}

    def generate(self, records: list[FinetuneRecord], max_new_tokens: int, streamer=None) -> list[str]:
        """Greedy continuations of the prompts: the new tokens only, special tokens removed. `streamer` (one record):
        a transformers streamer that receives the tokens as they come (the chat's streamed answer)."""
        import torch

        from services.train.finetune.collate import load_image, prompt_text

        images = [load_image(r.image_path) for r in records]
        prompts = [prompt_text(self.processor, r, image, self.instruction) for r, image in zip(records, images)]
        inputs = self.processor(text=prompts, images=[[image] for image in images], padding=True,
                                return_tensors="pt", add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                      eos_token_id=self.eos, pad_token_id=self.tokenizer.pad_token_id,
                                      streamer=streamer)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]  # never decode the prompt back as the answer
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


def identity_hash(cfg: FinetuneInferConfig, predictor: Predictor) -> str:
    """Hash of what decides the predictions (the infer settings minus run control, the model and adapter)."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in RUN_CONTROL}
    blob = json.dumps({"infer": settings, **predictor.identity}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def predict_one(cfg: FinetuneInferConfig, predictor: Predictor) -> dict:
    conversation = cfg.conversation.replace("\\n", "\n")
    if not conversation.rstrip().endswith("A:"):
        conversation = conversation.rstrip() + "\nA:"  # the open question's answer slot
    record = FinetuneRecord(0, 1, Path(cfg.image), conversation, None)
    raw = predictor.generate([record], cfg.max_new_tokens)[0]
    return {"answer": strip_blocks(raw)[0], "raw": raw}


def predict_split(cfg: FinetuneInferConfig, predictor: Predictor) -> Path:
    from shared.predictions import PredictionWriter
    from shared.runlog import Progress

    trained = predictor.train_cfg.data
    records = records_from_visdial(cfg.data.dialogs, cfg.images, rounds=cfg.data.rounds, caption=trained.caption,
                                   with_response=False, limit_dialogs=cfg.data.limit_dialogs)
    out = Path(cfg.out) if cfg.out else cfg.run_dir / "predictions.jsonl"
    with PredictionWriter(out, identity_hash(cfg, predictor), resume=cfg.resume, overwrite=cfg.overwrite) as writer:
        save_config(cfg, out.parent, name="infer_config.yaml")  # only once the predictions file is known to fit
        done = writer.done_keys()
        todo = [r for r in records if (r.image_id, r.round_id) not in done]
        log.info("%d rounds to predict (%d already in %s)", len(todo), len(records) - len(todo), out)
        with Progress(len(todo), "finetune-infer") as progress:
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start:start + cfg.batch_size]
                raws = predictor.generate(batch, cfg.max_new_tokens)
                writer.write({"image_id": r.image_id, "round_id": r.round_id, "answer": strip_blocks(raw)[0],
                              "raw": raw} for r, raw in zip(batch, raws))
                progress.update(len(batch))
    return out


def run(cfg: FinetuneInferConfig) -> None:
    predictor = Predictor(cfg)
    if cfg.image is not None:
        print(json.dumps(predict_one(cfg, predictor), ensure_ascii=False))
    else:
        print(f"finetune-infer: wrote {predict_split(cfg, predictor)}")
