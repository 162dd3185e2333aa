"""bench/gpu_check.py parts of the bridge and of extraction: real-size bridge steps, ImageBind-Huge bf16 vs fp32 and
throughput, the tiny extraction pipeline on CPU and on the device. Random weights throughout (no hub, no checkpoint).
"""
from __future__ import annotations

import sys
import time

import torch

from gpu_check import REPO, Ctx

# Dry run: the bridge config's own code at a few-thousandths of its size (bitsandbytes' CPU 4-bit wants widths of 64k)
TINY_LLAMA = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=1024, tie_word_embeddings=True)
TINY_BRIDGE = ("model.dim=64", "model.qformer.num_query_tokens=8", "model.qformer.hidden_size=64",
               "model.qformer.num_hidden_layers=2", "model.qformer.num_attention_heads=2",
               "model.qformer.intermediate_size=128", "model.llm.dtype=float32")
TINY_IMAGEBIND = {"vision_embed_dim": 64, "vision_num_blocks": 2, "vision_num_heads": 2,
                  "text_embed_dim": 64, "text_num_blocks": 2, "text_num_heads": 2, "out_embed_dim": 32}


def part_bridge(ctx: Ctx) -> dict:
    import bitsandbytes as bnb

    from services.train.bridge import smoke

    built = {}
    original = smoke.build

    def spy(*args, **kwargs):  # keep the LLM: was it really loaded 4-bit?
        built["parts"] = original(*args, **kwargs)
        return built["parts"]

    smoke.build = spy
    dry = dict(steps=2, micro_batch=4, dims=(64, 64), device="cpu", architecture=TINY_LLAMA, overrides=TINY_BRIDGE)
    real = dict(steps=3, micro_batch=32, dims=(1024, 1024), device="cuda")  # ImageBind-Huge's 1024 + 1024
    figures = smoke.real_size_steps(str(REPO / "configs/train/bridge_llama32_1b.yaml"), workdir=str(ctx.work),
                                    **(dry if ctx.dry else real))
    _, llm, _ = built["parts"]
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in llm.modules()), "the LLM is not 4-bit"
    assert torch.isfinite(torch.tensor(figures["loss"])), figures
    grad = figures["llm_proj_grad_norm"]
    assert torch.isfinite(torch.tensor(grad)) and grad > 0, f"llm_proj gradient {grad}"
    print(figures)
    keep = ("step_s", "samples_per_s", "tokens_per_s", "peak_mem_gib", "loss", "llm_proj_grad_norm")
    return {k: float(figures[k]) for k in keep if not (ctx.dry and k == "peak_mem_gib")}


def _timed(fn, repeats: int, cuda: bool) -> float:
    fn()  # warm-up: kernel selection, allocator
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def part_imagebind(ctx: Ctx) -> dict:
    """bf16 autocast (what extraction runs on CUDA) against fp32, per row; throughput in bf16."""
    import importlib.resources

    from services.extract.encoders import l2_normalise
    from services.extract.imagebind import build_model, imagebind_module

    device = torch.device(ctx.device)
    cuda = device.type == "cuda"
    images, texts = (8, 16) if ctx.dry else (128, 512)
    torch.manual_seed(0)
    with device:  # built where it runs: ImageBind-Huge's 1.2 B parameters initialise in seconds on a GPU
        model = build_model(TINY_IMAGEBIND if ctx.dry else {}).eval()
    bpe = importlib.resources.files("imagebind") / "bpe" / "bpe_simple_vocab_16e6.txt.gz"
    tokenizer = imagebind_module("imagebind.models.multimodal_preprocessors").SimpleTokenizer(bpe_path=str(bpe))
    words = "what color is the shape in the first picture is it red green blue a big small round square".split()
    sentences = [" ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i % 9)) for i in range(texts)]
    inputs = {"vision": torch.randn(images, 3, 224, 224, device=device), "text": tokenizer(sentences).to(device)}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    figures = {}
    for modality, x in inputs.items():
        def run(bf16: bool, modality=modality, x=x) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return l2_normalise(model({modality: x})[modality].float())

        cosine = (run(False) * run(True)).sum(-1)
        figures[f"{modality}_cosine_min"] = float(cosine.min())
        seconds = _timed(lambda: run(True), 1 if ctx.dry else 3, cuda)
        figures["img_per_s" if modality == "vision" else "texts_per_s"] = len(x) / seconds
    if cuda:
        figures["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(f"ImageBind {'tiny' if ctx.dry else 'Huge'}: {images} images, {texts} texts: {figures}")
    for modality in inputs:
        assert figures[f"{modality}_cosine_min"] >= 0.999, f"{modality}: bf16 vs fp32 cosine {figures}"
    return figures


def part_extract(ctx: Ctx) -> dict:
    """The tiny extraction pipeline on CPU and on the device: the same embeddings (bf16 autocast on CUDA)."""
    import numpy as np

    sys.path.insert(0, str(REPO / "tests/unit/extract"))
    from extract_helpers import TINY_ARCH, make_split, tiny_config

    from services.extract import pipeline
    from services.extract.imagebind import build_model
    from shared.shards import ShardSet

    torch.manual_seed(0)
    checkpoint = ctx.work / "imagebind_tiny.pth"
    torch.save(build_model(TINY_ARCH).state_dict(), checkpoint)
    make_split(ctx.work / "data", "train", dialogs=6, rounds=3, per_round_images=True)
    sets = {}
    for device in ("cpu", ctx.device):
        out = ctx.work / f"emb_{device}_{len(sets)}"
        cfg = tiny_config(ctx.work, checkpoint, split="train", device=device, num_workers=2, out_root=out)
        pipeline.extract(cfg)
        sets[len(sets)] = ShardSet(cfg.out_dir, verify=True)
    worst = 1.0
    for name in ("image", "question", "round_image"):
        a, b = (sets[i].get(name, np.arange(6)).astype(np.float32).reshape(-1, TINY_ARCH["out_embed_dim"])
                for i in (0, 1))
        live = np.abs(a).sum(1) > 0
        cosine = (a[live] * b[live]).sum(1) / (np.linalg.norm(a[live], axis=1) * np.linalg.norm(b[live], axis=1))
        worst = min(worst, float(cosine.min()))
    print(f"tiny extraction, cpu vs {ctx.device}: min cosine {worst:.5f}")
    assert worst >= 0.99, f"CPU and {ctx.device} embeddings differ (min cosine {worst})"
    return {"cpu_vs_device_cosine_min": worst}
