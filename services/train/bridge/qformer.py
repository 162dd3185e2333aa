"""The bridge's Q-Former: transformers' BLIP-2 Q-Former with MA-LMM's query memory bank in its self-attention.

LAVIS (MA-LMM's codebase) cannot share an environment with current LLMs (README, "Design decisions"), so the Q-Former is
transformers' maintained `Blip2QFormerModel`, optionally initialised from a BLIP-2 / InstructBLIP checkpoint folder.
The query memory bank is added by switching each layer's self-attention module to `MemorySelfAttention`, a subclass
that keeps the same parameters (checkpoint keys are unchanged) and, when a memory is set, attends over
[past query states ; current query states] like MA-LMM's `BertSelfAttention` with `memory_bank`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel
from transformers.models.blip_2.modeling_blip_2 import Blip2QFormerMultiHeadAttention

from services.train.bridge.config import QFormerSettings


class MemorySelfAttention(Blip2QFormerMultiHeadAttention):
    """Q-Former self-attention with optional extra keys/values from a query memory bank.

    Set `memory` (B, M, H) and `memory_mask` (B, M) bool before a forward to attend over the memory as well;
    `recorded` holds this layer's input hidden states of the last forward (what MA-LMM stores in the bank).
    """

    memory: torch.Tensor | None = None
    memory_mask: torch.Tensor | None = None
    recorded: torch.Tensor | None = None

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                **kwargs):
        self.recorded = hidden_states
        if self.memory is None:
            return super().forward(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                                   **kwargs)
        batch, length, _ = hidden_states.shape
        states = torch.cat([self.memory.to(hidden_states.dtype), hidden_states], dim=1)

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, x.shape[1], self.num_attention_heads, self.attention_head_size).transpose(1, 2)

        query, key, value = heads(self.query(hidden_states)), heads(self.key(states)), heads(self.value(states))
        keep = torch.cat([self.memory_mask, self.memory_mask.new_ones(batch, length)], dim=1)
        out = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=keep[:, None, None, :],
            dropout_p=self.attention_dropout if self.training else 0.0, scale=self.scaling)
        return out.transpose(1, 2).reshape(batch, length, self.all_head_size), None


def self_attentions(qformer: Blip2QFormerModel) -> list[MemorySelfAttention]:
    return [layer.attention.attention for layer in qformer.encoder.layer]


def _enable_query_memory(qformer: Blip2QFormerModel) -> None:
    for module in self_attentions(qformer):
        module.__class__ = MemorySelfAttention


def _config_from_settings(cfg: QFormerSettings, encoder_dim: int) -> Blip2QFormerConfig:
    return Blip2QFormerConfig(
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
        cross_attention_frequency=cfg.cross_attention_frequency, encoder_hidden_size=encoder_dim,
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout, use_qformer_text_input=False)


def _checkpoint_tensors(folder: Path, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Read only the tensors under `prefixes` from a (possibly sharded) safetensors checkpoint."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors files; model.qformer.checkpoint must be a BLIP-2 or "
                                "InstructBLIP folder saved by transformers (config.json + safetensors)")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key.startswith(prefixes):
                    tensors[key] = f.get_tensor(key)
    return tensors


def load_pretrained(cfg: QFormerSettings, encoder_dim: int) -> tuple[Blip2QFormerModel, torch.Tensor, dict]:
    """Q-Former + query tokens from a BLIP-2/InstructBLIP folder; returns (qformer, query_tokens, key report).

    Raises when a weight the Q-Former needs is missing or the checkpoint's encoder width differs from the bridge's.
    """
    folder = Path(cfg.checkpoint)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: missing; model.qformer.checkpoint must be a BLIP-2/InstructBLIP "
                                "folder")
    top = json.loads(config_path.read_text())
    if "qformer_config" not in top:
        raise ValueError(f"{config_path}: no qformer_config (model_type {top.get('model_type')!r}); "
                         "point model.qformer.checkpoint at a BLIP-2 or InstructBLIP checkpoint")
    q_dict = {k: v for k, v in top["qformer_config"].items() if k in Blip2QFormerConfig().to_dict()}
    q_dict.update(use_qformer_text_input=False, hidden_dropout_prob=cfg.dropout,
                  attention_probs_dropout_prob=cfg.dropout)
    q_config = Blip2QFormerConfig(**q_dict)
    if q_config.encoder_hidden_size != encoder_dim:
        raise ValueError(f"{config_path}: the Q-Former cross-attends to {q_config.encoder_hidden_size}-d features but "
                         f"the bridge tokens are {encoder_dim}-d; set model.dim={q_config.encoder_hidden_size}")
    qformer = Blip2QFormerModel(q_config)
    tensors = _checkpoint_tensors(folder, ("qformer.", "query_tokens"))
    if "query_tokens" not in tensors:
        raise KeyError(f"{folder}: no `query_tokens` tensor; not a BLIP-2/InstructBLIP checkpoint")
    state = {k[len("qformer."):]: v for k, v in tensors.items() if k.startswith("qformer.")}
    for part in ("weight", "bias"):  # InstructBLIP keeps the query LayerNorm inside its text embeddings module
        if f"layernorm.{part}" not in state and f"embeddings.layernorm.{part}" in state:
            state[f"layernorm.{part}"] = state.pop(f"embeddings.layernorm.{part}")
    expected = qformer.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))  # e.g. InstructBLIP's text embeddings, unused here
    if missing:
        raise KeyError(f"{folder}: the checkpoint lacks {len(missing)} Q-Former weights, e.g. {missing[:4]}")
    bad_shapes = [k for k in expected if state[k].shape != expected[k].shape]
    if bad_shapes:
        raise ValueError(f"{folder}: shape mismatch for {bad_shapes[:4]}")
    qformer.load_state_dict({k: state[k] for k in expected}, strict=True)
    query_tokens = tensors["query_tokens"].float()
    report = {"checkpoint": str(folder), "loaded": len(expected), "unexpected": unexpected,
              "num_query_tokens": int(query_tokens.shape[1]), "hidden_size": q_config.hidden_size}
    return qformer, query_tokens, report


def build_qformer(cfg: QFormerSettings, encoder_dim: int, query_memory: bool
                  ) -> tuple[Blip2QFormerModel, nn.Parameter, dict]:
    """Scratch or pretrained Q-Former (fp32), its learned queries, and a report of what was loaded."""
    if cfg.checkpoint:
        qformer, tokens, report = load_pretrained(cfg, encoder_dim)
    else:
        qformer = Blip2QFormerModel(_config_from_settings(cfg, encoder_dim))
        tokens = torch.randn(1, cfg.num_query_tokens, cfg.hidden_size) * qformer.config.initializer_range
        report = {"checkpoint": None, "loaded": 0}
    if query_memory:
        _enable_query_memory(qformer)
    return qformer, nn.Parameter(tokens.float()), report
