"""Broken image files are recorded in failures.jsonl, never embedded as zeros; dialogs showing them are dropped."""
import json

import numpy as np
import pytest

from services.extract import pipeline
from services.extract.__main__ import main as cli
from services.extract.failures import ExtractError
from shared.shards._safetensors import read_header
from shared.shards import ShardSet

from extract_helpers import make_split, tiny_config, tiny_overrides

BROKEN = {2: "file not found", 3: "empty file", 4: "truncated", 5: "not an image"}


def _break_images(images):
    (images / "2.png").unlink()
    (images / "3.png").write_bytes(b"")
    data = (images / "4.png").read_bytes()
    (images / "4.png").write_bytes(data[: len(data) // 2])
    (images / "5.png").write_text("<html>this was a download error page</html>")


@pytest.fixture
def broken(tmp_path):
    make_split(tmp_path / "data", "train", dialogs=7, rounds=3)
    _break_images(tmp_path / "data/images")
    return tmp_path


def _records(cfg):
    path = cfg.out_dir / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_too_many_failures_stop_the_run_with_a_summary(broken, tiny_checkpoint):
    cfg = tiny_config(broken, tiny_checkpoint, split="train")
    with pytest.raises(ExtractError) as err:
        pipeline.extract(cfg)
    message = str(err.value)
    assert "4 image(s) could not be read (max_failures=0)" in message and "failures.jsonl" in message
    assert "max_failures=4" in message  # the way out is named
    records = _records(cfg)
    assert {r["image_id"]: r["kind"] for r in records} == {i: "image" for i in BROKEN}
    for r in records:
        assert BROKEN[r["image_id"]] in r["reason"] and r["split"] == "train"
    assert records[0]["path"] == "" and records[1]["path"].endswith("3.png")
    assert not list(cfg.out_dir.glob("shard-*"))  # nothing half-made is left as a shard
    with pytest.raises(ExtractError):
        pipeline.extract(cfg)
    assert len(_records(cfg)) == 4  # a rerun does not repeat the records


def test_allowed_failures_drop_the_dialogs_not_fill_them(broken, tiny_checkpoint):
    cfg = tiny_config(broken, tiny_checkpoint, split="train", max_failures=4)
    pipeline.extract(cfg)
    shards = ShardSet(cfg.out_dir, verify=True)
    assert shards.image_ids.tolist() == [1, 6, 7]
    meta = read_header(cfg.out_dir / "shard-00000-of-00001.safetensors")[0]["__metadata__"]
    assert json.loads(meta["dropped_image_ids"]) == [2, 3, 4, 5]
    image = shards.get("image", np.arange(3)).astype(np.float32)
    assert np.isfinite(image).all() and (np.abs(image).sum(axis=1) > 0).all()
    dropped = [r for r in _records(cfg) if r["kind"] == "dropped_dialog"]
    assert [(r["image_id"], r["failed_image_ids"], r["dialog_index"]) for r in dropped] == \
        [(2, [2], 1), (3, [3], 2), (4, [4], 3), (5, [5], 4)]


def test_a_broken_round_image_drops_its_dialog(tmp_path, tiny_checkpoint):
    make_split(tmp_path / "data", "train", dialogs=3, rounds=3, per_round_images=True)
    (tmp_path / "data/images/1001.png").write_bytes(b"")  # shown in round 2 of the first dialog (image 1)
    cfg = tiny_config(tmp_path, tiny_checkpoint, split="train", max_failures=1)
    pipeline.extract(cfg)
    assert ShardSet(cfg.out_dir).image_ids.tolist() == [2, 3]
    dropped = [r for r in _records(cfg) if r["kind"] == "dropped_dialog"]
    assert len(dropped) == 1 and dropped[0]["failed_image_ids"] == [1001]


def test_cli_exits_nonzero_with_the_summary(broken, tiny_checkpoint, capsys):
    args = ["--config", "configs/extract/cpu_default.yaml", *tiny_overrides(broken, tiny_checkpoint)]
    assert cli(args) == 2  # bad input: one line naming what failed
    err = capsys.readouterr().err
    assert "4 image(s) could not be read" in err and "image 3:" in err and "Traceback" not in err


def test_dropped_dialogs_in_one_of_several_shards_still_finalize(broken, tiny_checkpoint):
    cfg = tiny_config(broken, tiny_checkpoint, split="train", max_failures=4, num_shards=3)
    pipeline.extract(cfg)  # shard 0 (dialogs 1-2) drops one, shard 1 (3-4) drops both, shard 2 (5-7) drops one
    shards = ShardSet(cfg.out_dir, verify=True)
    assert shards.image_ids.tolist() == [1, 6, 7]
    assert [e["rows"] for e in shards.index["shards"]] == [1, 0, 2]
