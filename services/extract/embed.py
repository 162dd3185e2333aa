"""The two hot loops: images through a worker DataLoader in batches, distinct strings in length-sorted batches."""
from __future__ import annotations

import os

import numpy as np
import torch

from services.extract.dataset import ImageDataset, ImageItem, make_loader
from services.extract.encoders import Encoder
from services.extract.failures import ImageFailure
from shared.runlog import Progress
from shared.settings import torch_device


def embed_images(
    encoder: Encoder, items: list[ImageItem], batch_size: int, num_workers: int, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, list[ImageFailure]]:
    """Embed every item; unreadable ones are reported, never filled in.

    Returns:
        (float32 [len(items), image_dim] with rows of failed items left as NaN, bool mask of embedded items,
        failures). NaN, not zero, so a bug that let such a row through would be caught by write_shard's check.
    """
    out = np.full((len(items), encoder.image_dim), np.nan, dtype=np.float32)
    done = np.zeros(len(items), dtype=bool)
    failures: list[ImageFailure] = []
    if not items:
        return out, done, failures
    workers = min(num_workers, max(1, len(items) // batch_size))  # no point forking 4 workers for 10 images
    loader = make_loader(ImageDataset(items, encoder.image_transform), batch_size, workers,
                         pin_memory=encoder.device.type == "cuda")
    for batch in loader:
        for i, reason in batch.failed:
            failures.append(ImageFailure(items[i].image_id, str(items[i].path or ""), reason))
        if batch.pixels is not None:
            out[batch.indices] = encoder.embed_images(batch.pixels).numpy()
            done[batch.indices] = True
        if progress is not None:
            progress.update(len(batch.indices) + len(batch.failed))
    return out, done, failures


def embed_strings(
    encoder: Encoder, strings: list[str], batch_size: int, progress: Progress | None = None
) -> np.ndarray:
    """float32 [len(strings), text_dim]; `strings` should already be distinct (see assemble.TextTable).

    Batches are formed over the strings sorted by length so a batch pads to similar lengths; the order depends
    only on the strings, so reruns see the same batches and give the same bits.
    """
    out = np.empty((len(strings), encoder.text_dim), dtype=np.float32)
    order = sorted(range(len(strings)), key=lambda i: (len(strings[i]), strings[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        vectors = encoder.embed_texts([strings[i] for i in chunk])
        out[chunk] = vectors.numpy()
        if progress is not None:
            progress.update(len(chunk))
    if not np.isfinite(out).all():
        raise FloatingPointError("the text encoder produced NaN/inf; check the checkpoint")
    return out


def configure_torch(num_threads: int, device: str) -> torch.device:
    """Deterministic kernels, a fixed thread count, and the device to use (auto = cuda when present)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; read at CUDA init
    if num_threads:
        torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return torch_device(device)
