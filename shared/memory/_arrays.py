"""Array building blocks of `shared.memory`: growable columns, checked embedding rows, row products, min-max,
exact top-k."""
from __future__ import annotations

import numpy as np


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


def append_rows(store: Growable | None, emb: np.ndarray | None) -> Growable | None:
    """`store` with the rows `emb` appended (a new column for the first rows; unchanged for None)."""
    if emb is None:
        return store
    if store is None:
        store = Growable(np.float32, width=emb.shape[1])
    store.extend(emb)
    return store


def checked_rows(role: str, emb: np.ndarray | None, store: Growable | None, n: int, held: int) -> np.ndarray | None:
    """The batch's embeddings L2-normalised, after checking shape, dims, and that none is zero or non-finite."""
    if emb is None:
        if store is not None and len(store) and n:
            raise ValueError(f"{role} embeddings missing for {n} new memories; the store has them for the others")
        return None
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"{role} embeddings of shape {emb.shape}; expected [{n}, dim]")
    if held and (store is None or len(store) != held):
        raise ValueError(f"{role} embeddings given, but {held} stored memories have none; give all or none")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
        bad = int(np.flatnonzero(~(norms[:, 0] > 0) | ~np.isfinite(norms[:, 0]))[0])
        raise ValueError(f"{role} embedding {bad} of the batch is zero or not finite; re-extract it")
    if store is not None and store.width != emb.shape[1]:
        raise ValueError(f"{role} embeddings are {emb.shape[1]}-d; the store holds {store.width}-d ones")
    return emb / norms


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
