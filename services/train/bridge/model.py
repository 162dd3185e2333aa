"""The MA-LMM bridge over pre-extracted embeddings: turn tokens, memory banks, Q-Former and projection into the LLM.

Per turn t: token_t = LN(fc([image_t ; question_t]) + turn_pe[t]), each embedding first standardised by a
parameter-free LayerNorm (`input_norm`; EfficientNet features have norm ~25, MiniLM's 1, so without it the question
barely reaches the token). Turns are processed online as MA-LMM processes
frames: at every step the current turn's tokens join the visual memory bank (compressed past `memory_bank_length`
slots); the Q-Former's learned queries cross-attend to [visual memory ; current turn] and, with the query memory bank
on, also self-attend to their own compressed past states. The query outputs of the open turn go through `llm_proj`.

Batches are right-aligned: step s of row b holds turn t = r_b - S + s + 1 (the open turn r_b is always the last
step); steps before a row's first turn are inactive and enter the banks as empty slots (size 0), which compression
absorbs first (see memory_bank.py), so every row sees exactly its own history.
"""
from __future__ import annotations

import torch
from torch import nn

from services.train.bridge import memory_bank
from services.train.bridge.config import BridgeModelSettings
from services.train.bridge.qformer import build_qformer, self_attentions

TRAINABLE_GROUPS = ("fc", "turn_pe", "query_tokens", "llm_proj", "qformer")


