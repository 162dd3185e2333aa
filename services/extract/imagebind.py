"""imagebind_huge: ImageBind's own model classes (imagebind-unofficial 0.1.1 == facebookresearch/ImageBind@53680b0).

Only the vision and text modalities are kept. The weights come from a local file (never downloaded at run time);
`encoder.architecture` overrides ImageBindModel's constructor arguments so tests build the same classes tiny.
ImageBind's package __init__ is not run (see imagebind_module), so audio/video libraries are never imported.
ImageBind code and weights are CC BY-NC-SA 4.0.
"""
from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from torchvision import transforms

from services.extract.config import EncoderConfig
from services.extract.encoders import Encoder, EncoderError, l2_normalise, sha256_cached

KEEP = ("vision", "text")
# imagebind_model.imagebind_huge()'s arguments: the architecture of the released checkpoint
HUGE = dict(
    vision_embed_dim=1280, vision_num_blocks=32, vision_num_heads=16,
    text_embed_dim=1024, text_num_blocks=24, text_num_heads=16, out_embed_dim=1024,
)
# towers we delete right after construction: build them minimal so they cost no time or memory meanwhile
UNUSED_MINIMAL = dict(
    audio_embed_dim=8, audio_num_blocks=1, audio_num_heads=1,
    depth_embed_dim=8, depth_num_blocks=1, depth_num_heads=1,
    thermal_embed_dim=8, thermal_num_blocks=1, thermal_num_heads=1,
    imu_embed_dim=8, imu_num_blocks=1, imu_num_heads=1,
)
# ImageBind's vision transform (imagebind.data.load_and_transform_vision_data): CLIP statistics
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 224
CHECKPOINT_HELP = (
    "download imagebind_huge.pth (~4.5 GB) from https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth "
    "and place it at {path} (see checkpoints/README.md), or point encoder.checkpoint=<path> at your copy"
)


def imagebind_module(name: str):
    """A module of imagebind-unofficial, imported without running the package's __init__.py.

    That __init__ imports imagebind.data (audio and video loading: torchaudio, pytorchvideo, av, pkg_resources) only
    to re-export it; the vision and text towers (imagebind.models) need none of those. So the package is registered
    bare (its location, not its code) before the submodule is imported; it then needs torch, timm, einops, ftfy,
    regex and iopath alone.
    """
    if "imagebind" not in sys.modules:
        spec = importlib.util.find_spec("imagebind")
        if spec is None:
            raise EncoderError("imagebind-unofficial is not installed in this environment; run the extract service "
                               "in its own venv (`make setup-extract`) or image")
        sys.modules["imagebind"] = importlib.util.module_from_spec(spec)
    return importlib.import_module(name)


def build_model(architecture: dict[str, Any]) -> torch.nn.Module:
    """ImageBindModel with HUGE dims (+ overrides), vision and text modalities only."""
    ImageBindModel = imagebind_module("imagebind.models.imagebind_model").ImageBindModel  # noqa: N806

    kwargs = {**UNUSED_MINIMAL, **HUGE, **architecture}
    try:
        model = ImageBindModel(**kwargs)
    except TypeError as e:
        raise EncoderError(f"encoder.architecture: {e}; valid keys are ImageBindModel's arguments") from None
    for modules in (model.modality_preprocessors, model.modality_trunks, model.modality_heads,
                    model.modality_postprocessors):
        for name in [k for k in modules.keys() if k not in KEEP]:
            del modules[name]
    return model


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load the vision + text part of a full ImageBind state dict, strictly (a wrong file fails loudly)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise EncoderError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    kept = {k: v for k, v in state.items() if k.split(".")[1:2] and k.split(".")[1] in KEEP}
    try:
        model.load_state_dict(kept, strict=True)
    except RuntimeError as e:
        raise EncoderError(
            f"{path}: does not fit the configured ImageBind architecture ({str(e).splitlines()[0]}); "
            "is it imagebind_huge.pth, and does encoder.architecture match it?"
        ) from None


class ImageBindEncoder(Encoder):
    def __init__(self, cfg: EncoderConfig, device: torch.device) -> None:
        SimpleTokenizer = imagebind_module("imagebind.models.multimodal_preprocessors").SimpleTokenizer  # noqa: N806

        self.encoder_id = cfg.encoder_id
        self.device = device
        self.architecture = dict(cfg.architecture)
        path = Path(cfg.checkpoint)
        if not path.is_file():
            raise EncoderError(f"ImageBind checkpoint {path} not found: " + CHECKPOINT_HELP.format(path=path))
        self.checkpoint_sha256 = sha256_cached(path)  # before the slow build: a bad file fails fast
        self.model = build_model(self.architecture)
        load_weights(self.model, path)
        self.model.eval().to(device)
        dims = {**HUGE, **self.architecture}
        self.image_dim = self.text_dim = int(dims["out_embed_dim"])
        bpe = importlib.resources.files("imagebind") / "bpe" / "bpe_simple_vocab_16e6.txt.gz"
        self.tokenizer = SimpleTokenizer(bpe_path=str(bpe))
        self._transform = transforms.Compose(
            [
                transforms.Resize(IMAGE_SIZE, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(IMAGE_SIZE),
                transforms.ToTensor(),
                transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD),
            ]
        )

    @property
    def image_transform(self) -> transforms.Compose:
        return self._transform

    def _run(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model({modality: x})[modality].float()

    @torch.inference_mode()
    def embed_images(self, batch: torch.Tensor) -> torch.Tensor:
        return self._run("vision", batch.to(self.device, non_blocking=True)).cpu()

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts)
        tokens = tokens.unsqueeze(0) if tokens.dim() == 1 else tokens  # one string comes back 1-D
        # ImageBind multiplies text by a learned logit scale (~14): undo it so texts are unit vectors like images
        return l2_normalise(self._run("text", tokens.to(self.device))).cpu()

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {
            "image_model": "ImageBind vision trunk (imagebind-unofficial 0.1.1)",
            "image_size": IMAGE_SIZE,
            "resize": "shorter side bicubic + center crop",
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
            "image_normalised": True,
            "text_model": "ImageBind text trunk, SimpleTokenizer bpe_simple_vocab_16e6, context 77",
            "text_pooling": "EOS token projection, re-normalised (logit scale removed)",
            "architecture": {**HUGE, **self.architecture},
        }
