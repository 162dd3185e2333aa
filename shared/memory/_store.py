"""A store of past conversation turns scored by recency, frequency, saliency and relevance (see docs/RETRIEVAL.md).

Structure of arrays: every per-memory quantity is one numpy array, so scoring a million memories is a handful of
vectorised passes plus one matrix-vector product (`_scoring`). Any conversation turn goes in through `add_turns`
(speaker, text, time, the picture it is about and that picture's caption, what it replies to); `add`/`add_batch`
are the question/answer shorthand for the same path. Usage:

    store = MemoryStore(MemoryConfig()); store.add_turns([Turn("red", reply_to="what color?", turn=1)])
    store.retrieve("which color was it?", 3, now=2)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from shared.memory._arrays import Growable, append_rows, checked_rows
from shared.memory._config import Memory, MemoryConfig, Turn
from shared.memory._scoring import COMPONENTS, Scoring
from shared.memory._text import IdfTable, picture_refs, question_type
from shared.memory._words import WordIndex

__all__ = ["COMPONENTS", "MemoryStore"]


class MemoryStore(Scoring):
    """Past turns of one conversation (or any corpus of Q/A memories) with vectorised scoring."""

    def __init__(self, config: MemoryConfig | None = None, idf: IdfTable | None = None,
                 rate_saliency: Callable[[str, str], float] | None = None):
        """`idf`: corpus statistics for saliency (default: the store's own memories); `rate_saliency`: optional
        LLM rating hook (reply_to, text) -> [0, 1], used with weight `config.llm_saliency_weight`."""
        self.config = config or MemoryConfig()
        self.idf_table, self.rate_saliency = idf, rate_saliency
        self.questions: list[str] = []  # each turn's reply_to
        self.answers: list[str] = []  # each turn's text
        self.turn, self.image_id, self.picture = Growable(np.int64), Growable(np.int64), Growable(np.int32)
        self.created, self.last_access = Growable(np.float64), Growable(np.float64)
        self.access_count, self.reference_count = Growable(np.float32), Growable(np.float32)
        self.type_prior, self.llm_rating = Growable(np.float32), Growable(np.float32)
        self.speaker, self.time, self.session = Growable(np.int32), Growable(np.float64), Growable(np.int32)
        self.q_emb: Growable | None = None  # embeddings of reply_to
        self.a_emb: Growable | None = None  # embeddings of text
        self.words = WordIndex()
        self.pictures: dict[int, int] = {}  # image id -> picture number (1-based, order of first appearance)
        self.speakers: list[str] = []
        self._speaker_ids: dict[str, int] = {}
        self.captions: dict[int, int] = {}  # picture number -> its row in the caption index (and embeddings)
        self.caption_words = WordIndex()
        self.caption_emb: Growable | None = None
        self._last_time: float | None = None
        self._saliency_cache: np.ndarray | None = None
        self._screens: dict = {}  # per embedding matrix, see Scoring.retrieve
        self._screen_broken = False

    def __len__(self) -> int:
        return len(self.questions)

    def reserve(self, capacity: int, embedding_dim: int | None = None) -> None:
        """Pre-allocate for `capacity` memories (and reply_to embeddings of `embedding_dim`) before a bulk load."""
        for column in (self.turn, self.image_id, self.picture, self.created, self.last_access, self.access_count,
                       self.reference_count, self.type_prior, self.llm_rating, self.speaker, self.time, self.session):
            column.reserve(capacity)
        if embedding_dim is not None:
            if self.q_emb is None:
                self.q_emb = Growable(np.float32, width=embedding_dim)
            self.q_emb.reserve(capacity)

    # --- adding turns --------------------------------------------------------------------------------------
    def add_turns(self, turns: Sequence[Turn], text_embeddings: np.ndarray | None = None,
                  reply_embeddings: np.ndarray | None = None,
                  caption_embeddings: Mapping[int, np.ndarray] | None = None) -> range:
        """Store conversation turns (the one way in); returns their memory indices.

        Args:
            text_embeddings / reply_embeddings: [n, D] embeddings of each turn's text and of what it replies to
                (L2-normalised here; for a turn that replies to nothing, pass e.g. its text's embedding again).
                Give them for every turn or for none; relevance is then hybrid, else lexical.
            caption_embeddings: image id -> embedding of the caption, for each picture whose caption arrives here.
        """
        n = len(turns)
        cfg = self.config
        if cfg.clock == "seconds" and any(t.time is None for t in turns):
            raise ValueError("config.clock is 'seconds': give every turn a time (epoch seconds), or use clock: turn")
        # Check everything before appending anything, so a rejected batch leaves the store as it was.
        q_emb = checked_rows("question", reply_embeddings, self.q_emb, n, len(self))
        a_emb = checked_rows("answer", text_embeddings, self.a_emb, n, len(self))
        pictures = dict(self.pictures)  # registered only once the batch is accepted
        new_captions = self._new_captions(turns, pictures)
        c_emb = None
        if new_captions and (caption_embeddings is not None or self.caption_emb is not None):
            missing = [image for image, _ in new_captions if caption_embeddings is None or image not in
                       caption_embeddings]
            if missing:
                raise ValueError(f"caption embedding missing for image {missing[0]}; the store has them for the "
                                 "others (give one per new caption, or none at all)")
            c_emb = checked_rows("caption", np.stack([np.asarray(caption_embeddings[i], np.float32)
                                                                for i, _ in new_captions]),
                                           self.caption_emb, len(new_captions), len(self.captions))
        ratings = [np.nan if self.rate_saliency is None else float(self.rate_saliency(t.reply_to, t.text))
                   for t in turns]
        bad = [(i, r) for i, r in enumerate(ratings) if not (np.isnan(r) or 0.0 <= r <= 1.0)]
        if bad:
            raise ValueError(f"rate_saliency rated memory {bad[0][0]} of the batch {bad[0][1]}; it must return [0, 1]")

        self.q_emb = append_rows(self.q_emb, q_emb)
        self.a_emb = append_rows(self.a_emb, a_emb)
        self.pictures = pictures
        self._add_captions(new_captions, c_emb)
        first = len(self)
        numbers = self._turn_numbers(turns)
        times = np.array([np.nan if t.time is None else float(t.time) for t in turns], dtype=np.float64)
        created = numbers.astype(np.float64) if cfg.clock == "turn" else times
        self.questions.extend(str(t.reply_to) for t in turns)
        self.answers.extend(str(t.text) for t in turns)
        self.turn.extend(numbers)
        self.image_id.extend([-1 if t.image_id is None else int(t.image_id) for t in turns])
        self.picture.extend([0 if t.image_id is None else self.pictures[int(t.image_id)] for t in turns])
        self.created.extend(created)
        self.last_access.extend(created)
        self.access_count.extend(np.zeros(n))
        self.reference_count.extend(np.zeros(n))
        self.type_prior.extend([cfg.type_weights.get(question_type(t.reply_to), 0.0) for t in turns])
        self.llm_rating.extend(ratings)
        self.speaker.extend([self._speaker_ids.setdefault(t.speaker, len(self._speaker_ids)) for t in turns])
        self.speakers = list(self._speaker_ids)
        self.time.extend(times)
        self.session.extend(self._sessions(times))
        self.words.add_batch(self.questions[first:], self.answers[first:])
        self._saliency_cache = None
        return range(first, len(self))

    def add(self, question: str, answer: str, turn: int, image_id: int | None = None, time: float | None = None,
            question_embedding: np.ndarray | None = None, answer_embedding: np.ndarray | None = None) -> int:
        """Store one question/answer turn (`add_turns` with a Turn replying to `question`); returns its index."""
        q = None if question_embedding is None else np.asarray(question_embedding)[None]
        a = None if answer_embedding is None else np.asarray(answer_embedding)[None]
        return self.add_batch([question], [answer], [turn], [image_id], None if time is None else [time], q, a)[0]

    def add_batch(self, questions: Sequence[str], answers: Sequence[str], turns: Sequence[int],
                  image_ids: Sequence[int | None] | None = None, times: Sequence[float] | None = None,
                  question_embeddings: np.ndarray | None = None, answer_embeddings: np.ndarray | None = None) -> range:
        """Store many question/answer turns at once (the fast way to build a large store): `add_turns` with Turns
        whose text is the answer and whose reply_to is the question."""
        n = len(questions)
        if len(answers) != n or len(turns) != n:
            raise ValueError(f"add_batch: {n} questions, {len(answers)} answers, {len(turns)} turns; give one each")
        image_ids = [None] * n if image_ids is None else list(image_ids)
        times = [None] * n if times is None else list(times)
        batch = [Turn(str(a), reply_to=str(q), turn=int(t), image_id=None if i is None else int(i), time=s)
                 for q, a, t, i, s in zip(questions, answers, turns, image_ids, times, strict=True)]
        return self.add_turns(batch, text_embeddings=answer_embeddings, reply_embeddings=question_embeddings)

    def _turn_numbers(self, turns: Sequence[Turn]) -> np.ndarray:
        given = [t.turn for t in turns]
        if None not in given:
            return np.array(given, dtype=np.int64)
        last = int(self.turn[len(self) - 1]) if len(self) else 0
        numbers = np.empty(len(turns), dtype=np.int64)
        for i, t in enumerate(turns):
            last = numbers[i] = last + 1 if t.turn is None else int(t.turn)
        return numbers

    def _sessions(self, times: np.ndarray) -> np.ndarray:
        """Session of each new turn: a new one after `session_gap` seconds of silence (turns without time stay in
        the current session; 0 before the first timed turn)."""
        current = int(self.session[len(self.session) - 1]) if len(self.session) else 0
        if not np.isfinite(times).any():
            return np.full(len(times), current, dtype=np.int32)
        out = np.empty(len(times), dtype=np.int32)
        for i, t in enumerate(times):
            if np.isfinite(t):
                if self._last_time is None or t - self._last_time > self.config.session_gap:
                    current += 1
                self._last_time = float(t)
            out[i] = current
        return out

    def _new_captions(self, turns: Sequence[Turn], pictures: dict[int, int]) -> list[tuple[int, str]]:
        """Number the turns' new pictures in `pictures`; (image id, caption) of pictures whose first caption
        arrives now."""
        new: dict[int, str] = {}
        for t in turns:
            if t.image_id is None:
                continue
            picture = pictures.setdefault(int(t.image_id), len(pictures) + 1)
            if t.caption and picture not in self.captions and int(t.image_id) not in new:
                new[int(t.image_id)] = str(t.caption)
        return list(new.items())

    def _add_captions(self, captions: list[tuple[int, str]], embeddings: np.ndarray | None) -> None:
        for image, _ in captions:
            self.captions[self.pictures[image]] = len(self.captions)
        self.caption_words.add_batch([""] * len(captions), [c for _, c in captions])
        self.caption_emb = append_rows(self.caption_emb, embeddings)

    def memory(self, i: int) -> Memory:
        t = float(self.time[i])
        return Memory(i, int(self.turn[i]), self.questions[i], self.answers[i], int(self.image_id[i]),
                      int(self.picture[i]), int(self.access_count[i]), int(self.reference_count[i]),
                      float(self.last_access[i]), self.speakers[int(self.speaker[i])], t if np.isfinite(t) else None,
                      int(self.session[i]))

    # --- the query-independent components (raw, before normalisation) ---------------------------------------
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
