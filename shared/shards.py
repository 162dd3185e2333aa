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

Command line:
    python -m shared.shards index <dir>      # build index.json once every shard is done
    python -m shared.shards verify <dir>     # open with sha256 checks and print a summary

The implementation lives in shard_format.py (writing), shard_index.py (index.json) and shard_reader.py (ShardSet),
only to keep each file short; import everything from here.
"""
from __future__ import annotations

import sys

from shared.safetensors_io import sha256_file
from shared.shard_format import (CALLER_METADATA, FORMAT, INDEX_NAME, MARKER_SUFFIX, ShardError, clean_stale,
                                 is_complete, marker_path, missing_shards, read_marker, rebuild_hint, shard_name,
                                 shard_range, write_shard)
from shared.shard_index import build_index, load_index
from shared.shard_reader import ShardSet, ShardView

__all__ = ["CALLER_METADATA", "FORMAT", "INDEX_NAME", "MARKER_SUFFIX", "ShardError", "ShardSet", "ShardView",
           "build_index", "clean_stale", "is_complete", "load_index", "marker_path", "missing_shards", "read_marker",
           "rebuild_hint", "sha256_file", "shard_name", "shard_range", "write_shard"]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("index", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "index":
            index = build_index(argv[1])
            print(f"{argv[1]}/{INDEX_NAME}: {index['num_shards']} shards, {index['total_rows']} rows, "
                  f"dims {index['dims']}")
        else:
            shards = ShardSet(argv[1], verify=True)
            print(f"{argv[1]}: {len(shards)} rows, dims {shards.dims}, tensors {list(shards.tensor_names)}: OK")
    except ValueError as e:  # ShardError; ValueError so that `python -m` (a second module copy) still catches it
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
