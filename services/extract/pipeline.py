"""One split -> embedding shards: plan, embed images and distinct texts, assemble rows, write, then finalize.

Read top to bottom: `extract` (the default verb) -> `SplitJob.run_shard` per shard -> `verbs.finalize`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from services.extract import assemble
from services.extract.config import ExtractConfig
from services.extract.dataset import ImageItem
from services.extract.embed import configure_torch, embed_images, embed_strings
from services.extract.encoders import Encoder, build_encoder
from services.extract.failures import ExtractError, FailureLog, ImageFailure, too_many_error
from services.extract.shard_folder import finalize
from shared.config import ConfigError, load_config, save_config
from shared.images import ImageIndex
from shared.runlog import Progress
from shared.shards import (clean_stale, is_complete, read_header, sha256_file, shard_name, shard_range,
                           write_shard)
from shared.visdial import Dialog, VisDialSplit, load_visdial

log = logging.getLogger(__name__)
CODE_VERSION = "vdmem-extract/1"  # bump when the same inputs would give different shard bytes


@dataclass
class ShardStats:
    images: int = 0
    texts: int = 0
    rows: int = 0
    failures: int = 0


class SplitJob:
    """Everything one split's shards share: the data, the image files, the encoder (built on first use)."""

    def __init__(self, cfg: ExtractConfig) -> None:
        self.cfg = cfg
        self.out_dir = cfg.out_dir
        self.content_hash = cfg.content_hash()
        self.data: VisDialSplit = load_visdial(cfg.dataset_path)
        self.image_indexes = [ImageIndex.scan(folder) for folder in cfg.image_folders]
        self.rounds = self.data.num_rounds
        # decided per split, not per shard: every shard of a split must carry the same tensors
        self.with_round_images = any(r.image_id != d.image_id for d in self.data.dialogs for r in d.rounds)
        self.failure_log = FailureLog(self.out_dir)

    @cached_property
    def encoder(self) -> Encoder:
        device = configure_torch(self.cfg.num_threads, self.cfg.device)
        return build_encoder(self.cfg.encoder, device)

    @cached_property
    def dataset_sha256(self) -> str:
        return sha256_file(self.cfg.dataset_path)

    def shard_path(self, i: int) -> Path:
        return self.out_dir / shard_name(i, self.cfg.num_shards)

    def check_existing(self, i: int) -> bool:
        """True if shard i is complete and made with these settings; raise if it was made with others."""
        path = self.shard_path(i)
        if not is_complete(path):
            return False
        meta = read_header(path)[0]["__metadata__"]
        if meta.get("config_hash") != self.content_hash:
            raise ExtractError(
                f"{path}: made with other settings (config_hash {meta.get('config_hash')} != {self.content_hash} "
                f"now; compare {self.out_dir / 'config.yaml'}). Delete {self.out_dir} to re-extract, or set "
                "out_root to another folder"
            )
        return True

    def image_items(self, dialogs: list[Dialog]) -> list[ImageItem]:
        ids = list(dict.fromkeys(i for d in dialogs for i in d.image_ids()))
        return [ImageItem(i, self.image_file(i)) for i in ids]

    def image_file(self, image_id: int) -> Path | None:
        """The file of an id, or None (recorded as a failure: a missing file never becomes a vector)."""
        found = [index.path(image_id) for index in self.image_indexes if image_id in index]
        if len(found) > 1:
            raise ExtractError(f"image id {image_id} has files in several image folders ({found[0]}, {found[1]}); "
                               f"set data.image_dirs.{self.cfg.split} to the folders of this split only")
        return found[0] if found else None

    def run_shard(self, i: int) -> ShardStats:
        cfg, n = self.cfg, self.cfg.num_shards
        lo, hi = shard_range(len(self.data.dialogs), i, n)
        dialogs = list(self.data.dialogs[lo:hi])
        items = self.image_items(dialogs)
        enc = self.encoder
        with _progress(cfg.progress, len(items), f"{cfg.split} shard {i}/{n} images") as bar:
            image_table, ok, failures = embed_images(enc, items, cfg.image_batch_size, cfg.num_workers, bar)
        kept, dropped = self._apply_failures(i, dialogs, failures, lo)
        image_row = {item.image_id: k for k, item in enumerate(items) if ok[k]}
        texts = assemble.TextTable()
        lay = assemble.layout(kept, self.rounds, image_row, texts, self.with_round_images, cfg.texts)
        with _progress(cfg.progress, len(texts.strings), f"{cfg.split} shard {i}/{n} texts") as bar:
            text_table = embed_strings(enc, texts.strings, cfg.text_batch_size, bar)
        arrays = assemble.tensors(lay, image_table, text_table, cfg.dtype)
        write_shard(self.shard_path(i), arrays, self._metadata(i, dropped))
        return ShardStats(images=int(ok.sum()), texts=len(texts.strings), rows=len(kept), failures=len(failures))

    def _apply_failures(self, i: int, dialogs: list[Dialog], failures: list[ImageFailure],
                        first_row: int) -> tuple[list[Dialog], list[int]]:
        """Record failures; stop if there are too many, else drop every dialog that shows a failed image."""
        if not failures:
            return dialogs, []
        base = {"split": self.cfg.split, "shard_index": i, "num_shards": self.cfg.num_shards,
                "config_hash": self.content_hash}
        self.failure_log.append([{"kind": "image", "image_id": f.image_id, "path": f.path, "reason": f.reason, **base}
                                 for f in failures])
        if len(failures) > self.cfg.max_failures:  # stop before writing: nothing is dropped
            raise too_many_error(failures, self.cfg.max_failures, self.failure_log.path, str(self.shard_path(i)))
        bad = {f.image_id for f in failures}
        kept, dropped, records = [], [], []
        for k, dialog in enumerate(dialogs):
            shown_bad = [x for x in dialog.image_ids() if x in bad]
            if shown_bad:
                dropped.append(dialog.image_id)
                records.append({"kind": "dropped_dialog", "image_id": dialog.image_id, "dialog_index": first_row + k,
                                "failed_image_ids": shown_bad, **base})
            else:
                kept.append(dialog)
        self.failure_log.append(records)
        log.warning("%s: %d image(s) unreadable -> %d dialog(s) dropped (max_failures=%d); see %s",
                    self.shard_path(i), len(failures), len(dropped), self.cfg.max_failures, self.failure_log.path)
        return kept, dropped

    def _metadata(self, i: int, dropped: list[int]) -> dict:
        enc = self.encoder
        return {
            "encoder_id": enc.encoder_id, "checkpoint_sha256": enc.checkpoint_sha256,
            "image_dim": enc.image_dim, "text_dim": enc.text_dim, "dtype": self.cfg.dtype,
            "preprocessing": enc.preprocessing, "code_version": CODE_VERSION, "split": self.cfg.split,
            "shard_index": i, "num_shards": self.cfg.num_shards,
            # beyond the contract's keys: provenance and the drop record (see failures.py)
            "config_hash": self.content_hash,
            "dataset": f"{self.cfg.dataset_path.name} sha256:{self.dataset_sha256}",
            "dropped_image_ids": json.dumps(dropped),
            "source_rows": str(len(self.data.dialogs)),
        }


