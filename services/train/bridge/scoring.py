"""Answer ranking and greedy answers from one shared prefix forward per round.

The prefix [bos ; soft tokens ; prompt] of a round is encoded ONCE; the options' tokens then run against its
key/value cache as one token trie (tree attention: each distinct option prefix once, option_trie.py), so ranking 100
options costs one prefix plus ~80% of their tokens, instead of 100 full sequences. An option's score is the sum of its
tokens' log-probabilities given the prefix (the first from the prefix's last logits). Greedy generation continues from the same cache and returns only
new tokens: the prompt is never decoded as the answer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from services.train.bridge.llm import decoder_and_head
from services.train.bridge.option_trie import build_trie


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


@torch.no_grad()
def score_options(llm, prefix: Prefix, options: list[list[list[int]]], rows_per_forward: int = 256
                  ) -> list[list[float]]:
    """Summed log-prob of every option's tokens given its round's prefix; `options[b][k]` = token ids of option k.

    Tree attention over each round's option trie (option_trie.py): every distinct option prefix runs once, all of a
    round's trie nodes in the same forward after the prefix cache, each attending to the prefix and to its own
    ancestors (a 4D mask) at position prefix length + depth - 1. The vocabulary head runs only on those nodes. Rounds
    are batched (padded to the largest trie); at most `rows_per_forward` (round, node) rows go into one forward, later
    nodes attending to the earlier ones through the cache. Equal to score_options_full within float tolerance.
    """
    decoder, head = decoder_and_head(llm)
    embed = llm.get_input_embeddings()
    device = prefix.mask.device
    tries = [build_trie(row) for row in options]
    batch, width = len(tries), max((len(t.fed) for t in tries), default=0)
    tokens = torch.zeros(batch, width, dtype=torch.long)
    positions = prefix.lengths.cpu()[:, None].repeat(1, width)
    visible = torch.eye(width, dtype=torch.bool).repeat(batch, 1, 1)  # a padding node sees only itself
    real = torch.zeros(batch, width, dtype=torch.bool)
    # one entry per option token: (round, column of the node that predicts it or -1 for the prefix, token, option)
    rows, cols, targets, owners, first_option = [], [], [], [], 0
    for b, trie in enumerate(tries):
        n, slot = len(trie.fed), trie.slot
        tokens[b, :n] = torch.tensor([trie.token[x] for x in trie.fed], dtype=torch.long)
        positions[b, :n] += torch.tensor([trie.depth[x] - 1 for x in trie.fed], dtype=torch.long)
        visible[b, :n, :n] = trie.ancestors()
        real[b, :n] = True
        for k, path in enumerate(trie.paths):
            source = -1
            for node in path:
                rows.append(b), cols.append(source), targets.append(trie.token[node]), owners.append(first_option + k)
                source = slot.get(node, -2)  # -2: a leaf, never a source
        first_option += len(trie.paths)
    rows_t, cols_t, targets_t, owners_t = (torch.tensor(v, dtype=torch.long, device=device)
                                           for v in (rows, cols, targets, owners))
    totals = torch.zeros(first_option, dtype=torch.float32, device=device)
    first = cols_t == -1
    totals.index_add_(0, owners_t[first], prefix.last_logprobs[rows_t[first], targets_t[first]].float())
    if width:
        tokens, positions, visible, real = (t.to(device) for t in (tokens, positions, visible, real))
        cache = _select(prefix.cache, torch.arange(batch, device=device))
        prefix_seen = prefix.mask.bool()[:, None, :]
        key_positions = torch.cat([prefix.mask.long().cumsum(1) - 1, positions], dim=1)
        step = max(1, rows_per_forward // batch)
        for s in range(0, width, step):
            e = min(width, s + step)
            allowed = torch.cat([prefix_seen.expand(-1, e - s, -1), visible[:, s:e, :e]], dim=2)
            mask = tree_attention_mask(decoder, allowed, positions[:, s:e], key_positions[:, : prefix.mask.shape[1] + e],
                                       embed.weight.dtype)
            hidden = decoder(inputs_embeds=embed(tokens[:, s:e]), attention_mask=mask, position_ids=positions[:, s:e],
                             past_key_values=cache, use_cache=True)[0]
            wanted = (cols_t >= s) & (cols_t < e)
            if not wanted.any():
                continue
            chunk_real = real[:, s:e]
            row_of = torch.full(chunk_real.shape, -1, dtype=torch.long, device=device)
            row_of[chunk_real] = torch.arange(int(chunk_real.sum()), device=device)
            logits = head(hidden[chunk_real]).float()
            at = row_of[rows_t[wanted], cols_t[wanted] - s]
            totals.index_add_(0, owners_t[wanted], logits[at, targets_t[wanted]] - logits.logsumexp(-1)[at])
    flat = totals.tolist()
    out, start = [], 0
    for row in options:
        out.append(flat[start: start + len(row)])
        start += len(row)
    return out


def tree_attention_mask(decoder, allowed: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor,
                        dtype: torch.dtype):
    """The decoder's attention mask for `allowed` (B, q, k) bool, in the form its attention implementation takes.

    sdpa takes booleans, eager an additive float mask. Models with sliding-window layers (Gemma-3) get a
    {layer type: mask} mapping whose sliding entry also hides keys `sliding_window` or more positions back.
    """
    config = decoder.config
    impl = getattr(config, "_attn_implementation", None) or "sdpa"
    if impl not in ("sdpa", "eager"):
        raise ValueError(f"option scoring builds its own tree attention mask, which {impl!r} attention cannot take; "
                         "load the LLM with attn_implementation='sdpa' (or 'eager')")
    window = getattr(config, "sliding_window", None)
    layer_types = set(getattr(config, "layer_types", None) or ())
    masks = {"full_attention": allowed[:, None]}
    if window:
        near = (query_positions[:, :, None] - key_positions[:, None, :]) < window
        if "sliding_attention" in layer_types:
            masks["sliding_attention"] = (allowed & near)[:, None]
        elif not bool(near[allowed].all()):
            raise ValueError(f"{type(decoder).__name__}: a prefix longer than its sliding window ({window}) needs a "
                             "per-layer mask this model does not take; shorten the prompt")
    if impl == "eager":
        masks = {k: torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(~m, torch.finfo(dtype).min)
                 for k, m in masks.items()}
    return masks if len(masks) > 1 else masks["full_attention"]


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
