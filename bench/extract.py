"""Extraction benchmarks: `python bench/extract.py [--dialogs 50] [--repeats 3]` (extract venv, repo root).

(a) shard_load_speedup: load every image + question embedding of the demo train split for training, from the
    memory-mapped shards (ShardSet, then every row materialised) vs the original project's layout (one torch.save file per
    image and per question, loaded with torch.load(weights_only=True)). Both sides build the same arrays.
(b) extract_pipeline_speedup: cpu_default on the same dialogs, the pipeline (DataLoader workers + batching + text
    dedup) vs a per-item loop (decode, preprocess, embed one image / one string at a time). Model loading excluded.
(c) on CUDA only: ImageBind-Huge (real architecture, random weights) images/s and texts/s at batch 128 in bf16.
Ends with one `<figure>: <number>` line per figure.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from services.extract import pipeline  # noqa: E402
from services.extract.config import ExtractConfig  # noqa: E402
from services.extract.dataset import load_rgb  # noqa: E402
from shared.config import load_config  # noqa: E402
from shared.shards import ShardSet  # noqa: E402
from bench.inputs import DEMO, DEMO_EMBEDDINGS, require  # noqa: E402



def demo_dir(tmp: Path) -> Path:
    """The demo data (make data-demo)."""
    return require(DEMO / "train.json", "data-demo").parent


def demo_config(json_dir: Path, image_dir: Path, out_root: Path, threads: int = 2) -> ExtractConfig:
    return load_config(ExtractConfig, REPO / "configs/extract/cpu_default.yaml",
                       ["split=train", f"data.dataset={json_dir}/{{split}}.json", f"data.image_root={image_dir}",
                        f"out_root={out_root}", "progress=none", f"num_threads={threads}"])


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---------------------------------------------------------------- (a) loading for training
def demo_shards() -> Path:
    """The demo train split's cpu_default shards (make extract-demo)."""
    return require(DEMO_EMBEDDINGS / "train" / "index.json", "extract-demo").parent


def bench_shard_load(demo: Path, tmp: Path, repeats: int) -> float:
    shard_dir = demo_shards()
    shards = ShardSet(shard_dir)
    n = len(shards)
    image, question = shards.get("image", np.arange(n)), shards.get("question", np.arange(n))
    num_rounds = shards.get("num_rounds", np.arange(n))
    ids = shards.image_ids
    seed = tmp / "seed_layout"  # the original project's layout: <image_id>.pt and <image_id>_<round>.pt, one tensor each
    seed.mkdir()
    for k, image_id in enumerate(ids.tolist()):
        torch.save(torch.from_numpy(image[k].copy()), seed / f"{image_id}.pt")
        for r in range(num_rounds[k]):
            torch.save(torch.from_numpy(question[k, r].copy()), seed / f"{image_id}_{r}.pt")
    files = n + int(num_rounds.sum())
    rounds = question.shape[1]

    def load_seed():
        img = np.zeros_like(image)
        q = np.zeros_like(question)
        for k, image_id in enumerate(ids.tolist()):
            img[k] = torch.load(seed / f"{image_id}.pt", weights_only=True).numpy()
            for r in range(num_rounds[k]):
                q[k, r] = torch.load(seed / f"{image_id}_{r}.pt", weights_only=True).numpy()
        return img, q

    def load_shards():
        s = ShardSet(shard_dir)
        rows = np.arange(len(s))
        return s.get("image", rows), s.get("question", rows)

    a, b = load_seed(), load_shards()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), "both layouts must give the same arrays"
    t_seed, t_shard = best_of(repeats, load_seed), best_of(repeats, load_shards)
    print(f"(a) {n} dialogs x {rounds} rounds: seed layout {files} torch.save files {t_seed:.3f} s, "
          f"shards {t_shard * 1000:.1f} ms")
    return t_seed / t_shard


def bench_verification(tmp: Path, repeats: int) -> tuple[float, float]:
    """What hashing every shard once costs a reader: (first open, hashing, / unverified open; later opens, reading
    the recorded result, / unverified open), each open followed by gathering every row, as training does."""
    shard_dir = tmp / "verify"
    shutil.copytree(demo_shards(), shard_dir, ignore=shutil.ignore_patterns("*.verified.json"))

    def read(verify: str) -> float:
        started = time.perf_counter()
        s = ShardSet(shard_dir, verify=verify)
        rows = np.arange(len(s))
        s.get("image", rows), s.get("question", rows)
        return time.perf_counter() - started

    plain = min(read("never") for _ in range(repeats))
    first = read("once")  # hashes every shard and records it
    later = min(read("once") for _ in range(repeats))
    print(f"(a2) read without hashing {plain * 1000:.1f} ms, first read (hashing) {first * 1000:.1f} ms, "
          f"later reads {later * 1000:.1f} ms")
    return first / plain, later / plain


