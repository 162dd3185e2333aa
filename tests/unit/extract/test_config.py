"""The shipped extract YAMLs load, open with their launch command, and bad settings fail with the fix."""
from pathlib import Path

import pytest

from services.extract.config import ExtractConfig
from services.extract.verbs import DEFAULT_VERB, VERBS
from shared.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs/extract").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads_and_states_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python -m services.extract ") and f"--config configs/extract/{path.name}" in first
    words = [w for w in first.split()[4:] if not w.startswith("--") and "=" not in w and not w.endswith(".yaml")]
    cfg = load_config(VERBS[words[0] if words else DEFAULT_VERB].config, path)
    assert cfg.encoder.name in ("cpu_default", "imagebind_huge")


def test_both_encoders_are_shipped():
    assert {p.stem for p in CONFIGS} >= {"cpu_default", "imagebind_huge"}


def test_shard_index_outside_range_names_the_fix():
    with pytest.raises(ConfigError, match=r"shard_index=8 is outside 0\.\.7"):
        load_config(ExtractConfig, None, ["num_shards=8", "shard_index=8"])


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid keys.*image_batch_size"):
        load_config(ExtractConfig, None, ["image_batchsize=3"])


def test_paths_follow_the_split_and_encoder():
    cfg = load_config(ExtractConfig, None, ["split=val", "encoder.name=imagebind_huge", "out_root=/x"])
    assert cfg.dataset_path == Path("data/demo/val.json")
    assert cfg.out_dir == Path("/x/imagebind_huge/val")
    cfg = load_config(ExtractConfig, None, ["split=train", "data.image_root=r", "data.image_dirs={train: [a, b]}"])
    assert cfg.image_folders == [Path("r/a"), Path("r/b")]


def test_content_hash_ignores_knobs_that_do_not_change_bytes():
    base = load_config(ExtractConfig, None, [])
    same = load_config(ExtractConfig, None, ["num_workers=7", "progress=lines", "max_failures=3", "out_root=/y",
                                             "num_shards=1", "shard_index=0"])
    other = load_config(ExtractConfig, None, ["dtype=float32"])
    assert base.content_hash() == same.content_hash() != other.content_hash()
