"""SIGKILL at three points, rerun: the result is byte-identical to an uninterrupted run (separate processes)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.shards import ShardSet
from shared.visdial import load_visdial

from extract_helpers import REPO, make_split, tiny_overrides

pytestmark = pytest.mark.slow  # 8 fresh Python processes that each import torch


FAULTS = Path(__file__).with_name("faults.py")  # runs the extraction and SIGKILLs it at the named point


def _run(tmp_path, checkpoint, out, kill=None, workers=0):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    overrides = tiny_overrides(tmp_path, checkpoint, out_root=out, num_shards=3, image_batch_size=2,
                               num_workers=workers)
    launcher = [str(FAULTS), kill] if kill else ["-m", "services.extract"]
    return subprocess.run([sys.executable, *launcher, "--config", "configs/extract/cpu_default.yaml", *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _fingerprint(split_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(split_dir.iterdir())
            if p.name.startswith("shard-") or p.name == "index.json"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("resume")
    make_split(tmp / "data", "train", dialogs=9, rounds=3, per_round_images=True)
    done = _run(tmp, tiny_checkpoint, tmp / "reference")
    assert done.returncode == 0, done.stderr
    return tmp, tiny_checkpoint, _fingerprint(tmp / "reference/imagebind_tiny/train")


def test_identical_inputs_give_identical_bytes(setup):
    tmp, checkpoint, reference = setup
    again = _run(tmp, checkpoint, tmp / "again", workers=2)  # worker count is not part of the result
    assert again.returncode == 0, again.stderr
    assert _fingerprint(tmp / "again/imagebind_tiny/train") == reference
    assert len(reference) == 7  # 3 shards + 3 markers + index.json


@pytest.mark.parametrize("point, workers", [("image_batch", 2), ("before_rename", 0), ("after_shard:0", 0)])
def test_killed_run_resumes_to_the_same_bytes(setup, point, workers):
    tmp, checkpoint, reference = setup
    out = tmp / point.replace(":", "_")
    split_dir = out / "imagebind_tiny/train"
    killed = _run(tmp, checkpoint, out, kill=point, workers=workers)
    assert killed.returncode == -9, killed.stderr  # it really died by SIGKILL at that point
    names = {p.name for p in split_dir.iterdir()}
    assert "index.json" not in names
    if point == "image_batch":
        assert not any(n.startswith("shard-") for n in names)
    elif point == "before_rename":
        assert any(".tmp-" in n for n in names) and "shard-00000-of-00003.safetensors" not in names
    else:
        assert "shard-00000-of-00003.safetensors.done.json" in names
        assert "shard-00001-of-00003.safetensors" not in names
        first = (split_dir / "shard-00000-of-00003.safetensors").stat().st_mtime_ns
    resumed = _run(tmp, checkpoint, out)
    assert resumed.returncode == 0, resumed.stderr
    assert _fingerprint(split_dir) == reference  # index.json and every shard's bytes (so sha256) equal
    assert not [p for p in split_dir.iterdir() if ".tmp-" in p.name]  # stale temp files removed
    if point.startswith("after_shard"):
        assert (split_dir / "shard-00000-of-00003.safetensors").stat().st_mtime_ns == first  # kept, not redone
    shards = ShardSet(split_dir, verify=True)
    expected = [d.image_id for d in load_visdial(tmp / "data/train.json").dialogs]
    assert shards.image_ids.tolist() == expected  # none missing, none twice
    index = json.loads((split_dir / "index.json").read_text())
    assert [e["rows"] for e in index["shards"]] == [3, 3, 3]
    assert np.isfinite(shards.get("image", np.arange(9)).astype(np.float32)).all()