# ---------------------------------------------------------------- (b) extraction throughput
def bench_pipeline(demo: Path, tmp: Path, dialogs: int, threads: int) -> float:
    data = json.loads((demo / "train.json").read_text())
    data["data"]["dialogs"] = data["data"]["dialogs"][:dialogs]
    sub = tmp / "subset"
    sub.mkdir()
    (sub / "train.json").write_text(json.dumps(data))
    job = pipeline.SplitJob(demo_config(sub, demo / "images", tmp / "emb_bench", threads))
    enc = job.encoder  # built once, outside both timings; sets torch's thread count for both sides
    items = job.image_items(list(job.data.dialogs))
    texts = [t for d in job.data.dialogs for r in d.rounds for t in (r.question, r.answer)]
    texts += [d.caption for d in job.data.dialogs]

    def per_item():
        image_vectors = [enc.embed_images(enc.preprocess(load_rgb(item.path))[None]) for item in items]
        text_vectors = [enc.embed_texts([t]) for t in texts]
        return image_vectors, text_vectors

    enc.embed_images(enc.preprocess(load_rgb(items[0].path))[None])  # warm-up for both sides
    start = time.perf_counter()
    per_item()
    t_loop = time.perf_counter() - start
    start = time.perf_counter()
    stats = job.run_shard(0)
    t_pipe = time.perf_counter() - start
    print(f"(b) {torch.get_num_threads()} torch thread(s), {dialogs} dialogs = {len(items)} images + {len(texts)} "
          f"strings ({stats.texts} distinct): "
          f"per-item loop {t_loop:.1f} s ({(len(items) + len(texts)) / t_loop:.1f} items/s), pipeline {t_pipe:.1f} s "
          f"({(len(items) + len(texts)) / t_pipe:.1f} items/s)")
    return t_loop / t_pipe


# ---------------------------------------------------------------- (c) GPU
def bench_imagebind(device: str = "cuda", architecture: dict | None = None, batch: int = 128,
                    steps: int = 10) -> dict[str, float]:
    """Images/s and texts/s of ImageBind's vision and text towers in bf16 autocast (random weights).

    `architecture` overrides the Huge dims (a tiny one smoke-tests this function on a CPU).
    """
    import importlib.resources

    from imagebind.models.multimodal_preprocessors import SimpleTokenizer

    from services.extract.imagebind import build_model

    model = build_model(architecture or {}).eval().to(device)  # real ImageBind-Huge vision + text by default
    tokenizer = SimpleTokenizer(str(importlib.resources.files("imagebind") / "bpe/bpe_simple_vocab_16e6.txt.gz"))
    words = ["dog", "cat", "car", "tree"]
    inputs = {"vision": torch.randn(batch, 3, 224, 224, device=device),
              "text": tokenizer([f"is there a {words[i % 4]} in picture {i}?" for i in range(batch)]).to(device)}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    figures = {}
    for modality, x in inputs.items():
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16):
            for _ in range(2):  # warm-up: kernels chosen, memory allocated
                model({modality: x})
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                model({modality: x})
            sync()
        figures[modality] = batch * steps / (time.perf_counter() - start)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"(c) {name}: ImageBind bf16 batch {batch}: {figures['vision']:.1f} images/s, {figures['text']:.1f} texts/s")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogs", type=int, default=50, help="demo train dialogs for the throughput bench")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the load bench (best is kept)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides of (b); 1 by default: on a busy CPU, threads waiting on "
                             "each other slow the per-item loop's tiny calls ~15x and would flatter the pipeline")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        demo = demo_dir(tmp)
        load = bench_shard_load(demo, tmp, args.repeats)
        first_read, later_read = bench_verification(tmp, args.repeats)
        pipe = bench_pipeline(demo, tmp, args.dialogs, args.threads)
    gpu = bench_imagebind() if torch.cuda.is_available() else None
    if gpu is None:
        print("(c) skipped: no CUDA device")
    print(f"shard_load_speedup: {load:.1f}")
    print(f"shard_first_read_cost: {first_read:.2f}")
    print(f"shard_verified_read_cost: {later_read:.2f}")
    print(f"extract_pipeline_speedup: {pipe:.1f}")
    if gpu is not None:
        print(f"imagebind_huge_images_per_s: {gpu['vision']:.1f}")
        print(f"imagebind_huge_texts_per_s: {gpu['text']:.1f}")


if __name__ == "__main__":
    main()
