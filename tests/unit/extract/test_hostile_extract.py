"""Hostile inputs to extraction: bad data files, images, folders and shard folders, one line each, nothing lost.

Every case runs `python -m services.extract`'s main (the real CLI path) on a tiny split with the tiny ImageBind and
checks with tests/hostile.py: exit status, one `extract <verb>: error: ...; fix: ...` line naming the file or place,
no traceback, and (where outputs existed) that they did not change.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.extract.__main__ import main
from tests.hostile import check, on_small_disk, snapshot

from extract_helpers import REPO, make_split, tiny_overrides

CFG = "configs/extract/cpu_default.yaml"


@pytest.fixture
def split(tmp_path) -> Path:
    make_split(tmp_path / "data", "train", dialogs=4, rounds=2)
    return tmp_path


def args(tmp_path: Path, checkpoint: Path, *extra: str, **overrides) -> list[str]:
    return ["--config", CFG, *tiny_overrides(tmp_path, checkpoint, **overrides), *extra]


def shard_dir(tmp_path: Path) -> Path:
    return tmp_path / "emb" / "imagebind_tiny" / "train"


def test_missing_data_file(capsys, tmp_path, tiny_checkpoint):
    check(capsys, main, args(tmp_path, tiny_checkpoint), "extract extract", "train.json")


@pytest.mark.parametrize(("content", "mentions"), [
    ("not json at all", ["train.json"]),
    ('{"version": "1.0", "split": "train"}', ["train.json", "data"]),
    ('{"version": "1.0", "split": "train", "data": {"questions": [], "answers": [], "dialogs": [7]}}',
     ["train.json", "data.dialogs[0]"]),
])
def test_malformed_data_files(capsys, tmp_path, tiny_checkpoint, content, mentions):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.json").write_text(content)
    check(capsys, main, args(tmp_path, tiny_checkpoint), "extract extract", *mentions)


def test_gt_index_out_of_range_names_the_json_path(capsys, split, tiny_checkpoint):
    path = split / "data" / "train.json"
    data = json.loads(path.read_text())
    data["data"]["dialogs"][1]["dialog"][0]["gt_index"] = 117
    path.write_text(json.dumps(data))
    check(capsys, main, args(split, tiny_checkpoint), "extract extract", "data.dialogs[1].dialog[0].gt_index")


def test_missing_image_folder(capsys, split, tiny_checkpoint):
    check(capsys, main, args(split, tiny_checkpoint, f"data.image_root={split / 'pictures'}"), "extract extract",
          "pictures")


def test_a_missing_image_names_its_id(capsys, split, tiny_checkpoint):
    (split / "data" / "images" / "3.png").unlink()
    check(capsys, main, args(split, tiny_checkpoint), "extract extract", "image 3", "max_failures=1")


def test_an_unreadable_image_stops_the_run_with_the_summary(capsys, split, tiny_checkpoint):
    (split / "data" / "images" / "2.png").write_bytes(b"")
    check(capsys, main, args(split, tiny_checkpoint), "extract extract", "could not be read", "image 2")


def test_a_symlink_loop_among_images(capsys, split, tiny_checkpoint):
    images = split / "data" / "images"
    (images / "4.png").unlink()
    os.symlink(images / "9001.png", images / "4.png")
    os.symlink(images / "4.png", images / "9001.png")
    (images / "loop").symlink_to(images)  # a folder loop too: the scan walks each real folder once
    check(capsys, main, args(split, tiny_checkpoint), "extract extract", "4.png", "symbolic")


def test_shard_index_out_of_range(capsys, split, tiny_checkpoint):
    check(capsys, main, args(split, tiny_checkpoint, "num_shards=2", "shard_index=2"), "extract extract",
          "shard_index=2 is outside 0..1")


@pytest.mark.parametrize(("override", "mentions"), [
    ("num_workers=-1", ["num_workers=-1"]),
    ("dtype=bfloat16", ["'bfloat16' is not one of"]),
    ("num_threads=0", ["num_threads=0: must be >= 1"]),
    ("encoder.name=clip", ["'clip' is not one of"]),
    ("image_batch_size=0", ["image_batch_size=0"]),
])
def test_bad_settings_fail_at_load(capsys, split, tiny_checkpoint, override, mentions):
    check(capsys, main, args(split, tiny_checkpoint, override), "extract extract", *mentions)
    assert not (split / "emb").exists()  # nothing written


def test_other_settings_on_existing_shards_are_refused(capsys, split, tiny_checkpoint):
    assert main(args(split, tiny_checkpoint)) == 0
    capsys.readouterr()
    before = snapshot(shard_dir(split))
    check(capsys, main, args(split, tiny_checkpoint, "dtype=float32"), "extract extract")
    assert snapshot(shard_dir(split)) == before


def test_finalize_with_shards_missing(capsys, split, tiny_checkpoint):
    assert main(args(split, tiny_checkpoint, "num_shards=2", "shard_index=0")) == 0
    capsys.readouterr()
    check(capsys, main, ["finalize", *args(split, tiny_checkpoint, "num_shards=2")], "extract finalize",
          "shard_index 1")


@pytest.mark.parametrize("damage", ["index_rows", "index_dims", "garbage_with_marker", "flipped_byte"])
def test_verify_checks_what_readers_check(capsys, split, tiny_checkpoint, damage):
    assert main(args(split, tiny_checkpoint)) == 0
    folder = shard_dir(split)
    shard = folder / "shard-00000-of-00001.safetensors"
    index = json.loads((folder / "index.json").read_text())
    if damage == "index_rows":
        index["total_rows"] += 3
        index["shards"][0]["rows"] += 3
        (folder / "index.json").write_text(json.dumps(index))
    elif damage == "index_dims":
        index["dims"]["image"] = 999
        (folder / "index.json").write_text(json.dumps(index))
    elif damage == "garbage_with_marker":  # not safetensors at all, with a marker and index that agree with it
        from shared.files import sha256_file

        shard.write_bytes(os.urandom(shard.stat().st_size))
        marker = Path(str(shard) + ".done.json")
        record = json.loads(marker.read_text()) | {"sha256": sha256_file(shard)}
        marker.write_text(json.dumps(record))
        index["shards"][0]["sha256"] = record["sha256"]
        (folder / "index.json").write_text(json.dumps(index))
    else:
        data = bytearray(shard.read_bytes())
        data[-1] ^= 0xFF
        shard.write_bytes(bytes(data))
    capsys.readouterr()
    code = main(["verify", *args(split, tiny_checkpoint)])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert str(folder) in out and "fix: " in err and "Traceback" not in err


@pytest.mark.slow  # a fresh process of the service
def test_a_full_disk_leaves_no_half_shard(tmp_path, tiny_checkpoint):
    make_split(tmp_path / "data", "train", dialogs=60, rounds=3)
    on_small_disk("extract", ["-m", "services.extract", *args(tmp_path, tiny_checkpoint)], tmp_path / "emb",
                  "extract extract", size="8k")


@pytest.mark.slow  # a fresh process of the service
def test_a_read_only_output_folder(split, tiny_checkpoint):
    on_small_disk("extract", ["-m", "services.extract", *args(split, tiny_checkpoint)], split / "emb",
                  "extract extract", read_only=True)


@pytest.mark.slow
def test_dataloader_workers_do_not_outlive_a_killed_extraction(tmp_path, tiny_checkpoint):
    make_split(tmp_path / "data", "train", dialogs=40, rounds=2)
    proc = subprocess.Popen([sys.executable, "-m", "services.extract",
                             *args(tmp_path, tiny_checkpoint, num_workers=2, image_batch_size=2)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while not workers and time.monotonic() < deadline and proc.poll() is None:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        workers = [int(p) for p in children.read_text().split()] if children.exists() else []
        time.sleep(0.05)
    assert workers, "the extraction never started its DataLoader workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [w for w in workers if Path(f"/proc/{w}").exists()
                 and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]]
        time.sleep(0.1)
    assert not alive, f"workers {alive} outlived the killed extraction"
