"""Scoring and retrieval of `MemoryStore` (mixed into it): the hybrid relevance, the weighted total, top-k, and the
int8 first pass for very large stores (`_screen`, docs/RETRIEVAL.md).

Relevance of a memory = cosine of the query with its embeddings (when given), plus the exact "extras": the lexical
share of the query's words it contains, the relevance of its picture's caption, and bonuses for the picture, time,
session and speaker the query names. The extras are computed once per query over every memory, so the int8 screen
adds the very same numbers to its estimates as the float32 path adds to its cosines.
"""
from __future__ import annotations

import logging

import numpy as np

from shared.memory import _screen as memory_screen
from shared.memory._arrays import Growable, dot_rows, top_k_indices, value_range
from shared.memory._config import Retrieved, Scores
from shared.memory._text import picture_refs, tokenize
from shared.memory._when import parse_when

COMPONENTS = ("recency", "frequency", "saliency", "relevance")
log = logging.getLogger(__name__)


def _add_term(scores: Scores, name: str, weight: float, raw: np.ndarray, lo_span: tuple[float, float]) -> None:
    """Add weight * min-max(raw) to the total as weight / span * (raw - lo), without keeping the normalised copy
    (`Scores.component` makes it on demand); a span of 0 (all equal) adds nothing."""
    lo, span = lo_span
    scores.raw[name], scores.ranges[name] = raw, (lo, span)
    if span:
        term = np.subtract(raw, np.float32(lo), dtype=np.float32)
        term *= np.float32(weight / span)
        scores.total += term


