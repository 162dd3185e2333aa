"""Answer ranking and greedy answers from one shared prefix forward per round.

The prefix [bos ; soft tokens ; prompt] of a round is encoded ONCE; its key/value cache is then gathered for every
(round, option) row and only the option tokens are run, so ranking 100 options costs one prefix plus 100 short
continuations instead of 100 full sequences. An option's score is the sum of its tokens' log-probabilities given the
prefix (the first from the prefix's last logits). Greedy generation continues from the same cache and returns only
new tokens: the prompt is never decoded as the answer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from services.train.bridge.llm import decoder_and_head


@dataclass
class Prefix:
    """The encoded prefixes of a batch of rounds (left-padded, so every row's last token is at the end)."""

    cache: DynamicCache
    mask: torch.Tensor  # (B, P)
    lengths: torch.Tensor  # (B,) real tokens per row (the next position id)
    last_logprobs: torch.Tensor  # (B, V) log-probs of the token after the prefix


@torch.no_grad()
def encode_prefix(llm, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> Prefix:
    decoder, head = decoder_and_head(llm)
    cache = DynamicCache()
    hidden = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                     use_cache=True)[0]
    last = head(hidden[:, -1]).float().log_softmax(-1)
    return Prefix(cache, mask, mask.sum(1), last)


def _select(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    """A new cache holding rows `index` of `cache` (the original stays untouched)."""
    return DynamicCache([(keys[index], values[index]) for keys, values, *_ in cache])


def _equal_length_chunks(flat: list, limit: int):
    """Consecutive runs of equally long options (flat is sorted by length), at most `limit` rows each."""
    start = 0
    while start < len(flat):
        stop = start + 1
        while stop < len(flat) and stop - start < limit and len(flat[stop][2]) == len(flat[start][2]):
            stop += 1
        yield flat[start:stop]
        start = stop


@torch.no_grad()
def score_options(llm, prefix: Prefix, options: list[list[list[int]]], rows_per_forward: int = 256
                  ) -> list[list[float]]:
    """Summed log-prob of every option's tokens given its round's prefix; `options[b][k]` = token ids of option k.

    Rows are grouped by option length so no forward computes padding, and the vocabulary head runs only on
    positions that predict a real option token.
    """
    decoder, head = decoder_and_head(llm)
    embed = llm.get_input_embeddings()
    device = prefix.mask.device
    flat = sorted(((b, k, ids) for b, row in enumerate(options) for k, ids in enumerate(row)),
                  key=lambda item: len(item[2]))
    scores = [[0.0] * len(row) for row in options]
    for chunk in _equal_length_chunks(flat, rows_per_forward):
        rows = torch.tensor([b for b, _, _ in chunk], device=device)
        first = torch.tensor([ids[0] for _, _, ids in chunk], device=device)
        total = prefix.last_logprobs[rows, first]
        width = len(chunk[-1][2]) - 1  # the longest option of the (sorted) chunk
        if width > 0:  # options longer than one token: run the tokens after the first
            ids = torch.zeros(len(chunk), width + 1, dtype=torch.long, device=device)
            keep = torch.zeros(len(chunk), width + 1, dtype=torch.bool, device=device)
            for i, (_, _, tokens) in enumerate(chunk):
                ids[i, : len(tokens)] = torch.tensor(tokens, device=device)
                keep[i, : len(tokens)] = True
            inputs = ids[:, :-1]  # token j predicts token j+1
            mask = torch.cat([prefix.mask[rows], keep[:, :-1].long()], dim=1)
            positions = prefix.lengths[rows, None] + torch.arange(width, device=device)
            hidden = decoder(inputs_embeds=embed(inputs), attention_mask=mask, position_ids=positions,
                             past_key_values=_select(prefix.cache, rows), use_cache=True)[0]
            wanted = keep[:, 1:]  # positions whose next token is a real option token
            logprobs = head(hidden[wanted]).float().log_softmax(-1)
            picked = logprobs.gather(-1, ids[:, 1:][wanted][:, None]).squeeze(-1)
            row_of = torch.arange(len(chunk), device=device)[:, None].expand_as(wanted)[wanted]
            total = total.index_add(0, row_of, picked)
        for (b, k, _), value in zip(chunk, total.tolist()):
            scores[b][k] = value
    return scores


@torch.no_grad()
def greedy(llm, prefix: Prefix, max_new_tokens: int, eos_id: int,
           on_step: Callable[[list[list[int]]], None] | None = None) -> list[list[int]]:
    """Greedy continuation of every prefix (new tokens only, without the end token); `on_step` sees the tokens so
    far after every step (the chat streams the answer from it)."""
    decoder, head = decoder_and_head(llm)
    embed = llm.get_input_embeddings()
    batch = prefix.mask.shape[0]
    rows = torch.arange(batch, device=prefix.mask.device)
    cache = _select(prefix.cache, rows)
    mask, positions = prefix.mask, prefix.lengths.clone()
    token = prefix.last_logprobs.argmax(-1)
    out: list[list[int]] = [[] for _ in range(batch)]
    finished = torch.zeros(batch, dtype=torch.bool, device=mask.device)
    for step in range(max_new_tokens):
        finished |= token == eos_id
        for b in torch.nonzero(~finished).flatten().tolist():
            out[b].append(int(token[b]))
        if on_step is not None:
            on_step(out)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=mask.device)], dim=1)
        hidden = decoder(inputs_embeds=embed(token[:, None]), attention_mask=mask, position_ids=positions[:, None],
                         past_key_values=cache, use_cache=True)[0]
        positions = positions + 1
        token = head(hidden[:, -1]).float().argmax(-1)
    return out


@torch.no_grad()
def score_options_full(llm, embeds: torch.Tensor, mask: torch.Tensor, options: list[list[int]]) -> list[float]:
    """Reference without cache reuse, for one round: every option's full sequence [prefix ; option] in one
    right-padded batch (the tests' ground truth and bench/train.py's baseline)."""
    embed = llm.get_input_embeddings()
    real = embeds[0, mask[0].bool()]
    width = real.shape[0] + max(len(o) for o in options)
    seqs = real.new_zeros(len(options), width, real.shape[1])
    attention = torch.zeros(len(options), width, dtype=torch.long, device=embeds.device)
    for k, ids in enumerate(options):
        n = real.shape[0] + len(ids)
        seqs[k, :n] = torch.cat([real, embed(torch.tensor(ids, device=embeds.device)).to(real.dtype)])
        attention[k, :n] = 1
    logprobs = llm(inputs_embeds=seqs, attention_mask=attention).logits.float().log_softmax(-1)
    scores = []
    for k, ids in enumerate(options):
        positions = torch.arange(real.shape[0] - 1, real.shape[0] - 1 + len(ids), device=embeds.device)
        scores.append(float(logprobs[k, positions, torch.tensor(ids, device=embeds.device)].sum()))
    return scores
