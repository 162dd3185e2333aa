"""Array building blocks of `shared.memory`: growable columns, an inverted word index, row products, min-max,
exact top-k."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.memory._text import IdfTable, bm25_idf, content_words

QUESTION, ANSWER = 1, 2  # role bits of a word in a memory


class Growable:
    """A numpy column (1-d, or 2-d with `width`) that grows by doubling, so appends are amortised O(1)."""

    def __init__(self, dtype: type, width: int | None = None):
        self.width = width
        self._data = np.zeros((16,) if width is None else (16, width), dtype=dtype)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, i: int):
        return self._data[: self._size][i]

    def view(self) -> np.ndarray:
        """The filled part (a view: in-place updates write through)."""
        return self._data[: self._size]

    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` rows now (avoids the doubling's copies and spare room for a known size)."""
        if capacity > len(self._data):
            grown = np.zeros((capacity,) + self._data.shape[1:], dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown

    def extend(self, values) -> None:
        values = np.asarray(values, dtype=self._data.dtype)
        need = self._size + len(values)
        if need > len(self._data):
            self.reserve(max(need, 2 * len(self._data)))
        self._data[self._size : need] = values
        self._size = need


class WordIndex:
    """Inverted index of each memory's content words (flat arrays: word id, memory, role bits)."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.doc_freq = Growable(np.float64)
        self.word, self.memory, self.role = Growable(np.int64), Growable(np.int64), Growable(np.int8)
        self.num_docs = 0
        self._idf_cache: tuple[object, int, int, np.ndarray] | None = None

    def add_batch(self, questions: Sequence[str], answers: Sequence[str]) -> None:
        words, memories, roles, new_df = [], [], [], []
        for q, a in zip(questions, answers, strict=True):
            q_words, a_words = set(content_words(q)), set(content_words(a))
            for w in sorted(q_words | a_words):
                wid = self.vocab.setdefault(w, len(self.vocab))
                if wid == len(self.doc_freq) + len(new_df):
                    new_df.append(0.0)
                words.append(wid)
                memories.append(self.num_docs)
                roles.append(QUESTION * (w in q_words) | ANSWER * (w in a_words))
            self.num_docs += 1
        self.doc_freq.extend(new_df)
        if words:
            np.add.at(self.doc_freq.view(), np.asarray(words), 1.0)
        self.word.extend(words)
        self.memory.extend(memories)
        self.role.extend(roles)

    def idf(self, table: IdfTable | None) -> np.ndarray:
        """IDF per vocabulary id: from `table`, else BM25 IDF over this index's own memories."""
        key = (table, len(self.vocab), self.num_docs)
        if self._idf_cache is not None and self._idf_cache[:3] == key:
            return self._idf_cache[3]
        if table is None:
            n, df = max(self.num_docs, 1), self.doc_freq.view()
            values = np.log1p((n - df + 0.5) / (df + 0.5))
        else:
            values = np.array([table.idf(w) for w in self.vocab], dtype=np.float64)
        self._idf_cache = (*key, values)
        return values

    def max_idf(self, table: IdfTable | None) -> float:
        return table.max_idf if table is not None else bm25_idf(1, max(self.num_docs, 1))

    def _per_memory_sum(self, mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.bincount(self.memory.view()[mask], weights=weights, minlength=self.num_docs)

    def mean_answer_idf(self, table: IdfTable | None) -> np.ndarray:
        """Mean IDF of each memory's answer content words (0 for answers without any, e.g. "yes")."""
        mask = (self.role.view() & ANSWER) > 0
        sums = self._per_memory_sum(mask, self.idf(table)[self.word.view()[mask]])
        counts = np.bincount(self.memory.view()[mask], minlength=self.num_docs)
        return sums / np.maximum(counts, 1)

    def _query_ids(self, text: str) -> np.ndarray:
        return np.array(sorted({self.vocab[w] for w in content_words(text) if w in self.vocab}), dtype=np.int64)

    def overlap(self, query: str, on: str, table: IdfTable | None) -> np.ndarray:
        """Share of the query's IDF mass that a memory contains (in its question, answer or both), in [0, 1].

        Dividing by the query's own mass puts the lexical score on the scale of a cosine, so `picture_bonus`
        means the same in both modes. Query words the store has never seen count in the mass (a miss is a miss).
        """
        words = set(content_words(query))
        mass = sum(table.idf(w) if table is not None else bm25_idf(0, max(self.num_docs, 1)) for w in words
                   if w not in self.vocab)
        ids = self._query_ids(query)
        if not len(ids):
            return np.zeros(self.num_docs)
        idf = self.idf(table)
        mass += float(idf[ids].sum())
        bits = {"question": QUESTION, "answer": ANSWER}.get(on, QUESTION | ANSWER)
        mask = np.isin(self.word.view(), ids) & ((self.role.view() & bits) > 0)
        return self._per_memory_sum(mask, idf[self.word.view()[mask]]) / mass

    def answer_mentions(self, text: str) -> np.ndarray:
        """Boolean per memory: `text` names one of the memory's answer content words."""
        ids = self._query_ids(text)
        hit = np.zeros(self.num_docs, dtype=bool)
        if len(ids):
            mask = np.isin(self.word.view(), ids) & ((self.role.view() & ANSWER) > 0)
            hit[self.memory.view()[mask]] = True
        return hit


def dot_rows(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """rows @ vector. Up to 65,536 rows without BLAS: its worker threads keep spinning after a call and take a core
    from the next product's threads (torch's int8 kernel in shared/memory/_screen.py ran 3x slower after one)."""
    return np.einsum("ij,j->i", rows, vector) if len(rows) < 65_536 else rows @ vector


def value_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max - min) over the candidates; the span is 0 when all are equal (including a single candidate)."""
    if len(values) == 0:
        return 0.0, 0.0
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    return lo, (span if span > 1e-9 * max(1.0, abs(hi)) else 0.0)


def min_max(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the candidates; all-equal (including a single candidate) maps to 0, not NaN."""
    values = np.asarray(values, dtype=np.float32)
    lo, span = value_range(values)
    if not span:
        return np.zeros_like(values)
    return np.clip((values - np.float32(lo)) * np.float32(1.0 / span), 0.0, 1.0)


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest values, best first; ties go to the lower position. O(n) via argpartition."""
    n = len(values)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        chosen = np.argpartition(values, n - k)[n - k :]
        kth = values[chosen].min()
        # argpartition splits ties at the boundary arbitrarily; redo it exactly only when a tie crosses it
        if np.count_nonzero(values[chosen] == kth) != np.count_nonzero(values == kth):
            above = np.flatnonzero(values > kth)
            chosen = np.concatenate([above, np.flatnonzero(values == kth)[: k - len(above)]])
    else:
        chosen = np.arange(n)
    order = np.lexsort((chosen, -values[chosen]))
    return chosen[order]
