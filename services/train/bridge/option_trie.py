"""The token trie of a round's answer options, laid out for one tree-attention forward (scoring.score_options).

Candidate answers share leading tokens ("yes", "yes it is", "yes , it is"; every option ends with the same end
token), so a round's 100 options of ~6 tokens hold ~20% fewer distinct (prefix, token) pairs than tokens. Each trie
node is one distinct option prefix; it is computed once, attending to the round's prefix and to its own ancestors.
Only nodes with children are run through the model: the last token of an option is predicted, never fed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class OptionTrie:
    """Trie of one round's options. Node 0 is the end of the prefix; nodes 1.. follow in creation order, so an
    ancestor always precedes its descendants."""

    parent: list[int]
    token: list[int]
    depth: list[int]  # 1 for an option's first token
    paths: list[list[int]]  # per option, its node at every token
    fed: list[int]  # nodes with children, in creation order: the ones the model runs

    @property
    def slot(self) -> dict[int, int]:
        """Node -> its column among the fed nodes."""
        return {node: i for i, node in enumerate(self.fed)}

    def ancestors(self) -> torch.Tensor:
        """(n, n) bool: fed node i may attend to fed node j (j is i or one of its ancestors)."""
        slot = self.slot
        visible = torch.zeros(len(self.fed), len(self.fed), dtype=torch.bool)
        for i, node in enumerate(self.fed):
            above = self.parent[node]
            if above > 0:  # the parent precedes the node, so its row is complete already
                visible[i] = visible[slot[above]]
            visible[i, i] = True
        return visible


def build_trie(options: list[list[int]]) -> OptionTrie:
    """The trie of `options` (token ids of each option, none empty); e.g. `build_trie([[5, 2], [5, 7, 2]])`."""
    children: list[dict[int, int]] = [{}]
    parent, token, depth = [-1], [-1], [0]
    paths = []
    for k, ids in enumerate(options):
        if not ids:
            raise ValueError(f"option {k} has no tokens: every option needs at least one token to be scored")
        node, path = 0, []
        for tok in ids:
            nxt = children[node].get(tok)
            if nxt is None:
                nxt = len(parent)
                children[node][tok] = nxt
                children.append({})
                parent.append(node)
                token.append(int(tok))
                depth.append(depth[node] + 1)
            path.append(nxt)
            node = nxt
        paths.append(path)
    fed = [n for n in range(1, len(parent)) if children[n]]
    return OptionTrie(parent, token, depth, paths, fed)
