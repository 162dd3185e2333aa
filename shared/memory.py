"""A store of past dialogue turns scored by recency, frequency, saliency and relevance (see docs/RETRIEVAL.md).

Structure of arrays: every per-memory quantity is one numpy array, so scoring a million memories is a handful of
vectorised passes plus one float32 matrix-vector product. Usage:

    store = MemoryStore(MemoryConfig()); store.add("what color?", "red", turn=1); store.retrieve("color?", 3, now=2)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from shared.memory_arrays import Growable, WordIndex, top_k_indices, value_range
from shared.memory_config import Memory, MemoryConfig, Retrieved, Scores, ScoreWeights
from shared.memory_prefilter import Prefilter
from shared.memory_text import IdfTable, picture_refs, question_type

COMPONENTS = ("recency", "frequency", "saliency", "relevance")
__all__ = ["COMPONENTS", "Memory", "MemoryConfig", "MemoryStore", "Retrieved", "Scores", "ScoreWeights"]


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
        self._prefilter: Prefilter | None = None

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
        """0.5 ** (age / half_life); age from last access or creation; recalls stretch the half-life if configured."""
        since = (self.last_access if self.config.recency_from == "last_access" else self.created).view()[idx]
        # float64 clock (epoch seconds), float32 from here on for speed; one pass, no float64 temporary
        age = np.subtract(np.float64(now), since, out=np.empty(len(since), np.float32), casting="same_kind")
        np.maximum(age, 0.0, out=age)
        if self.config.recall_strength:
            age /= np.float32(self.config.half_life) * (1 + np.float32(self.config.recall_strength)
                                                        * self.access_count.view()[idx])
        else:
            age *= np.float32(1.0 / self.config.half_life)
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
            qv, mats = self._embedding_query(query_embedding)
            sims = [m.view()[idx] @ qv for m in mats]
            rel = sims[0] if len(sims) == 1 else np.maximum(*sims)
        else:
            rel = self.words.overlap(query, self.config.relevance_on, self.idf_table)[idx]
        return self._with_picture_bonus(rel, query, idx, current_picture).astype(np.float32, copy=False)

    def _embedding_query(self, query_embedding: np.ndarray) -> tuple[np.ndarray, list[Growable]]:
        """The unit-length query vector and the embedding matrices `relevance_on` compares it with (checked)."""
        on = self.config.relevance_on
        if self.q_emb is None and self.a_emb is None:
            raise ValueError("query_embedding given but the store has no embeddings; "
                             "pass None for the lexical relevance")
        qv = np.asarray(query_embedding, dtype=np.float32).reshape(-1)
        qv = qv / max(float(np.linalg.norm(qv)), 1e-12)
        mats = [m for m, use in ((self.q_emb, on != "answer"), (self.a_emb, on != "question")) if m is not None and use]
        if not mats:
            raise ValueError(f"relevance_on={on!r} but the store has no {on} embeddings; add them or change it")
        if qv.shape[0] != mats[0].width:
            raise ValueError(f"query embedding is {qv.shape[0]}-d, the store's are {mats[0].width}-d; "
                             "embed queries and memories with the same encoder")
        return qv, mats

    def _with_picture_bonus(self, rel: np.ndarray, query: str, idx, current_picture: int | None) -> np.ndarray:
        refs = picture_refs(query, current_picture)
        if refs and self.config.picture_bonus:
            rel = rel + self.config.picture_bonus * np.isin(self.picture.view()[idx], list(refs))
        return rel

    # --- scoring and retrieval ------------------------------------------------------------------------------
    def score(self, query: str, now: float, query_embedding: np.ndarray | None = None,
              candidates: np.ndarray | None = None, current_picture: int | None = None,
              relevance: np.ndarray | None = None) -> Scores:
        """Total = sum of weight * min-max(component) over `candidates` (default: every memory). `relevance`: raw
        relevance per candidate computed elsewhere (the prefilter's estimate) instead of from the embeddings.

        Computed as sum(weight / span * raw) + constant, which is the same number without materialising each
        normalised component (`Scores.component` does that on demand). Relevance comes last: BLAS worker threads
        keep spinning after the matrix-vector product and slow whatever numpy work follows it.
        """
        # A slice, not arange: fancy indexing would copy the whole embedding matrix on every query.
        idx = slice(0, len(self)) if candidates is None else np.asarray(candidates, dtype=np.int64)
        w = self.config.weights
        total = np.zeros(len(self) if candidates is None else len(idx), dtype=np.float32)
        scratch = np.empty_like(total)
        scores = Scores(None if candidates is None else idx, total, {}, {})
        offset = 0.0
        for name in COMPONENTS:
            weight = float(getattr(w, name))
            if not weight:
                continue
            if name == "relevance":
                raw = self.relevance(query, idx, query_embedding, current_picture) if relevance is None else relevance
            else:
                raw = self.recency(now, idx) if name == "recency" else getattr(self, name)(idx)
            lo, span = value_range(raw)
            scores.raw[name], scores.ranges[name] = raw, (lo, span)
            if span:
                total += np.multiply(raw, np.float32(weight / span), out=scratch)
                offset -= weight * lo / span
        if offset:
            total += np.float32(offset)
        return scores

    def retrieve(self, query: str, k: int, now: float, query_embedding: np.ndarray | None = None,
                 candidates: np.ndarray | None = None, current_picture: int | None = None,
                 update: bool | None = None) -> list[Retrieved]:
        """Top-k memories, best first (ties: older first). Counts the access unless `update` is False."""
        target = self._prefilter_target(k, query_embedding, candidates)
        if target is not None:
            scores = self._prefiltered_scores(query, now, *target, current_picture)
        else:
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

    def _prefilter_target(self, k: int, query_embedding: np.ndarray | None, candidates: np.ndarray | None
                          ) -> tuple[np.ndarray, Growable] | None:
        """(unit query, the one embedding matrix) when the prefilter applies: a large store scored against a single
        matrix (not the max over question and answer); None otherwise."""
        cfg = self.config
        if not cfg.prefilter_dims or query_embedding is None or candidates is not None or not cfg.weights.relevance:
            return None
        if len(self) <= max(cfg.prefilter_shortlist, k):
            return None
        qv, mats = self._embedding_query(query_embedding)
        return (qv, mats[0]) if len(mats) == 1 else None

    def _prefiltered_scores(self, query: str, now: float, qv: np.ndarray, matrix: Growable,
                            current_picture: int | None) -> Scores:
        """Every total with the estimated relevance, then the best `prefilter_shortlist` rescored exactly.

        Normalisation keeps the first stage's relevance range (over all memories), so a shortlisted total is the
        exact relevance put on that scale; memories outside the shortlist are never rescored (docs/RETRIEVAL.md).
        """
        if self._prefilter is None or self._prefilter.dims != self.config.prefilter_dims:
            self._prefilter = Prefilter(self.config.prefilter_dims)
        self._prefilter.sync(matrix.view())
        every = slice(0, len(self))
        estimate = self._with_picture_bonus(self._prefilter.estimate(qv), query, every, current_picture)
        rough = self.score(query, now, candidates=None, current_picture=current_picture,
                           relevance=estimate.astype(np.float32, copy=False))
        shortlist = np.sort(top_k_indices(rough.total, self.config.prefilter_shortlist))
        exact = self._with_picture_bonus(matrix.view()[shortlist] @ qv, query, shortlist, current_picture)
        raw = {name: values[shortlist] for name, values in rough.raw.items()}
        raw["relevance"] = exact.astype(np.float32, copy=False)
        _, span = rough.ranges["relevance"]
        total = rough.total[shortlist]
        if span:
            total = total + np.float32(self.config.weights.relevance / span) * (raw["relevance"] - estimate[shortlist])
        return Scores(shortlist, total.astype(np.float32, copy=False), raw, rough.ranges)

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
