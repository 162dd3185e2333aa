"""Config dataclasses of the extract service (no torch here: any environment can validate the YAMLs).

One `ExtractConfig` serves the three verbs: the default (embed one shard, or every shard then finalize),
`finalize` (build index.json once every shard is complete) and `verify` (re-hash every shard).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shared.config import ConfigError, config_hash
from shared.settings import DeviceSettings


@dataclass
class DataConfig:
    dataset: str = "data/demo/{split}.json"  # VisDial-format JSON; `{split}` is replaced by the split name
    image_root: str = "data/demo/images"  # folder scanned (recursively) by shared.images.ImageIndex
    # per split, the subfolders of image_root to scan instead of all of it: COCO and VisualDialog ids overlap,
    # e.g. {train: [train2014, val2014], val: [VisualDialog_val2018], test: [VisualDialog_test2018]}
    image_dirs: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class EncoderConfig:
    name: Literal["cpu_default", "imagebind_huge"] = "cpu_default"  # which encoder pair embeds images and texts
    id: str = ""  # folder name under out_root and `encoder_id` in the shards; "" = name
    checkpoint: str = "checkpoints/imagebind_huge.pth"  # imagebind_huge only: weights (checkpoints/README.md)
    image_size: int = 128  # cpu_default only: input side in pixels (128 is plenty for 64x64 demo images)
    architecture: dict[str, Any] = field(default_factory=dict)  # imagebind_huge only: ImageBindModel kwargs to override
    text_max_tokens: int = 128  # cpu_default only: MiniLM truncation length

    @property
    def encoder_id(self) -> str:
        return self.id or self.name


@dataclass
class TextsConfig:
    answers: bool = True  # embed every round's answer (tensor `answer`)
    captions: bool = True  # embed every dialog's caption (tensor `caption`)


@dataclass
class ExtractConfig(DeviceSettings):
    """Embeddings of one split (one shard of it with shard_index) into <out_root>/<encoder id>/<split>/."""

    split: str = "train"  # which split of data.dataset to embed
    data: DataConfig = field(default_factory=DataConfig)
    out_root: str = "embeddings"  # shards go to <out_root>/<encoder id>/<split>/
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    texts: TextsConfig = field(default_factory=TextsConfig)
    image_batch_size: int = 64  # images per forward pass
    text_batch_size: int = 256  # distinct strings per forward pass
    num_workers: int = 2  # DataLoader processes decoding + resizing images (0 = in the main process)
    dtype: Literal["float16", "float32"] = "float16"  # stored dtype of every embedding tensor
    max_failures: int = 0  # unreadable images tolerated per shard; their dialogs are dropped, never zero-filled
    num_shards: int = 1  # the split's dialogs are cut into this many shards (shared.shards.shard_range)
    shard_index: int | None = None  # embed only this shard; None = every missing shard, then finalize
    progress: Literal["auto", "bar", "lines", "none"] = "auto"  # auto = a bar on a terminal, ETA lines otherwise

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_shards < 1:
            raise ConfigError(f"num_shards={self.num_shards}: must be >= 1")
        if self.shard_index is not None and not 0 <= self.shard_index < self.num_shards:
            raise ConfigError(
                f"shard_index={self.shard_index} is outside 0..{self.num_shards - 1}; "
                f"pass shard_index=0..{self.num_shards - 1} or omit it to embed every shard"
            )
        for name in ("image_batch_size", "text_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.num_workers < 0 or self.max_failures < 0:
            raise ConfigError(f"num_workers={self.num_workers}, max_failures={self.max_failures}",
                              fix="give both >= 0")
        if "{split}" not in self.data.dataset and not self.data.dataset.endswith(".json"):
            raise ConfigError(f"data.dataset={self.data.dataset!r}: give a .json path, e.g. data/demo/{{split}}.json")

    @property
    def dataset_path(self) -> Path:
        return Path(self.data.dataset.format(split=self.split))

    @property
    def image_folders(self) -> list[Path]:
        root = Path(self.data.image_root)
        return [root / sub for sub in self.data.image_dirs.get(self.split, [])] or [root]

    @property
    def out_dir(self) -> Path:
        return Path(self.out_root) / self.encoder.encoder_id / self.split

    def split_level(self) -> "ExtractConfig":
        """This config with the per-job knobs reset: every shard job of one split saves the same config.yaml."""
        return dataclasses.replace(self, shard_index=None)

    def content_hash(self) -> str:
        """Hash of the settings that decide the shards' bytes; a resumed run must match it.

        Worker count, progress style, failure budget and the output folder do not change a shard, so a user may
        resume with other values of them.
        """
        neutral = dataclasses.replace(
            self, shard_index=None, num_workers=0, progress="auto", max_failures=0, out_root=""
        )
        return config_hash(neutral)