class Scoring:
    """The query-dependent half of `MemoryStore` (it provides the columns and recency/frequency/saliency)."""

    # --- relevance -------------------------------------------------------------------------------------------
    def relevance(self, query: str, idx: np.ndarray | slice, query_embedding: np.ndarray | None = None,
                  current_picture: int | None = None, now: float | None = None) -> np.ndarray:
        """Cosine of the query to the memory's reply_to/text embeddings (max of the two with `both`) plus the
        extras (lexical, caption, picture, time, speaker); without a query embedding, the extras alone with the
        lexical share at weight 1. `now` (clock "seconds") lets time phrases count."""
        query_vec = None if query_embedding is None else self._embedding_query(query_embedding)
        extras = self.extras(query, query_vec, current_picture, now)
        if query_vec is None:
            return np.zeros(len(self.turn.view()[idx]), np.float32) if extras is None else extras[idx]
        return self._plus(self._cosines(*query_vec, idx), extras, idx)

    @staticmethod
    def _plus(cosines: np.ndarray, extras: np.ndarray | None, idx) -> np.ndarray:
        return cosines if extras is None else cosines + extras[idx]

    def extras(self, query: str, query_vec: tuple[np.ndarray, dict] | None, current_picture: int | None,
               now: float | None) -> np.ndarray | None:
        """Everything relevance adds to the cosine, per memory (float32), or None when nothing applies."""
        cfg, n = self.config, len(self)
        total = np.zeros(n, dtype=np.float32)
        used = False
        lexical = cfg.lexical_weight if query_vec is not None else 1.0
        if lexical:
            total += np.float32(lexical) * self.words.overlap(query, cfg.relevance_on, self.idf_table)
            used = True
        if cfg.caption_weight and self.captions:
            doc_score = lexical * self.caption_words.overlap(query, "answer", self.idf_table) if lexical else 0.0
            if query_vec is not None and self.caption_emb is not None:
                doc_score = doc_score + dot_rows(self.caption_emb.view(), self._check_width(query_vec[0],
                                                                                            self.caption_emb))
            by_picture = np.zeros(len(self.pictures) + 1)
            rows = np.array(sorted(self.captions.items()), dtype=np.int64).reshape(-1, 2)
            by_picture[rows[:, 0]] = np.broadcast_to(doc_score, (len(self.captions),))[rows[:, 1]]
            total += np.float32(cfg.caption_weight) * by_picture[self.picture.view()].astype(np.float32)
            used = True
        refs = picture_refs(query, current_picture)
        if refs and cfg.picture_bonus:
            total[np.isin(self.picture.view(), list(refs))] += np.float32(cfg.picture_bonus)
            used = True
        if cfg.time_bonus and cfg.clock == "seconds" and now is not None and self._last_time is not None:
            when = parse_when(query, now)
            if when:
                last = int(self.session[n - 1])
                current = last + 1 if now - self._last_time > cfg.session_gap else last
                total += np.float32(cfg.time_bonus) * when.weights(now, self.time.view(), self.session.view(), current)
                used = True
        if cfg.speaker_bonus and len(self.speakers) > 1:
            words = set(tokenize(query))
            named = [i for i, name in enumerate(self.speakers) if tokenize(name) and set(tokenize(name)) <= words]
            if named:
                total[np.isin(self.speaker.view(), named)] += np.float32(cfg.speaker_bonus)
                used = True
        return total if used else None

    @staticmethod
    def _check_width(qv: np.ndarray, matrix: Growable) -> np.ndarray:
        if qv.shape[0] != matrix.width:
            raise ValueError(f"query embedding is {qv.shape[0]}-d, the store's are {matrix.width}-d; "
                             "embed queries and memories with the same encoder")
        return qv

    @staticmethod
    def _cosines(qv: np.ndarray, mats: dict[str, Growable], idx: np.ndarray | slice) -> np.ndarray:
        """Cosine of the unit query with the rows `idx` of each matrix (the max over question and answer)."""
        sims = [dot_rows(m.view()[idx], qv) for m in mats.values()]
        return sims[0] if len(sims) == 1 else np.maximum(*sims)

    def _embedding_query(self, query_embedding: np.ndarray) -> tuple[np.ndarray, dict[str, Growable]]:
        """The unit-length query vector and the embedding matrices `relevance_on` compares it with (checked)."""
        on = self.config.relevance_on
        if self.q_emb is None and self.a_emb is None:
            raise ValueError("query_embedding given but the store has no embeddings; "
                             "pass None for the lexical relevance")
        qv = np.asarray(query_embedding, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(qv))
        if not (np.isfinite(norm) and norm > 0):
            raise ValueError(f"query embedding is {'zero' if norm == 0 else 'not finite'}; re-embed the question "
                             "(or pass None for the lexical relevance)")
        qv = qv / norm
        mats = {role: m for role, m, use in (("question", self.q_emb, on != "answer"),
                                             ("answer", self.a_emb, on != "question")) if m is not None and use}
        if not mats:
            raise ValueError(f"relevance_on={on!r} but the store has no {on} embeddings; add them or change it")
        return self._check_width(qv, next(iter(mats.values()))), mats

    # --- scoring and retrieval ------------------------------------------------------------------------------
    def score(self, query: str, now: float, query_embedding: np.ndarray | None = None,
              candidates: np.ndarray | None = None, current_picture: int | None = None) -> Scores:
        """Total = sum of weight * min-max(component) over `candidates` (default: every memory).

        Relevance comes last: BLAS worker threads keep spinning after the matrix-vector product and slow whatever
        numpy work follows it.
        """
        # A slice, not arange: fancy indexing would copy the whole embedding matrix on every query.
        idx = slice(0, len(self)) if candidates is None else np.asarray(candidates, dtype=np.int64)
        scores = self._static_scores(now, idx)
        if self.config.weights.relevance:
            raw = self.relevance(query, idx, query_embedding, current_picture, now)
            _add_term(scores, "relevance", self.config.weights.relevance, raw, value_range(raw))
        return scores

    def _static_scores(self, now: float, idx: np.ndarray | slice) -> Scores:
        """Scores from the components that do not depend on the query: recency, frequency and saliency."""
        n = len(self) if isinstance(idx, slice) else len(idx)
        scores = Scores(None if isinstance(idx, slice) else idx, np.zeros(n, dtype=np.float32), {}, {})
        for name in COMPONENTS[:3]:
            weight = float(getattr(self.config.weights, name))
            if weight:
                raw = self.recency(now, idx) if name == "recency" else getattr(self, name)(idx)
                _add_term(scores, name, weight, raw, value_range(raw))
        return scores

    def retrieve(self, query: str, k: int, now: float, query_embedding: np.ndarray | None = None,
                 candidates: np.ndarray | None = None, current_picture: int | None = None,
                 update: bool | None = None) -> list[Retrieved]:
        """Top-k memories, best first (ties: older first). Counts the access unless `update` is False."""
        scores = None
        if self._screen_applies(k, query_embedding, candidates):
            scores = self._screened_scores(query, now, k, query_embedding, current_picture)
        if scores is None:
            scores = self.score(query, now, query_embedding, candidates, current_picture)
        best = top_k_indices(scores.total, k)
        chosen = best if scores.indices is None else scores.indices[best]
        if self.config.update_on_retrieve if update is None else update:
            self.access_count.view()[chosen] += 1
            self.last_access.view()[chosen] = now
        multi = len(self.pictures) > 1
        parts = {name: scores.component(name, best) for name in scores.raw}
        raw_relevance = scores.raw.get("relevance")
        out = []
        for pos, (j, i) in enumerate(zip(best, chosen, strict=True)):
            picture, time = int(self.picture[i]), float(self.time[i])
            out.append(Retrieved(int(i), int(self.turn[i]), self.questions[i], self.answers[i],
                                 f"picture {picture}" if multi and picture else None, float(scores.total[j]),
                                 {name: float(v[pos]) for name, v in parts.items()},
                                 self.speakers[int(self.speaker[i])], time if np.isfinite(time) else None,
                                 None if raw_relevance is None else float(raw_relevance[j])))
        return out

    def _screen_applies(self, k: int, query_embedding: np.ndarray | None, candidates: np.ndarray | None) -> bool:
        """The int8 first pass runs for embedding relevance over a whole store of `int8_screen_from` or more."""
        cfg = self.config
        return (bool(cfg.int8_screen_from) and len(self) >= max(cfg.int8_screen_from, k + 1) and candidates is None
                and query_embedding is not None and bool(cfg.weights.relevance) and not self._screen_broken
                and memory_screen.available())

    def _screened_scores(self, query: str, now: float, k: int, query_embedding: np.ndarray,
                         current_picture: int | None) -> Scores | None:
        """Scores of the memories that can be in the exact top-k: every relevance estimated in int8 (error at most
        `bound`), then float32 for the rows the bound leaves in doubt (shared/memory/_screen.py, docs/RETRIEVAL.md).

        Rescored: the rows that can hold the minimum or maximum relevance (the normalisation needs both exactly),
        and each row whose estimated total is within 2 * bound (in total units) of the k-th best estimate, which
        includes every memory of the exact top-k. None if a rescored row breaks the bound (the caller goes float32).
        """
        static = self._static_scores(now, slice(0, len(self)))  # before the product: its threads spin after it
        query_vec = self._embedding_query(query_embedding)  # checked once; the rescoring below reuses it
        extras = self.extras(query, query_vec, current_picture, now)
        qv, mats = query_vec
        estimate, bound = self._screen_estimate(qv, mats, extras)

        def exact(rows: np.ndarray) -> np.ndarray:
            return self._plus(self._cosines(qv, mats, rows), extras, rows)

        # The row of the lowest estimate has a relevance r the minimum is at most, so only rows estimated within
        # `bound` of r can hold the minimum; the same for the maximum.
        end_rows = np.array([np.argmin(estimate), np.argmax(estimate)])
        ends = exact(end_rows)
        lowest, highest = np.flatnonzero(estimate <= ends[0] + bound), np.flatnonzero(estimate >= ends[1] - bound)
        lo_rel, hi_rel = exact(lowest), exact(highest)
        lo_span = value_range(np.array([np.min(lo_rel, initial=ends[0]), np.max(hi_rel, initial=ends[1])]))
        rough = Scores(None, static.total.copy(), {}, {})  # only its total is used
        _add_term(rough, "relevance", self.config.weights.relevance, estimate, lo_span)
        margin = 2 * bound * self.config.weights.relevance / lo_span[1] if lo_span[1] else 0.0
        n = len(rough.total)
        shortlist = np.flatnonzero(rough.total >= np.partition(rough.total, n - k)[n - k] - np.float32(margin))
        short_rel = exact(shortlist)
        worst = float(np.abs(estimate[np.concatenate([end_rows, lowest, highest, shortlist])]
                             - np.concatenate([ends, lo_rel, hi_rel, short_rel])).max())
        if worst > bound:
            self._screen_broken = True
            log.warning("int8 screen: an estimate is off by %.3g, beyond its bound %.3g: this torch build's quantised "
                        "kernel is not the one shared/memory/_screen.py assumes. Scoring in float32 from now on "
                        "(int8_screen_from: 0 skips the screen).", worst, bound)
            return None
        # The same arithmetic as score(): a shortlisted total is the float32 path's (bit for bit where both products
        # take the same route in dot_rows; else within the last float32 digit).
        scores = Scores(shortlist, static.total[shortlist], {name: v[shortlist] for name, v in static.raw.items()},
                        dict(static.ranges))
        _add_term(scores, "relevance", self.config.weights.relevance, short_rel, lo_span)
        return scores

    def _screen_estimate(self, qv: np.ndarray, mats: dict[str, Growable], extras: np.ndarray | None
                         ) -> tuple[np.ndarray, float]:
        """Every memory's relevance from the int8 screens (the max over question and answer with `both`), plus the
        extras, and the bound on its error."""
        estimate, bound = None, 0.0
        for role, matrix in mats.items():
            screen = self._screens.setdefault(role, memory_screen.Int8Screen())
            screen.sync(matrix.view())
            part, error = screen.relevance(qv, matrix.view())
            estimate = part if estimate is None else np.maximum(estimate, part, out=estimate)
            bound = max(bound, error)
        return self._plus(estimate, extras, slice(0, len(self))), bound
