"""What training and inference share: device choice, building LLM + bridge, and the saved weight set."""
from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path

import numpy as np
import torch

from services.train.bridge.model import Bridge
from shared.settings import torch_device
from services.train.bridge.config import BridgeModelSettings
from services.train.bridge.llm import load_llm

log = logging.getLogger(__name__)


def pick_device(choice: str) -> torch.device:
    return torch_device(choice)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on CPU (training and inference run the model the same way)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def embedded_turns(model_cfg: BridgeModelSettings) -> int | None:
    """Turns per sample to embed: memory off sees only the open turn (1); None = every turn up to it."""
    return 1 if model_cfg.memory_bank_length == 0 else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build(model_cfg: BridgeModelSettings, image_dim: int, text_dim: int, device: torch.device, seed: int
          ) -> tuple[Bridge, torch.nn.Module, object]:
    """LLM (frozen, LoRA optional) + bridge (seeded init, fp32) on `device`."""
    llm, tokenizer = load_llm(model_cfg.llm, device)
    torch.manual_seed(seed)  # the bridge's initial weights depend on the seed only
    embeddings = llm.get_input_embeddings().weight
    embed_std = float(embeddings.float().std()) if embeddings.dtype.is_floating_point else None
    bridge = Bridge(model_cfg, image_dim, text_dim, embeddings.shape[1], embed_std).to(device)
    groups = bridge.set_trainable(model_cfg.trainable)
    if model_cfg.qformer.checkpoint:
        log.info("Q-Former loaded: %s", bridge.qformer_report)
    log.info("trainable: %s%s", groups, " + LoRA" if model_cfg.llm.lora.enabled else "")
    return bridge, llm, tokenizer


def trainable_parameters(bridge: Bridge, llm: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    params = {f"bridge.{n}": p for n, p in bridge.named_parameters() if p.requires_grad}
    params.update({f"llm.{n}": p for n, p in llm.named_parameters() if p.requires_grad})
    return params


def saved_weights(bridge: Bridge, llm: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a checkpoint must hold to rebuild the model: every bridge weight (a pretrained frozen Q-Former is
    reloaded from its own checkpoint instead) and the LoRA adapters."""
    frozen_pretrained = bridge.qformer_pretrained and not any(p.requires_grad for p in bridge.qformer.parameters())
    out = {f"bridge.{n}": p.detach() for n, p in bridge.named_parameters()
           if not (frozen_pretrained and n.startswith("qformer."))}
    out.update({f"llm.{n}": p.detach() for n, p in llm.named_parameters() if p.requires_grad or "lora_" in n})
    return out


def load_saved_weights(bridge: Bridge, llm: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Copy saved weights in place; every saved key must exist and every expected key must be saved."""
    targets = {f"bridge.{n}": p for n, p in bridge.named_parameters()}
    targets.update({f"llm.{n}": p for n, p in llm.named_parameters()})
    expected = set(saved_weights(bridge, llm))
    unknown, missing = sorted(set(weights) - set(targets)), sorted(expected - set(weights))
    if unknown or missing:
        raise KeyError(f"{source}: weights do not fit this model (unknown {unknown[:4]}, missing {missing[:4]}); "
                       "the model settings differ from the ones it was trained with")
    with torch.no_grad():
        for name, value in weights.items():
            if targets[name].shape != value.shape:
                raise ValueError(f"{source}: {name} has shape {tuple(value.shape)}, the model expects "
                                 f"{tuple(targets[name].shape)}")
            targets[name].copy_(value.to(targets[name].dtype))
