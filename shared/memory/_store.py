"""A store of past dialogue turns scored by recency, frequency, saliency and relevance (see docs/RETRIEVAL.md).

Structure of arrays: every per-memory quantity is one numpy array, so scoring a million memories is a handful of
vectorised passes plus one matrix-vector product (int8 with an exact float32 rescoring of the doubtful rows for
stores of `int8_screen_from` memories or more, float32 below). Usage:

    store = MemoryStore(MemoryConfig()); store.add("what color?", "red", turn=1); store.retrieve("color?", 3, now=2)
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from shared.memory import _screen as memory_screen
from shared.memory._arrays import Growable, WordIndex, dot_rows, top_k_indices, value_range
from shared.memory._config import Memory, MemoryConfig, Retrieved, Scores, ScoreWeights
from shared.memory._text import IdfTable, picture_refs, question_type

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


class MemoryStore:
    """Past turns of one conversation (or any corpus of Q/A memories) with vectorised scoring."""

    def __init__(self, config: MemoryConfig | None = None, idf: IdfTable | None = None,
                 rate_saliency: Callable[[str, str], float] | None = None):
        """`idf`: corpus statistics for saliency (default: the store's own memories); `rate_saliency`: optional
        LLM rating hook (question, answer) -> [0, 1], used with weight `config.llm_saliency_weight`."""
        self.config = config or MemoryConfig()
        self.idf_table, self.rate_saliency = idf, rate_saliency
        self.questions: list[str] = []
        self.answers: list[str] = []
        self.turn, self.image_id, self.picture = Growable(np.int64), Growable(np.int64), Growable(np.int32)
        self.created, self.last_access = Growable(np.float64), Growable(np.float64)
        self.access_count, self.reference_count = Growable(np.float32), Growable(np.float32)
        self.type_prior, self.llm_rating = Growable(np.float32), Growable(np.float32)
        self.q_emb: Growable | None = None
        self.a_emb: Growable | None = None
        self.words = WordIndex()
        self.pictures: dict[int, int] = {}
        self._saliency_cache: np.ndarray | None = None
        self._screens: dict[str, memory_screen.Int8Screen] = {}  # per embedding matrix, see retrieve()
        self._screen_broken = False

    def __len__(self) -> int:
        return len(self.questions)

    def reserve(self, capacity: int, embedding_dim: int | None = None) -> None:
        """Pre-allocate for `capacity` memories (and question embeddings of `embedding_dim`) before a bulk load."""
        for column in (self.turn, self.image_id, self.picture, self.created, self.last_access, self.access_count,
                       self.reference_count, self.type_prior, self.llm_rating):
            column.reserve(capacity)
        if embedding_dim is not None:
            if self.q_emb is None:
                self.q_emb = Growable(np.float32, width=embedding_dim)
            self.q_emb.reserve(capacity)

    def add(self, question: str, answer: str, turn: int, image_id: int = 0, time: float | None = None,
            question_embedding: np.ndarray | None = None, answer_embedding: np.ndarray | None = None) -> int:
        """Store one turn; returns its index. `time` (seconds) is required when `config.clock == "seconds"`."""
        q = None if question_embedding is None else np.asarray(question_embedding)[None]
        a = None if answer_embedding is None else np.asarray(answer_embedding)[None]
        self.add_batch([question], [answer], [turn], [image_id], None if time is None else [time], q, a)
        return len(self) - 1

    def add_batch(self, questions: Sequence[str], answers: Sequence[str], turns: Sequence[int],
                  image_ids: Sequence[int] | None = None, times: Sequence[float] | None = None,
                  question_embeddings: np.ndarray | None = None, answer_embeddings: np.ndarray | None = None) -> None:
        """Store many turns at once (the fast way to build a large store). Embeddings are L2-normalised here."""
        n = len(questions)
        if len(answers) != n or len(turns) != n:
            raise ValueError(f"add_batch: {n} questions, {len(answers)} answers, {len(turns)} turns; give one each")
        image_ids = [0] * n if image_ids is None else list(image_ids)
        if self.config.clock == "seconds" and times is None:
            raise ValueError("config.clock is 'seconds': pass time= (seconds) for every memory, or use clock: turn")
        created = np.asarray(turns if self.config.clock == "turn" else times, dtype=np.float64)
        # Check everything before appending anything, so a rejected batch leaves the store as it was.
        q_emb = self._check_embeddings("question", question_embeddings, self.q_emb, n)
        a_emb = self._check_embeddings("answer", answer_embeddings, self.a_emb, n)
        ratings = [np.nan if self.rate_saliency is None else float(self.rate_saliency(q, a))
                   for q, a in zip(questions, answers, strict=True)]
        bad = [(i, r) for i, r in enumerate(ratings) if not (np.isnan(r) or 0.0 <= r <= 1.0)]
        if bad:
            raise ValueError(f"rate_saliency rated memory {bad[0][0]} of the batch {bad[0][1]}; it must return [0, 1]")
        self.q_emb = self._append(self.q_emb, q_emb)
        self.a_emb = self._append(self.a_emb, a_emb)
        for image in image_ids:
            self.pictures.setdefault(int(image), len(self.pictures) + 1)
        self.questions.extend(str(q) for q in questions)
        self.answers.extend(str(a) for a in answers)
        self.turn.extend(turns)
        self.image_id.extend(image_ids)
        self.picture.extend([self.pictures[int(i)] for i in image_ids])
        self.created.extend(created)
        self.last_access.extend(created)
        self.access_count.extend(np.zeros(n))
        self.reference_count.extend(np.zeros(n))
        self.type_prior.extend([self.config.type_weights.get(question_type(q), 0.0) for q in questions])
        self.llm_rating.extend(ratings)
        self.words.add_batch(questions, answers)
        self._saliency_cache = None

    @staticmethod
    def _append(store: Growable | None, emb: np.ndarray | None) -> Growable | None:
        if emb is None:
            return store
        if store is None:
            store = Growable(np.float32, width=emb.shape[1])
        store.extend(emb)
        return store

    def _check_embeddings(self, role: str, emb: np.ndarray | None, store: Growable | None, n: int) -> np.ndarray | None:
        """The batch's embeddings L2-normalised, after checking shape, dims, and that none is zero or non-finite."""
        if emb is None:
            if store is not None and len(store):
                raise ValueError(f"{role} embeddings missing for {n} new memories; the store has them for the others")
            return None
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise ValueError(f"{role} embeddings of shape {emb.shape}; expected [{n}, dim]")
        if len(self) and (store is None or len(store) != len(self)):
            raise ValueError(f"{role} embeddings given, but {len(self)} stored memories have none; give all or none")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
            bad = int(np.flatnonzero(~(norms[:, 0] > 0) | ~np.isfinite(norms[:, 0]))[0])
            raise ValueError(f"{role} embedding {bad} of the batch is zero or not finite; re-extract it")
        if store is not None and store.width != emb.shape[1]:
            raise ValueError(f"{role} embeddings are {emb.shape[1]}-d; the store holds {store.width}-d ones")
        return emb / norms

    def memory(self, i: int) -> Memory:
        return Memory(i, int(self.turn[i]), self.questions[i], self.answers[i], int(self.image_id[i]),
                      int(self.picture[i]), int(self.access_count[i]), int(self.reference_count[i]),
                      float(self.last_access[i]))

    # --- components (raw, before normalisation) -------------------------------------------------------------
    def recency(self, now: float, idx: np.ndarray | slice) -> np.ndarray:
        """0.5 ** (age / half_life); age from last access or creation; recalls stretch the half-life if configured.

        Ages beyond 64 half-lives count as 64: older values would reach float32 subnormals (below 2 ** -126), in
        exp2 or once weighted, ~20x slower per element on x86, for values min-max scaling maps to 0 anyway.
        """
        since = (self.last_access if self.config.recency_from == "last_access" else self.created).view()[idx]
        # float64 clock (epoch seconds), float32 from here on for speed; one pass, no float64 temporary
        age = np.subtract(np.float64(now), since, out=np.empty(len(since), np.float32), casting="same_kind")
        np.maximum(age, 0.0, out=age)
        if self.config.recall_strength:
            age /= np.float32(self.config.half_life) * (1 + np.float32(self.config.recall_strength)
                                                        * self.access_count.view()[idx])
        else:
            age *= np.float32(1.0 / self.config.half_life)
        np.minimum(age, np.float32(64), out=age)
        return np.exp2(np.negative(age, out=age), out=age)

    def frequency(self, idx: np.ndarray | slice) -> np.ndarray:
        """log(1 + recalls + later references): repeated use counts, with diminishing returns."""
        return np.log1p(self.access_count.view()[idx] + self.reference_count.view()[idx])

    def saliency(self, idx: np.ndarray | slice) -> np.ndarray:
        """Mean of (answer IDF share) and (question-type prior), optionally mixed with an LLM rating."""
        if self._saliency_cache is None:
            info = self.words.mean_answer_idf(self.idf_table) / max(self.words.max_idf(self.idf_table), 1e-6)
            text = 0.5 * (info + self.type_prior.view())
            w = self.config.llm_saliency_weight
            rating = self.llm_rating.view()
            mixed = np.where(np.isnan(rating), text, (1 - w) * text + w * np.nan_to_num(rating))
            self._saliency_cache = mixed.astype(np.float32)
        return self._saliency_cache[idx]

    def relevance(self, query: str, idx: np.ndarray | slice, query_embedding: np.ndarray | None = None,
                  current_picture: int | None = None) -> np.ndarray:
        """Cosine of the query to the memory's question/answer embeddings (max of the two with `both`); without a
        query embedding, IDF-weighted overlap of content words. Plus `picture_bonus` for a named picture."""
        if query_embedding is not None:
            rel = self._cosines(*self._embedding_query(query_embedding), idx)
        else:
            rel = self.words.overlap(query, self.config.relevance_on, self.idf_table)[idx]
        return self._with_picture_bonus(rel, query, idx, current_picture)

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
        width = next(iter(mats.values())).width
        if qv.shape[0] != width:
            raise ValueError(f"query embedding is {qv.shape[0]}-d, the store's are {width}-d; "
                             "embed queries and memories with the same encoder")
        return qv, mats

    def _with_picture_bonus(self, rel: np.ndarray, query: str, idx, current_picture: int | None) -> np.ndarray:
        """`rel` plus `picture_bonus` for memories shown on a picture the query names, as float32."""
        refs = picture_refs(query, current_picture)
        if refs and self.config.picture_bonus:
            rel = rel + self.config.picture_bonus * np.isin(self.picture.view()[idx], list(refs))
        return rel.astype(np.float32, copy=False)

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
            raw = self.relevance(query, idx, query_embedding, current_picture)
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
        return [
            Retrieved(int(i), int(self.turn[i]), self.questions[i], self.answers[i],
                      f"picture {int(self.picture[i])}" if multi else None, float(scores.total[j]),
                      {name: float(v[pos]) for name, v in parts.items()})
            for pos, (j, i) in enumerate(zip(best, chosen, strict=True))
        ]

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
        qv, mats = self._embedding_query(query_embedding)  # checked once; the rescoring below reuses it
        estimate, bound = self._screen_estimate(query, qv, mats, current_picture)

        def exact(rows: np.ndarray) -> np.ndarray:
            return self._with_picture_bonus(self._cosines(qv, mats, rows), query, rows, current_picture)

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

    def _screen_estimate(self, query: str, qv: np.ndarray, mats: dict[str, Growable], current_picture: int | None
                         ) -> tuple[np.ndarray, float]:
        """Every memory's relevance from the int8 screens (the max over question and answer with `both`), with the
        picture bonus, and the bound on its error."""
        estimate, bound = None, 0.0
        for role, matrix in mats.items():
            screen = self._screens.setdefault(role, memory_screen.Int8Screen())
            screen.sync(matrix.view())
            part, error = screen.relevance(qv, matrix.view())
            estimate = part if estimate is None else np.maximum(estimate, part, out=estimate)
            bound = max(bound, error)
        return self._with_picture_bonus(estimate, query, slice(0, len(self)), current_picture), bound

    def note_references(self, question: str, current_picture: int | None = None) -> np.ndarray:
        """Count `question` as a reference to memories whose answer content words or picture it names."""
        if not self.config.count_references or not len(self):
            return np.zeros(0, dtype=np.int64)
        hit = self.words.answer_mentions(question)
        refs = picture_refs(question, current_picture)
        if refs:
            hit |= np.isin(self.picture.view(), list(refs))
        referenced = np.flatnonzero(hit)
        self.reference_count.view()[referenced] += 1
        return referenced