def _progress(style: str, total: int, desc: str) -> Progress | contextlib.nullcontext:
    if style == "none":
        return contextlib.nullcontext()
    return Progress(total, desc, tty={"auto": None, "bar": True, "lines": False}[style])


def save_split_config(cfg: ExtractConfig) -> None:
    """config.yaml beside the shards; refuse to mix shards of different settings in one folder."""
    path = cfg.out_dir / "config.yaml"
    if path.is_file():
        try:
            old = load_config(ExtractConfig, path)
        except ConfigError:
            old = None
        if old is not None and old.content_hash() == cfg.content_hash():
            return  # same shard settings; workers/progress may differ, keep the first job's file
        if any(p.name.endswith(".done.json") for p in cfg.out_dir.iterdir()):
            raise ExtractError(
                f"{cfg.out_dir} holds shards made with other settings (see {path}); delete that folder to "
                "re-extract, or set out_root to another folder"
            )
    # a private folder per process: parallel array jobs must not share save_config's temp file name
    private = cfg.out_dir / f".config-{os.getpid()}"
    save_config(cfg.split_level(), private).replace(path)
    private.rmdir()


def extract(cfg: ExtractConfig) -> list[ShardStats]:
    """Embed shard `cfg.shard_index`, or every missing shard and then build index.json."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    save_split_config(cfg)
    job = SplitJob(cfg)
    n = cfg.num_shards
    todo = [cfg.shard_index] if cfg.shard_index is not None else list(range(n))
    stats = []
    for i in todo:
        clean_stale(cfg.out_dir, only=shard_name(i, n))
        if job.check_existing(i):
            log.info("%s: complete, skipped", job.shard_path(i))
        else:
            stats.append(job.run_shard(i))
            log.info("%s: %d rows", job.shard_path(i), stats[-1].rows)
    if cfg.shard_index is None:
        finalize(cfg)
    return stats
