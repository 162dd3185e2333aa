"""Inverted index of the memories' words: the lexical relevance, the answer IDF of saliency, references by word.

Flat arrays (word id, memory, role bits) appended per batch, plus postings (the same entries sorted by word) so a
query reads only the entries of its own words: over a million memories that is a few ms instead of a pass over all
entries. Entries added after the postings were sorted are scanned directly until there are enough to re-sort.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.memory._arrays import Growable
from shared.memory._text import IdfTable, bm25_idf, terms

QUESTION, ANSWER = 1, 2  # role bits of a word in a memory (its reply_to and its text)
ROLES = {"question": QUESTION, "answer": ANSWER, "both": QUESTION | ANSWER}


class WordIndex:
    """Content words (stemmed terms) of each memory's question and answer, by role."""

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.doc_freq = Growable(np.float64)
        self.word, self.memory, self.role = Growable(np.int64), Growable(np.int64), Growable(np.int8)
        self.num_docs = 0
        self._idf_cache: tuple[object, int, int, np.ndarray] | None = None
        self._postings: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # starts, memory, role by word
        self._sorted = 0  # entries covered by the postings

    def add_batch(self, questions: Sequence[str], answers: Sequence[str]) -> None:
        words, memories, roles, new_df = [], [], [], []
        for q, a in zip(questions, answers, strict=True):
            q_words, a_words = set(terms(q)), set(terms(a))
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

    def mean_answer_idf(self, table: IdfTable | None) -> np.ndarray:
        """Mean IDF of each memory's answer content words (0 for answers without any, e.g. "yes")."""
        mask = (self.role.view() & ANSWER) > 0
        memories = self.memory.view()[mask]
        sums = np.bincount(memories, weights=self.idf(table)[self.word.view()[mask]], minlength=self.num_docs)
        return sums / np.maximum(np.bincount(memories, minlength=self.num_docs), 1)

    def _query_ids(self, text: str) -> np.ndarray:
        return np.array(sorted({self.vocab[w] for w in terms(text) if w in self.vocab}), dtype=np.int64)

    def _postings_of(self, ids: np.ndarray, bits: int) -> list[np.ndarray]:
        """For each word of `ids`: the memories holding it in a role with one of `bits` (each memory once)."""
        size = len(self.word)
        if self._postings is None or size - self._sorted > max(65_536, self._sorted // 8):
            order = np.argsort(self.word.view(), kind="stable")
            starts = np.searchsorted(self.word.view()[order], np.arange(len(self.vocab) + 1))
            self._postings, self._sorted = (starts, self.memory.view()[order], self.role.view()[order]), size
        starts, memory, role = self._postings
        tail_word, tail_memory = self.word.view()[self._sorted :], self.memory.view()[self._sorted :]
        tail_role = self.role.view()[self._sorted :]
        out = []
        for wid in ids:
            lo, hi = (starts[wid], starts[wid + 1]) if wid < len(starts) - 1 else (0, 0)
            found = memory[lo:hi][(role[lo:hi] & bits) > 0]
            if len(tail_word):
                found = np.concatenate([found, tail_memory[(tail_word == wid) & ((tail_role & bits) > 0)]])
            out.append(found)
        return out

    def overlap(self, query: str, on: str, table: IdfTable | None) -> np.ndarray:
        """Share of the query's IDF mass that a memory contains (in its question, answer or both), in [0, 1].

        Dividing by the query's own mass puts the lexical score on the scale of a cosine, so the bonuses mean the
        same in both modes. Query words the store has never seen count in the mass (a miss is a miss).
        """
        words = set(terms(query))
        mass = sum(table.idf(w) if table is not None else bm25_idf(0, max(self.num_docs, 1)) for w in words
                   if w not in self.vocab)
        ids = self._query_ids(query)
        if not len(ids):
            return np.zeros(self.num_docs, dtype=np.float32)
        idf = self.idf(table)
        mass += float(idf[ids].sum())
        out = np.zeros(self.num_docs, dtype=np.float32)
        for wid, memories in zip(ids, self._postings_of(ids, ROLES.get(on, QUESTION | ANSWER)), strict=True):
            out[memories] += np.float32(idf[wid] / mass)  # a memory holds a word once: no repeated index
        return out

    def answer_mentions(self, text: str) -> np.ndarray:
        """Boolean per memory: `text` names one of the memory's answer content words."""
        ids = self._query_ids(text)
        hit = np.zeros(self.num_docs, dtype=bool)
        for memories in self._postings_of(ids, ANSWER):
            hit[memories] = True
        return hit
