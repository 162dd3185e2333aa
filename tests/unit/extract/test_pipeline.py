"""End to end with the real ImageBind classes built tiny: a valid shard set whose rows are the data's rows."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from services.extract import pipeline, shard_folder
from services.extract.__main__ import main as cli
from services.extract.config import ExtractConfig
from services.extract.encoders import build_encoder
from services.extract.failures import ExtractError
from shared.config import load_config
from shared.shards import ShardSet
from shared.visdial import load_visdial

from extract_helpers import make_split, tiny_config, tiny_overrides

FP16 = dict(rtol=2e-3, atol=2e-3)  # float16 storage of float32 unit-norm vectors


def _direct(cfg, split):
    """What the rows must hold, computed one item at a time with the same encoder."""
    enc = build_encoder(cfg.encoder, torch.device("cpu"))
    root = cfg.image_folders[0]
    image = {}
    for d in split.dialogs:
        for i in d.image_ids():
            image[i] = enc.embed_images(enc.preprocess(Image.open(root / f"{i}.png").convert("RGB"))[None])[0].numpy()
    return enc, image, lambda text: enc.embed_texts([text])[0].numpy()


@pytest.mark.parametrize("per_round_images", [False, True], ids=["single-image", "multi-image"])
def test_rows_hold_the_embeddings_of_their_dialog(tmp_path, tiny_checkpoint, per_round_images):
    make_split(tmp_path / "data", "val", dialogs=5, rounds=3, per_round_images=per_round_images)
    cfg = tiny_config(tmp_path, tiny_checkpoint, split="val")
    pipeline.extract(cfg)
    shards = ShardSet(cfg.out_dir, encoder_id="imagebind_tiny", dims={"image": 24, "text": 24, "rounds": 3},
                      verify=True)
    split = load_visdial(cfg.dataset_path)
    assert shards.image_ids.tolist() == [d.image_id for d in split.dialogs]
    assert ("round_image" in shards.tensor_names) == per_round_images
    _, image, text = _direct(cfg, split)
    rows = np.arange(len(split.dialogs))
    got = {name: shards.get(name, rows) for name in shards.tensor_names}
    assert got["question"].dtype == np.float16
    for d, dialog in enumerate(split.dialogs):
        assert got["num_rounds"][d] == dialog.num_rounds
        np.testing.assert_allclose(got["image"][d], image[dialog.image_id], **FP16)
        np.testing.assert_allclose(got["caption"][d], text(dialog.caption), **FP16)
        for r, rnd in enumerate(dialog.rounds):
            np.testing.assert_allclose(got["question"][d, r], text(rnd.question), **FP16)
            np.testing.assert_allclose(got["answer"][d, r], text(rnd.answer), **FP16)
            if per_round_images:
                np.testing.assert_allclose(got["round_image"][d, r], image[rnd.image_id], **FP16)
        assert not got["question"][d, dialog.num_rounds:].any()  # padding past num_rounds only
    saved = load_config(ExtractConfig, cfg.out_dir / "config.yaml")
    assert saved.content_hash() == cfg.content_hash() and saved.shard_index is None
    assert shards.metadata["config_hash"] == cfg.content_hash()


def test_test_split_open_round_and_text_switches(tmp_path, tiny_checkpoint):
    make_split(tmp_path / "data", "test", dialogs=4, rounds=3, test_style=True)
    cfg = tiny_config(tmp_path, tiny_checkpoint, split="test", texts__captions="false")
    pipeline.extract(cfg)
    shards = ShardSet(cfg.out_dir)
    assert "caption" not in shards.tensor_names and "answer" in shards.tensor_names
    answer, num_rounds = shards.get("answer", [0, 1]), shards.get("num_rounds", [0, 1])
    for d in range(2):
        last = num_rounds[d] - 1
        assert not answer[d, last].any() and answer[d, :last].any()  # the open round has no answer to embed
    cfg2 = tiny_config(tmp_path, tiny_checkpoint, split="test", texts__answers="false", out_root=tmp_path / "e2")
    pipeline.extract(cfg2)
    assert set(ShardSet(cfg2.out_dir).tensor_names) == {"image_ids", "num_rounds", "image", "question", "caption"}


def test_each_distinct_string_is_encoded_once(tmp_path, tiny_checkpoint, monkeypatch):
    make_split(tmp_path / "data", "train", dialogs=9, rounds=3)
    cfg = tiny_config(tmp_path, tiny_checkpoint, split="train")
    seen = []
    job = pipeline.SplitJob(cfg)
    original = job.encoder.embed_texts
    monkeypatch.setattr(job.encoder, "embed_texts", lambda texts: seen.extend(texts) or original(texts))
    job.run_shard(0)
    split = load_visdial(cfg.dataset_path)
    every = [t for d in split.dialogs for r in d.rounds for t in (r.question, r.answer)] + [d.caption for d in split]
    assert sorted(seen) == sorted(set(every)) and len(seen) < len(every)
    assert max(len(seen[i:i + cfg.text_batch_size]) for i in range(0, len(seen), cfg.text_batch_size)) > 1


def test_four_shards_then_finalize_equal_one_run(tmp_path, tiny_checkpoint):
    make_split(tmp_path / "data", "train", dialogs=10, rounds=3, per_round_images=True)
    whole = tiny_config(tmp_path, tiny_checkpoint, split="train", out_root=tmp_path / "whole")
    pipeline.extract(whole)
    for i in range(4):
        pipeline.extract(tiny_config(tmp_path, tiny_checkpoint, split="train", num_shards=4, shard_index=i,
                                     out_root=tmp_path / "parts"))
    parts_cfg = tiny_config(tmp_path, tiny_checkpoint, split="train", num_shards=4, out_root=tmp_path / "parts")
    assert not (parts_cfg.out_dir / "index.json").exists()  # single-shard jobs never finalize on their own
    shard_folder.finalize(parts_cfg)
    a, b = ShardSet(whole.out_dir, verify=True), ShardSet(parts_cfg.out_dir, verify=True)
    assert b.index["num_shards"] == 4 and len(a) == len(b) == 10
    assert a.tensor_names == b.tensor_names
    rows = np.arange(10)
    assert np.array_equal(a.image_ids, b.image_ids)
    for name in a.tensor_names:
        np.testing.assert_allclose(a.get(name, rows).astype(np.float32), b.get(name, rows).astype(np.float32),
                                   rtol=1e-3, atol=1e-3, err_msg=name)


def test_complete_shards_are_skipped_and_other_settings_refused(tmp_path, tiny_checkpoint):
    make_split(tmp_path / "data", "train", dialogs=4)
    cfg = tiny_config(tmp_path, tiny_checkpoint, split="train", num_shards=2)
    pipeline.extract(cfg)
    shard = cfg.out_dir / "shard-00001-of-00002.safetensors"
    before = shard.stat().st_mtime_ns
    assert pipeline.extract(cfg) == []  # nothing left to embed
    assert shard.stat().st_mtime_ns == before
    with pytest.raises(ExtractError, match="other settings"):
        pipeline.extract(tiny_config(tmp_path, tiny_checkpoint, split="train", num_shards=2, dtype="float32"))


def test_finalize_lists_missing_shards(tmp_path, tiny_checkpoint):
    make_split(tmp_path / "data", "train", dialogs=6)
    pipeline.extract(tiny_config(tmp_path, tiny_checkpoint, split="train", num_shards=3, shard_index=1))
    with pytest.raises(ExtractError, match=r"2 of 3 shards are not complete \(shard_index 0, 2\)"):
        shard_folder.finalize(tiny_config(tmp_path, tiny_checkpoint, split="train", num_shards=3))


def test_cli_verify_prints_a_table_and_catches_corruption(tmp_path, tiny_checkpoint, capsys):
    make_split(tmp_path / "data", "train", dialogs=4)
    args = ["--config", "configs/extract/cpu_default.yaml", *tiny_overrides(tmp_path, tiny_checkpoint), "num_shards=2"]
    assert cli(args) == 0
    assert "extract: 2 shard(s) embedded, 4 rows" in capsys.readouterr().out
    assert cli(["verify", *args]) == 0
    table = capsys.readouterr().out
    assert table.count(" ok") == 2 and "shard-00001-of-00002.safetensors" in table
    shard = tmp_path / "emb/imagebind_tiny/train/shard-00001-of-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert cli(["verify", *args]) == 1
    assert "BAD SHA256" in capsys.readouterr().out
    assert cli(["finalize", *args]) == 0  # markers still match sizes; only verify re-hashes
    assert json.loads((shard.parent / "index.json").read_text())["total_rows"] == 4


def test_cli_rejects_unknown_verb(capsys):
    assert cli(["embed-all", "--config", "configs/extract/cpu_default.yaml"]) == 2
    assert capsys.readouterr().err.strip() == (
        "extract: error: unknown verb 'embed-all'; fix: choose one of extract, finalize, verify "
        "(`python -m services.extract --help` lists them)")
