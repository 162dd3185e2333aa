"""Int8 first pass of `MemoryStore.retrieve` over very large stores (`MemoryConfig.int8_screen_from`), exact result.

The float32 relevance of a million 384-d memories reads 1.5 GB per query; numpy's product is bandwidth bound at
~58 ms on the 2-core dev machine. The screen keeps the embeddings also as int8 rows with a per-row scale (a quarter
of the bytes), packed for the dynamic-quantised linear kernel of torch (fbgemm on x86), and bounds that kernel's
error instead of trusting it:

  * each row w is stored as w8 = scale * round(w / scale); ||w - w8|| is measured when the block is packed;
  * the kernel quantises the query x to uint8 with step s = (max(x, 0) - min(x, 0)) / 255, so every coordinate of
    the x8 it uses is within s/2 of x, and ||x - x8|| <= sqrt(d) * s/2;
  * so |w.x - w8.x8| <= ||w|| ||x - x8|| + ||w - w8|| ||x8|| (Cauchy-Schwarz), integer accumulation is exact.

`relevance` returns every row's estimate and twice that bound. The store then rescores with the float32 rows every
memory whose bound could reach the exact top-k, or the exact minimum or maximum of relevance (min-max normalisation
needs them), so retrieve returns what the float32 pass would, and it checks the bound on each rescored row: a kernel
that breaks it (another torch build) switches the screen off with a warning, it never returns a wrong answer.
"""
from __future__ import annotations

import functools
import logging
import math
import warnings

import numpy as np

from shared.memory._arrays import dot_rows

log = logging.getLogger(__name__)
BOUND_MARGIN = 2.0  # the bound above is taken twice, plus FLOAT_SLACK for the float32 output
FLOAT_SLACK = 1e-5


@functools.cache
def available() -> bool:
    """Whether torch's dynamic-quantised linear kernel runs here and keeps within the bound (tried once, on a small
    random matrix). Without torch, or with a torch build that lacks or changed the kernel, the store stays float32."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((512, 64), dtype=np.float32)
    query = rng.standard_normal(64, dtype=np.float32)
    screen = Int8Screen(block=256, min_block=1)
    try:
        screen.sync(matrix)
        estimate, bound = screen.relevance(query, matrix)
    except Exception as e:  # any failure of the kernel only means: no screen
        log.warning("int8 screen unavailable (%s: %s); large stores are scored in float32", type(e).__name__, e)
        return False
    ok = bool(np.all(np.abs(estimate - matrix @ query) <= bound))
    if not ok:
        log.warning("int8 screen: torch's quantised kernel breaks its error bound here; large stores are scored "
                    "in float32")
    return ok


class Int8Screen:
    """Packed int8 copies of one embedding matrix, in blocks; rows appended later are packed once there are
    `min_block` of them (until then they are scored in float32)."""

    def __init__(self, block: int = 131_072, min_block: int = 65_536):
        self.block, self.min_block = block, min_block
        self.blocks: list[tuple[int, int, object]] = []  # (first row, rows, packed weights)
        self.packed_rows = 0
        self.error_max = 0.0  # largest ||w - w8|| over packed rows
        self.norm_max = 0.0  # largest ||w|| over packed rows (1 for the store's unit rows)

    def sync(self, matrix: np.ndarray) -> None:
        """Pack the rows added since the last call (all of them the first time), `block` rows per kernel call."""
        if self.packed_rows and len(matrix) - self.packed_rows < self.min_block:
            return
        for start in range(self.packed_rows, len(matrix), self.block):
            rows = matrix[start : start + self.block]
            self.blocks.append((start, len(rows), self._pack(rows)))
            self.packed_rows = start + len(rows)

    def _pack(self, rows: np.ndarray):
        import torch

        weights = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        scale = torch.linalg.vector_norm(weights, ord=math.inf, dim=1).double().clamp_min(1e-30) / 127
        with warnings.catch_warnings():  # torch warns that quantised tensors are deprecated: see available()
            warnings.filterwarnings("ignore", message=".*quantiz.*deprecated", category=UserWarning)
            quantised = torch.quantize_per_channel(weights, scale, torch.zeros(len(rows), dtype=torch.long), 0,
                                                   torch.qint8)
            packed = torch.ops.quantized.linear_prepack(quantised, None)
        error = torch.linalg.vector_norm(weights - quantised.dequantize(), dim=1).max()
        self.error_max = max(self.error_max, float(error))
        self.norm_max = max(self.norm_max, float(torch.linalg.vector_norm(weights, dim=1).max()))
        return packed

    def relevance(self, query: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, float]:
        """(estimated dot product of `query` with every row of `matrix`, bound on each estimate's error)."""
        import torch

        out = np.empty(len(matrix), dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)[None])
        with torch.inference_mode():
            for start, size, packed in self.blocks:
                out[start : start + size] = torch.ops.quantized.linear_dynamic(x, packed, False)[0].numpy()
        out[self.packed_rows :] = dot_rows(matrix[self.packed_rows :], query)  # not packed yet: exact
        step = (max(float(query.max()), 0.0) - min(float(query.min()), 0.0)) / 255
        query_error = math.sqrt(len(query)) * step / 2
        bound = self.norm_max * query_error + self.error_max * (float(np.linalg.norm(query)) + query_error)
        return out, BOUND_MARGIN * bound + FLOAT_SLACK
