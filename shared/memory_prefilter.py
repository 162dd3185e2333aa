"""Approximate first stage of `MemoryStore.retrieve` for very large stores (`MemoryConfig.prefilter_dims`).

The exact relevance of a million 384-d float32 memories reads 1.5 GB per query, which is memory-bandwidth bound
(~54 ms on the 2-core dev machine). The prefilter keeps the embeddings projected onto their top `dims` principal
axes (uncentred, so dot products are what is approximated), estimates every relevance from that smaller matrix, and
lets the store rescore only a shortlist exactly. The estimate is the dot product of the query with each memory's
component inside the subspace, so it is exact for embeddings that lie in it and loses only what lies outside.
"""
from __future__ import annotations

import numpy as np

from shared.memory_arrays import Growable


class Prefilter:
    """Principal-axes projection of an embedding matrix, kept in step with rows appended to it."""

    def __init__(self, dims: int, sample: int = 20_000, chunk: int = 65_536):
        self.dims, self.sample, self.chunk = dims, sample, chunk
        self.basis: np.ndarray | None = None  # (D, dims)
        self.projected: Growable | None = None

    def sync(self, matrix: np.ndarray) -> None:
        """Fit the axes on the first call (evenly spaced rows, at most `sample`), then project rows added since."""
        if self.basis is None:
            rows = matrix[np.linspace(0, len(matrix) - 1, min(self.sample, len(matrix))).astype(np.int64)]
            second_moment = rows.T.astype(np.float64) @ rows.astype(np.float64)
            _, vectors = np.linalg.eigh(second_moment)  # ascending eigenvalues
            self.basis = np.ascontiguousarray(vectors[:, ::-1][:, : self.dims], dtype=np.float32)
            self.projected = Growable(np.float32, width=self.basis.shape[1])
            self.projected.reserve(len(matrix))
        for start in range(len(self.projected), len(matrix), self.chunk):
            self.projected.extend(matrix[start : start + self.chunk] @ self.basis)

    def estimate(self, query: np.ndarray) -> np.ndarray:
        """Approximate dot products of `query` with every synced row: one (N, dims) matrix-vector product."""
        return self.projected.view() @ (query @ self.basis)
