"""MA-LMM memory bank compression (He et al., CVPR 2024), vectorised over batch and token positions.

A memory bank holds T temporally ordered slots of N tokens each; `sizes[b, t, n]` counts how many original entries
slot t already averages at token position n. When a bank grows past its length, `compress` removes one slot: for every
(batch row, token position) it takes the cosine similarity of each temporally adjacent pair (t, t+1), picks the most
similar pair and replaces it by the size-weighted mean, the sizes adding up. Different token positions may merge
different pairs, exactly as in MA-LMM.

Slots with size 0 are empty padding (rows of a batch whose dialog started later); a pair touching an empty slot counts
as most similar, so padding is absorbed first and real memories are untouched until the bank is really full. The
weighted mean of an empty and a real slot is the real slot, so this changes nothing for full banks.
"""
from __future__ import annotations

import torch


def compress(bank: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the most similar temporally adjacent pair of slots, per batch row and token position.

    Args:
        bank: (B, T, N, C) memory slots, T >= 2.
        sizes: (B, T, N) number of originals each slot holds (0 = empty padding).

    Returns:
        (bank, sizes) with shapes (B, T-1, N, C) and (B, T-1, N).
    """
    if bank.dim() != 4 or sizes.shape != bank.shape[:3]:
        raise ValueError(f"compress wants bank (B,T,N,C) and sizes (B,T,N); got {tuple(bank.shape)} and "
                         f"{tuple(sizes.shape)}")
    batch, slots, tokens, _ = bank.shape
    if slots < 2:
        raise ValueError(f"compress needs at least 2 slots to merge, got {slots}")
    left, right = bank[:, :-1], bank[:, 1:]
    similarity = torch.nn.functional.cosine_similarity(left, right, dim=-1)  # (B, T-1, N)
    touches_empty = (sizes[:, :-1] == 0) | (sizes[:, 1:] == 0)
    similarity = similarity.masked_fill(touches_empty, float("inf"))
    pair = similarity.argmax(dim=1)  # (B, N): merge slots pair and pair+1

    index = pair.unsqueeze(1)  # (B, 1, N)
    size_left = sizes.gather(1, index).to(bank.dtype)
    size_right = sizes.gather(1, index + 1).to(bank.dtype)
    vec_index = index.unsqueeze(-1).expand(batch, 1, tokens, bank.shape[-1])
    vec_left, vec_right = bank.gather(1, vec_index), bank.gather(1, vec_index + 1)
    total = size_left + size_right
    weights = torch.where(total > 0, total, torch.ones_like(total)).unsqueeze(-1)
    merged = (vec_left * size_left.unsqueeze(-1) + vec_right * size_right.unsqueeze(-1)) / weights

    # slot j of the result comes from slot j (j < pair), the merged pair (j == pair) or slot j+1 (j > pair)
    position = torch.arange(slots - 1, device=bank.device).view(1, -1, 1)  # (1, T-1, 1)
    source = position + (position > index).long()  # (B, T-1, N)
    kept = bank.gather(1, source.unsqueeze(-1).expand(batch, slots - 1, tokens, bank.shape[-1]))
    kept_sizes = sizes.gather(1, source)
    is_merged = position == index
    new_bank = torch.where(is_merged.unsqueeze(-1), merged, kept)
    new_sizes = torch.where(is_merged, (size_left + size_right).to(sizes.dtype), kept_sizes)
    return new_bank, new_sizes


def push(bank: torch.Tensor, sizes: torch.Tensor, entry: torch.Tensor, entry_sizes: torch.Tensor,
         length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Append one slot (B, N, C) with its sizes (B, N) and compress until at most `length` slots remain."""
    bank = torch.cat([bank, entry.unsqueeze(1)], dim=1)
    sizes = torch.cat([sizes, entry_sizes.unsqueeze(1)], dim=1)
    while bank.shape[1] > length:
        bank, sizes = compress(bank, sizes)
    return bank, sizes


def empty(batch: int, length: int, tokens: int, dim: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A bank of `length` empty slots (zeros, size 0) with the dtype/device of `like`."""
    bank = like.new_zeros(batch, length, tokens, dim)
    sizes = torch.zeros(batch, length, tokens, dtype=torch.long, device=like.device)
    return bank, sizes
