"""The encoder interface every extractor implements, the registry that picks one by name, and shared helpers.

An encoder is a frozen image tower + a frozen text tower. The pipeline only talks to this interface, so adding an
encoder means one module with one class registered here.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from shared.errors import InputError
from services.extract.config import EncoderConfig

# name -> "module:Class", imported lazily so a run only loads the encoder it uses
REGISTRY: dict[str, str] = {
    "cpu_default": "services.extract.cpu_default:CpuDefaultEncoder",
    "imagebind_huge": "services.extract.imagebind:ImageBindEncoder",
}


class EncoderError(InputError):
    """An encoder cannot be built (missing weights, bad architecture override, ...)."""


class Encoder(ABC):
    """Frozen image + text towers producing one vector per image and one per string (see `preprocessing`)."""

    encoder_id: str
    image_dim: int
    text_dim: int
    checkpoint_sha256: str
    device: torch.device

    @property
    @abstractmethod
    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """A picklable PIL(RGB) -> float tensor callable; DataLoader workers run it."""

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Turn one RGB PIL image into the model's input tensor (C, H, W)."""
        return self.image_transform(image)

    @abstractmethod
    def embed_images(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) preprocessed images -> (B, image_dim) float32 on the CPU."""

    @abstractmethod
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Strings -> (len(texts), text_dim) float32 on the CPU."""

    @property
    @abstractmethod
    def preprocessing(self) -> dict[str, Any]:
        """What was done to inputs (sizes, normalisation, tokenizer); stored in every shard's metadata."""

    def autocast(self):
        """bf16 autocast on CUDA (tensor cores); plain fp32 on the CPU, where bf16 is slower and less exact."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)


def build_encoder(cfg: EncoderConfig, device: torch.device) -> Encoder:
    """Instantiate the encoder named by `cfg.name` on `device`."""
    if cfg.name not in REGISTRY:
        raise EncoderError(f"encoder.name={cfg.name!r} is unknown; choose one of {sorted(REGISTRY)}")
    module_name, class_name = REGISTRY[cfg.name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(cfg, device)


def sha256_cached(path: Path, write_sidecar: bool = True) -> str:
    """sha256 of a weights file, cached in `<path>.sha256` keyed by size + mtime (a 4.5 GB file hashes in ~10 s).

    The sidecar is best effort: a read-only folder (a mounted volume) just means hashing every run. Files inside
    installed packages pass write_sidecar=False: they are small and the venv is not ours to write into.
    """
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    sidecar = path.with_name(path.name + ".sha256")
    try:
        cached = json.loads(sidecar.read_text())
        if {k: cached.get(k) for k in key} == key and len(cached.get("sha256", "")) == 64:
            return cached["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    if not write_sidecar:
        return value
    try:
        tmp = sidecar.with_name(sidecar.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({**key, "sha256": value}) + "\n")
        tmp.replace(sidecar)
    except OSError:
        pass
    return value


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)
