"""Real-size smoke run: training steps of a bridge config with a random-weight LLM of the same architecture.

Answers "does this config fit and how fast does it train on this GPU?" before the real weights and shards are in
place: the LLM is built from a LlamaConfig of Llama-3.2-1B's shape (random weights, saved once to a temp folder, then
loaded exactly as training loads it, e.g. nf4), the embeddings are random at the shards' real dims. Used by
tests/gpu and `bench/train.py --gpu`.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from shared.config import load_config

from services.train.bridge.runtime import autocast, build, trainable_parameters
from services.train.bridge.config import BridgeTrainConfig
from services.train.bridge.llm import answer_loss, set_llm_mode

LLAMA_32_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                   num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                   rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001,
                   rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192})


def random_llama(folder: Path, architecture: dict = LLAMA_32_1B) -> Path:
    """Save a random-weight LlamaForCausalLM (bf16) with a small byte-level tokenizer into `folder`."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["what color is the shape? it is red, green or blue."], vocab_size=300,
                            special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>")
    config = LlamaConfig(**{**architecture, "bos_token_id": tokenizer.bos_token_id,
                            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id})
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def real_size_steps(config_path: str, steps: int = 3, micro_batch: int = 8, dims: tuple[int, int] = (1024, 1024),
                    prompt_tokens: int = 24, answer_tokens: int = 8, workdir: str | None = None,
                    device: str = "cuda", architecture: dict = LLAMA_32_1B, overrides: tuple[str, ...] = ()) -> dict:
    """Train `steps` optimizer steps (after one warm-up) of the config's bridge; return speed and peak memory."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        llm_dir = random_llama(Path(tmp) / "llm", architecture)
        cfg = load_config(BridgeTrainConfig, config_path, [f"model.llm.path={llm_dir}", *overrides])
        bridge, llm, tokenizer = build(cfg.model, dims[0], dims[1], device, cfg.seed)
    params = trainable_parameters(bridge, llm)
    bridge.train()
    set_llm_mode(llm, training=True)  # as train.py runs them
    optimizer = torch.optim.AdamW(params.values(), lr=cfg.optim.lr)
    turns = cfg.model.max_turns
    g = torch.Generator(device="cpu").manual_seed(0)
    image, question = torch.randn(micro_batch, turns, dims[0], generator=g), torch.randn(micro_batch, turns, dims[1],
                                                                                          generator=g)
    turn = torch.arange(1, turns + 1).repeat(micro_batch, 1)
    picture = torch.ones_like(turn)  # one picture per dialog, as in VisDial
    prompts = [[(i * 7 + j) % 250 + 3 for j in range(prompt_tokens)] for i in range(micro_batch)]
    answers = [[(i * 5 + j) % 250 + 3 for j in range(answer_tokens)] + [tokenizer.eos_token_id]
               for i in range(micro_batch)]
    bos = [tokenizer.bos_token_id]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timings, loss = [], None
    for step in range(steps + 1):
        sync()
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            soft = bridge(image.to(device), question.to(device), turn.to(device), picture.to(device))
            loss = answer_loss(llm, soft, bos, prompts, answers, tokenizer.pad_token_id).mean()
        loss.backward()
        proj_grad = torch.cat([p.grad.reshape(-1) for p in bridge.llm_proj.parameters()]).float().norm()
        optimizer.step()
        sync()
        if step:  # the first step pays for kernel selection and allocator warm-up
            timings.append(time.perf_counter() - started)
    tokens = micro_batch * (len(bos) + cfg.model.qformer.num_query_tokens + prompt_tokens + answer_tokens + 1)
    seconds = sum(timings)
    return {"device": torch.cuda.get_device_name() if cuda else "cpu", "step_s": seconds / len(timings),
            "tokens_per_s": tokens * len(timings) / seconds, "samples_per_s": micro_batch * len(timings) / seconds,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
            "loss": float(loss.detach()), "llm_proj_grad_norm": float(proj_grad),
            "trainable_params": sum(p.numel() for p in params.values())}
