"""Image decoding in DataLoader workers: open, check, convert to RGB, preprocess; failures come back as reasons.

Workers never raise for a bad file: a broken image must be recorded (failures.jsonl), not crash the whole batch.
"""
from __future__ import annotations

import ctypes
import os
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFile
from torch.utils.data import DataLoader, Dataset

# A truncated file must fail, not be padded with grey by Pillow.
ImageFile.LOAD_TRUNCATED_IMAGES = False
HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class ImageDecodeError(ValueError):
    """A file that is not a complete, decodable image."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (grayscale, RGBA, CMYK, palette, 16-bit and float grayscale)."""
    if image.mode in HIGH_BIT_MODES:
        # Pillow's own I;16 -> RGB clips to 255; rescale the real range to 0..255 instead
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow asks for this route; the RGB step below then drops alpha
    # Dropping alpha (not compositing) is what ImageBind's loader does: `Image.open(f).convert("RGB")`.
    return image.convert("RGB")


def load_rgb(path: Path) -> Image.Image:
    """Decode a whole image file to RGB; raise ImageDecodeError with a reason a user can act on."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    if size == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd palettes; failures still raise
            with Image.open(path) as image:
                image.load()  # decodes every byte: truncation shows up here, not at open()
                return to_rgb(image)
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(f"not an image Pillow can read ({size} bytes)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"corrupt or truncated image ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class ImageItem:
    image_id: int
    path: Path | None  # None: the image index has no file for this id


class ImageDataset(Dataset):
    """Item i -> (i, tensor | None, failure reason | None)."""

    def __init__(self, items: list[ImageItem], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        item = self.items[i]
        if item.path is None:
            return i, None, "file not found: no file under the image folder carries this image id"
        try:
            return i, self.transform(load_rgb(item.path)), None
        except ImageDecodeError as e:
            return i, None, str(e)


@dataclass
class Batch:
    indices: list[int]  # dataset positions of `pixels`' rows
    pixels: torch.Tensor | None
    failed: list[tuple[int, str]]  # (dataset position, reason)

    def pin_memory(self) -> "Batch":  # DataLoader(pin_memory=True) calls this on custom batch types
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        return self


def collate(samples: list[tuple[int, torch.Tensor | None, str | None]]) -> Batch:
    ok = [(i, x) for i, x, _ in samples if x is not None]
    return Batch(
        indices=[i for i, _ in ok],
        pixels=torch.stack([x for _, x in ok]) if ok else None,
        failed=[(i, reason) for i, x, reason in samples if x is None],
    )


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # workers decode; letting each spawn N BLAS threads would starve the model
    die_with_parent()


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the extraction that forked it dies, even by SIGKILL (which runs no
    cleanup): an orphaned worker would hold memory and file handles until its queue times out."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not Linux: the DataLoader's own parent watchdog remains
        return
    libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before the call: nobody is left to signal us
        os._exit(1)


def make_loader(dataset: ImageDataset, batch_size: int, num_workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,  # batch composition must not vary between runs: bit-identical shards
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if num_workers else None,
        prefetch_factor=4 if num_workers else None,
    )
