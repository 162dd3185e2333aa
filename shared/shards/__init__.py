"""Embedding shards (docs/CONTRACTS.md): atomic writes, done-markers, index.json, checked memory-mapped reads.

Layout: `embeddings/<encoder_id>/<split>/shard-{i:05d}-of-{n:05d}.safetensors`; shard i of n holds the dialogs
`shard_range(N, i, n)` in file order. A shard is complete only once `<shard>.done.json` {rows, bytes, sha256,
encoder_id, split, dtype, shard_index, num_shards, dims} exists and matches its size; `index.json` is built from the
markers when all n are complete. `dims` everywhere is `{"image": D_img, "text": D_txt, "rounds": R}`.
Writers may add header metadata beyond the contract's keys. Two have a meaning here: `source_rows` (dialogs in the
data file) and `dropped_image_ids` (JSON list of dialogs left out, e.g. for unreadable images) let build_index check
each shard's row count against `shard_range(source_rows, i, n)` less the drops; `source_rows`, `dataset` and
`config_hash`, when shard 0 has them, must be equal in every shard.

Writer (one extraction job per shard):
    clean_stale(out_dir, only=shard_name(i, n))     # leftovers of this shard's interrupted run
    if not is_complete(out_dir / shard_name(i, n)):
        write_shard(out_dir / shard_name(i, n), tensors, metadata)
    if not missing_shards(out_dir, n): build_index(out_dir)
Reader:
    shards = ShardSet(out_dir, encoder_id="cpu_default", dims={"image": 1280, "text": 384})
    rows = shards.rows_of(image_ids); images = shards.get("image", rows)

The public API is what this module exports; the underscore modules behind it are its implementation: `_format`
(names, ranges, validated atomic writes, markers), `_index` (index.json), `_reader` (ShardSet) and `_safetensors`
(deterministic writes and zero-copy memory-mapped reads of the file format). The command line that builds and checks
shard folders is the extract service's: `python -m services.extract finalize|verify --config <yaml> split=<split>`.
"""
from __future__ import annotations

from shared.files import sha256_file
from shared.shards._format import (CALLER_METADATA, FORMAT, INDEX_NAME, MARKER_SUFFIX, ShardError, clean_stale,
                                  is_complete, marker_path, missing_shards, read_marker, rebuild_hint, shard_name,
                                  shard_range, write_shard)
from shared.shards._index import build_index, load_index
from shared.shards._reader import ShardSet, ShardView
from shared.shards._safetensors import HeaderError, read_header

__all__ = ["CALLER_METADATA", "FORMAT", "INDEX_NAME", "MARKER_SUFFIX", "HeaderError", "ShardError", "ShardSet",
           "ShardView", "build_index", "clean_stale", "is_complete", "load_index", "marker_path", "missing_shards",
           "read_header", "read_marker", "rebuild_hint", "sha256_file", "shard_name", "shard_range", "write_shard"]

