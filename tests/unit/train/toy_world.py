"""A tiny but complete bridge world for tests: VisDial-format dialogs, embedding shards and a tiny random LLM.

Image embeddings encode the colour and shape of the picture shown at each turn (one-hot + noise), question
embeddings encode what is asked, so a bridge can really learn the task in a few hundred steps; the LLM is a tiny
random LlamaForCausalLM with a byte-level BPE tokenizer trained on the dialog text.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.shards import build_index, shard_name, shard_range, write_shard

COLORS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
QUESTIONS = ("what color is the shape?", "what shape is it?", "what color was the first picture?")
IMAGE_DIM, TEXT_DIM = 12, 8


@dataclass
class ToyWorld:
    root: Path
    dialogs: Path
    embeddings: Path
    llm: Path

    def overrides(self, run: str = "toy") -> list[str]:
        """Config overrides that point a bridge job at this world with a tiny model."""
        return [f"run={run}", f"outputs_root={self.root / 'outputs'}",
                f"data.dialogs={self.dialogs}", f"data.embeddings={self.embeddings}", "data.encoder_id=toy",
                f"model.llm.path={self.llm}", "model.dim=16", "model.max_turns=6", "model.memory_bank_length=3",
                "model.qformer.num_query_tokens=4", "model.qformer.hidden_size=16", "model.qformer.num_hidden_layers=2",
                "model.qformer.num_attention_heads=2", "model.qformer.intermediate_size=32",
                "prompt.max_prompt_tokens=96",
                "optim.batch_size=4", "optim.micro_batch_size=4", "optim.warmup_steps=2", "optim.max_steps=6",
                "optim.lr=0.003", "save_every=2", "log_every=1", "num_threads=1"]


def _dialog_plan(rng: random.Random, index: int, rounds: int, unique: bool) -> list[dict]:
    """Rounds of one dialog: a second picture at round 3 and a memory question about picture 1 at the end."""
    pictures = [(rng.choice(COLORS), rng.choice(SHAPES)) for _ in range(2)]
    plan = []
    for r in range(1, rounds + 1):
        picture = 0 if r < 3 else 1
        kind = "memory" if r == rounds else "current"
        q = 2 if kind == "memory" else (r - 1) % 2
        color, shape = pictures[0] if kind == "memory" else pictures[picture]
        answer = color if q != 1 else shape
        if unique:
            answer = f"{answer} zq{index}x{r}"  # a string no other round uses
        plan.append({"picture": picture, "q": q, "answer": answer, "kind": kind, "attrs": pictures[picture]})
    return plan


def build(root: Path, num_dialogs: int = 12, rounds: int = 5, seed: int = 0, unique_answers: bool = False,
          with_llm: bool = True, split: str = "train") -> ToyWorld:
    root.mkdir(parents=True, exist_ok=True)
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    questions, answers = list(QUESTIONS), []
    dialogs_json, image_rows, round_images, question_rows = [], [], [], []
    for d in range(num_dialogs):
        plan = _dialog_plan(rng, d, rounds, unique_answers)
        image_ids = [1000 + 2 * d, 1001 + 2 * d]
        rounds_json, imgs, qs = [], [], []
        for r, step in enumerate(plan):
            for text in [step["answer"]]:
                if text not in answers:
                    answers.append(text)
            rounds_json.append({"question": step["q"], "answer": answers.index(step["answer"]),
                                "image_id": image_ids[step["picture"]], "kind": step["kind"]})
            if step["kind"] == "memory":
                rounds_json[-1]["evidence_round"] = 1
            color, shape = step["attrs"]
            vec = np.zeros(IMAGE_DIM, np.float32)
            vec[COLORS.index(color)] = 1
            vec[len(COLORS) + SHAPES.index(shape)] = 1
            imgs.append(vec + 0.05 * nrng.standard_normal(IMAGE_DIM))
            qv = np.zeros(TEXT_DIM, np.float32)
            qv[step["q"]] = 1
            qs.append(qv + 0.05 * nrng.standard_normal(TEXT_DIM))
        dialogs_json.append({"image_id": image_ids[0], "caption": "a shape", "dialog": rounds_json})
        image_rows.append(imgs[0])
        round_images.append(np.stack(imgs))
        question_rows.append(np.stack(qs))
    options = list(range(len(answers)))[:6] if not unique_answers else None
    for dialog in dialogs_json:
        for rnd in dialog["dialog"]:
            opts = sorted(set(range(min(5, len(answers)))) | {rnd["answer"]}) if options is None else \
                sorted(set(options[:5]) | {rnd["answer"]})
            opts = (opts + [o for o in range(len(answers)) if o not in opts])[:6]
            rnd["answer_options"], rnd["gt_index"] = opts, opts.index(rnd["answer"])
    doc = {"version": "1.0", "split": split,
           "data": {"num_options": 6, "questions": questions, "answers": answers, "dialogs": dialogs_json}}
    dialogs_path = root / f"{split}.json"
    dialogs_path.write_text(json.dumps(doc))
    emb_dir = root / "embeddings" / "toy" / split
    emb_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"image_ids": np.array([d["image_id"] for d in dialogs_json], np.int64),
               "num_rounds": np.full(num_dialogs, rounds, np.int64),
               "image": np.stack(image_rows).astype(np.float16),
               "round_image": np.stack(round_images).astype(np.float16),
               "question": np.stack(question_rows).astype(np.float16)}
    n = 2 if num_dialogs >= 2 else 1
    for i in range(n):
        a, b = shard_range(num_dialogs, i, n)
        meta = {"encoder_id": "toy", "checkpoint_sha256": "none", "image_dim": IMAGE_DIM, "text_dim": TEXT_DIM,
                "dtype": "float16", "preprocessing": {}, "code_version": "test", "split": split, "shard_index": i,
                "num_shards": n}
        write_shard(emb_dir / shard_name(i, n), {k: v[a:b] for k, v in tensors.items()}, meta)
    build_index(emb_dir)
    llm_dir = root / "llm"
    if with_llm and not (llm_dir / "config.json").exists():
        corpus = questions + answers + [" ".join(answers)] * 3
        save_tiny_llm(llm_dir, corpus)
    return ToyWorld(root, dialogs_path, emb_dir, llm_dir)


def save_tiny_llm(folder: Path, corpus: list[str], hidden: int = 32, layers: int = 2) -> None:
    """A byte-level BPE tokenizer trained on `corpus` and a random tiny LlamaForCausalLM, saved like a real model."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus + ["<reminder> </reminder> [turn 1] Q: A: picture"], vocab_size=400,
                            min_frequency=1, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