class Bridge(nn.Module):
    """Embeddings of past and current turns -> `num_query_tokens` soft tokens in the LLM's embedding space."""

    def __init__(self, cfg: BridgeModelSettings, image_dim: int, text_dim: int, llm_dim: int,
                 llm_embed_std: float | None = None):
        super().__init__()
        self.cfg = cfg
        self.image_dim, self.text_dim = image_dim, text_dim
        self.image_norm = nn.LayerNorm(image_dim, elementwise_affine=False) if cfg.input_norm else nn.Identity()
        self.text_norm = nn.LayerNorm(text_dim, elementwise_affine=False) if cfg.input_norm else nn.Identity()
        self.fc = nn.Linear(image_dim + text_dim, cfg.tokens_per_turn * cfg.dim)
        self.token_norm = nn.LayerNorm(cfg.dim)
        self.turn_pe = nn.Embedding(cfg.max_turns + 1, cfg.dim)
        # small like BERT's position embeddings: at N(0, 1) the turn index would drown the image in the token's LN
        nn.init.normal_(self.turn_pe.weight, std=0.02)
        self.picture_pe = nn.Embedding(cfg.max_pictures + 1, cfg.dim) if cfg.max_pictures else None
        if self.picture_pe is not None:
            nn.init.normal_(self.picture_pe.weight, std=0.02)
        self.qformer, self.query_tokens, self.qformer_report = build_qformer(
            cfg.qformer, cfg.dim, cfg.query_memory_bank and cfg.memory_bank_length > 0)
        self.llm_proj = nn.Linear(self.qformer.config.hidden_size, llm_dim)
        # the chat's memory panel sets this to keep the banks the open turn attended to (`recorded_banks`)
        self.record_banks = False
        self.recorded_banks: dict[str, list[torch.Tensor]] | None = None
        if llm_embed_std is not None:  # start the soft tokens at the scale of the LLM's own token embeddings
            nn.init.normal_(self.llm_proj.weight, std=llm_embed_std / self.qformer.config.hidden_size ** 0.5)
            nn.init.zeros_(self.llm_proj.bias)

    @property
    def qformer_pretrained(self) -> bool:
        return self.qformer_report.get("checkpoint") is not None

    def group_of(self, name: str) -> str:
        """Which trainable group a parameter name belongs to (token_norm goes with fc, picture_pe with turn_pe)."""
        head = name.split(".", 1)[0]
        return {"token_norm": "fc", "picture_pe": "turn_pe"}.get(head, head)

    def set_trainable(self, groups: list[str]) -> list[str]:
        """Freeze everything, then unfreeze `groups` ("auto" = the Q-Former when it is not pretrained)."""
        chosen = set(groups) - {"auto"}
        if "auto" in groups and not self.qformer_pretrained:
            chosen.add("qformer")
        unknown = chosen - set(TRAINABLE_GROUPS)
        if unknown:
            raise ValueError(f"model.trainable: unknown parts {sorted(unknown)}; choose from {list(TRAINABLE_GROUPS)} "
                             "or auto")
        for name, param in self.named_parameters():
            param.requires_grad_(self.group_of(name) in chosen)
        return sorted(chosen)

    def turn_tokens(self, image: torch.Tensor, question: torch.Tensor, turn: torch.Tensor,
                    picture: torch.Tensor | None = None) -> torch.Tensor:
        """(B,S,Di), (B,S,Dt), (B,S) 1-based turns (0 = inactive), optional (B,S) 1-based pictures -> (B,S,N,C)."""
        if turn.max() > self.cfg.max_turns:
            raise ValueError(f"turn {int(turn.max())} exceeds model.max_turns={self.cfg.max_turns}; raise it")
        dtype = self.fc.weight.dtype
        fused = self.fc(torch.cat([self.image_norm(image.to(dtype)), self.text_norm(question.to(dtype))], dim=-1))
        fused = fused.view(*turn.shape, self.cfg.tokens_per_turn, self.cfg.dim)
        position = self.turn_pe(turn)
        if self.picture_pe is not None:
            if picture is None:
                raise ValueError("model.max_pictures > 0 needs the picture index of every turn (Batch.picture)")
            # beyond max_pictures every later picture shares the last row: still "not one of the first ones"
            position = position + self.picture_pe(picture.clamp(max=self.cfg.max_pictures))
        return self.token_norm(fused + position.unsqueeze(2))

    def _run_qformer(self, encoder_states: torch.Tensor, encoder_mask: torch.Tensor) -> torch.Tensor:
        queries = self.query_tokens.expand(encoder_states.shape[0], -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=encoder_states,
                           encoder_attention_mask=encoder_mask.long())
        return out.last_hidden_state[:, : queries.shape[1]]

    def forward(self, image: torch.Tensor, question: torch.Tensor, turn: torch.Tensor,
                picture: torch.Tensor | None = None) -> torch.Tensor:
        """Soft tokens (B, num_query_tokens, llm_dim) for the open turn (the last step of each row)."""
        tokens = self.turn_tokens(image, question, turn, picture)
        batch, steps, per_turn, dim = tokens.shape
        length = self.cfg.memory_bank_length
        current_mask = torch.ones(batch, per_turn, dtype=torch.bool, device=tokens.device)
        if length == 0:  # memory off: the Q-Former sees only the open turn
            self.recorded_banks = None
            return self.llm_proj(self._run_qformer(tokens[:, -1], current_mask))

        active = (turn > 0).long()
        bank, sizes = memory_bank.empty(batch, length, per_turn, dim, like=tokens)
        attentions = self_attentions(self.qformer) if self.cfg.query_memory_bank else []
        num_queries, hidden = self.query_tokens.shape[1:]
        query_banks = [memory_bank.empty(batch, length, num_queries, hidden, like=tokens) for _ in attentions]
        output = None
        for step in range(steps):
            current = tokens[:, step]
            last = step == steps - 1
            if attentions or last:
                for module, (q_bank, q_sizes) in zip(attentions, query_banks):
                    module.memory, module.memory_mask = q_bank.flatten(1, 2), q_sizes.flatten(1, 2) > 0
                states = torch.cat([bank.flatten(1, 2), current], dim=1)
                mask = torch.cat([sizes.flatten(1, 2) > 0, current_mask], dim=1)
                output = self._run_qformer(states, mask)
            if last:
                if self.record_banks:
                    self.recorded_banks = {"visual": [bank.detach(), sizes.detach()],
                                           "query_sizes": [q_sizes.detach() for _, q_sizes in query_banks]}
                break
            for i, module in enumerate(attentions):
                q_bank, q_sizes = query_banks[i]
                entry_sizes = active[:, step, None].expand(batch, num_queries)
                query_banks[i] = memory_bank.push(q_bank, q_sizes, module.recorded, entry_sizes, length)
            bank, sizes = memory_bank.push(bank, sizes, current, active[:, step, None].expand(batch, per_turn), length)
        for module in attentions:
            module.memory = module.memory_mask = module.recorded = None
        return self.llm_proj(output)

