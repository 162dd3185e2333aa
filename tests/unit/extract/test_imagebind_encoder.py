"""imagebind_huge runs ImageBind's own classes, transform and tokenizer; tests build those classes tiny."""
import hashlib
import json
import os

import pytest
import torch
from PIL import Image

from services.extract.config import EncoderConfig
from services.extract.encoders import EncoderError, build_encoder, sha256_cached
from services.extract.imagebind import build_model

from extract_helpers import TINY_ARCH, draw_image


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint):
    cfg = EncoderConfig(name="imagebind_huge", checkpoint=str(tiny_checkpoint), architecture=TINY_ARCH)
    return build_encoder(cfg, torch.device("cpu"))


def test_model_is_imagebinds_own_with_vision_and_text_only(encoder):
    from imagebind.models.imagebind_model import ImageBindModel

    assert type(encoder.model) is ImageBindModel
    assert set(encoder.model.modality_trunks.keys()) == {"vision", "text"}
    assert encoder.image_dim == encoder.text_dim == TINY_ARCH["out_embed_dim"]
    assert len(encoder.checkpoint_sha256) == 64


def test_image_transform_matches_imagebind_data(encoder, tmp_path):
    from imagebind.data import load_and_transform_vision_data

    draw_image(tmp_path / "a.png", "red", "circle", size=300)
    Image.open(tmp_path / "a.png").resize((300, 180)).save(tmp_path / "wide.png")  # exercises resize + crop
    theirs = load_and_transform_vision_data([str(tmp_path / "wide.png")], "cpu")[0]
    ours = encoder.preprocess(Image.open(tmp_path / "wide.png").convert("RGB"))
    assert ours.shape == (3, 224, 224)
    assert torch.equal(ours, theirs)


def test_tokenizer_matches_imagebind_data(encoder):
    from imagebind.data import load_and_transform_text

    texts = ["what color is the shape?", "Is it SUNNY outside?"]
    assert torch.equal(encoder.tokenizer(texts), load_and_transform_text(texts, "cpu"))


def test_text_embeddings_are_renormalised(encoder):
    tokens = encoder.tokenizer(["is it red", "what shape is it?"])
    raw = encoder.model({"text": tokens})["text"]
    scale = encoder.model.modality_postprocessors["text"][1].log_logit_scale.exp()
    assert torch.allclose(raw.norm(dim=-1), scale.expand(2), rtol=1e-4)  # ImageBind's own output: scaled
    ours = encoder.embed_texts(["is it red", "what shape is it?"])
    assert torch.allclose(ours.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(ours, raw / raw.norm(dim=-1, keepdim=True), atol=1e-5)


def test_images_embed_to_unit_vectors_and_differ(encoder, tmp_path):
    draw_image(tmp_path / "1.png", "red", "circle")
    draw_image(tmp_path / "2.png", "blue", "triangle")
    batch = torch.stack([encoder.preprocess(Image.open(tmp_path / f"{i}.png").convert("RGB")) for i in (1, 2)])
    out = encoder.embed_images(batch)
    assert out.shape == (2, TINY_ARCH["out_embed_dim"]) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(out[0], out[1])
    assert torch.allclose(encoder.embed_images(batch[:1])[0], out[0], atol=1e-5)


def test_missing_checkpoint_says_where_to_put_it(tmp_path):
    cfg = EncoderConfig(name="imagebind_huge", checkpoint=str(tmp_path / "checkpoints/imagebind_huge.pth"))
    with pytest.raises(EncoderError) as err:
        build_encoder(cfg, torch.device("cpu"))
    message = str(err.value)
    assert "imagebind_huge.pth" in message and str(tmp_path / "checkpoints") in message
    assert "dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth" in message and "checkpoints/README.md" in message


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "other.pth"
    torch.save(build_model({**TINY_ARCH, "vision_embed_dim": 16}).state_dict(), path)
    cfg = EncoderConfig(name="imagebind_huge", checkpoint=str(path), architecture=TINY_ARCH)
    with pytest.raises(EncoderError, match="does not fit the configured ImageBind architecture"):
        build_encoder(cfg, torch.device("cpu"))


def test_unknown_architecture_key_is_refused(tiny_checkpoint):
    cfg = EncoderConfig(name="imagebind_huge", checkpoint=str(tiny_checkpoint), architecture={"vision_width": 3})
    with pytest.raises(EncoderError, match="encoder.architecture"):
        build_encoder(cfg, torch.device("cpu"))


def test_checkpoint_hash_is_cached_by_size_and_mtime(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"weights v1")
    assert sha256_cached(path) == hashlib.sha256(b"weights v1").hexdigest()
    sidecar = tmp_path / "w.pth.sha256"
    cached = json.loads(sidecar.read_text())
    assert cached["size"] == 10
    sidecar.write_text(json.dumps({**cached, "sha256": "f" * 64}))  # a cache hit returns the sidecar's value
    assert sha256_cached(path) == "f" * 64
    path.write_bytes(b"weights v2")
    os.utime(path, ns=(1, 1))  # new content, new mtime: the cache no longer applies
    assert sha256_cached(path) == hashlib.sha256(b"weights v2").hexdigest()


def test_the_towers_load_without_imagebinds_audio_and_video_stack():
    """imagebind/__init__.py imports imagebind.data (torchaudio, pytorchvideo, av); the vision and text towers do not
    need it, so the GPU check carries only imagebind-unofficial, ftfy and iopath (bench/gpu_check.py). (av itself is
    imported by torchvision.io whenever it is installed, and skipped when it is not.)"""
    import subprocess
    import sys

    code = ("import sys; from services.extract.imagebind import build_model; from extract_helpers import TINY_ARCH; "
            "build_model(TINY_ARCH); print(sorted(m for m in ('imagebind.data', 'torchaudio', 'pytorchvideo') "
            "if m in sys.modules))")
    here = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.abspath(os.path.join(here, "../../..")), here])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
