"""The verbs that look at a split's shard folder: `finalize` (index.json) and `verify` (re-hash), plus the summary
line of an extraction run (`run_extract`)."""
from __future__ import annotations

import sys
import time

from services.extract.config import ExtractConfig
from services.extract.failures import ExtractError
from shared.shards import (ShardError, ShardSet, build_index, missing_shards, read_marker, sha256_file,
                           shard_name)


def finalize(cfg: ExtractConfig) -> dict:
    """index.json for the split, once every shard is complete (else an error listing the missing ones)."""
    missing = missing_shards(cfg.out_dir, cfg.num_shards)
    if missing:
        names = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ExtractError(
            f"{cfg.out_dir}: {len(missing)} of {cfg.num_shards} shards are not complete (shard_index {names}); run "
            f"`python -m services.extract --config <yaml> split={cfg.split} num_shards={cfg.num_shards} "
            "shard_index=<i>` for each (or without shard_index to run them all), then finalize again"
        )
    return build_index(cfg.out_dir)


def verify(cfg: ExtractConfig) -> tuple[list[tuple[str, int, str]], bool]:
    """Re-hash every shard against its marker, then open the folder as every reader does (index.json, headers,
    rows, dims, encoder). Returns ([(file, rows, status)], all ok)."""
    rows, ok = [], True
    for i in range(cfg.num_shards):
        path = cfg.out_dir / shard_name(i, cfg.num_shards)
        marker = read_marker(path)
        if marker is None or not path.is_file():
            status = "MISSING" if not path.is_file() else "INCOMPLETE (no done-marker)"
        elif path.stat().st_size != marker["bytes"]:
            status = f"BAD SIZE ({path.stat().st_size} != {marker['bytes']})"
        else:
            status = "ok" if sha256_file(path) == marker["sha256"] else "BAD SHA256"
        ok &= status == "ok"
        rows.append((path.name, int(marker["rows"]) if marker else 0, status))
    if ok:  # what a reader checks beyond the bytes: the index against the shards, every header
        try:
            ShardSet(cfg.out_dir, encoder_id=cfg.encoder.encoder_id, verify="never")
        except ShardError as e:
            rows.append(("(as a reader opens it)", 0, f"REFUSED: {' '.join(str(e).split())}"))
            ok = False
    return rows, ok


def summary_line(stats: list, seconds: float) -> str:
    """The run's last line: items (images + distinct strings), seconds, items/s, failures (stats: ShardStats)."""
    items = sum(s.images + s.texts for s in stats)
    rate = items / seconds if seconds > 0 else 0.0
    return (f"extract: {len(stats)} shard(s) embedded, {sum(s.rows for s in stats)} rows, {items} items "
            f"({sum(s.images for s in stats)} images + {sum(s.texts for s in stats)} distinct texts) in "
            f"{seconds:.1f} s = {rate:.1f} items/s, {sum(s.failures for s in stats)} failures")


def run_extract(cfg: ExtractConfig) -> None:
    """The default verb: embed shard `shard_index`, or every missing shard and then index.json."""
    from services.extract import pipeline  # torch and the encoders load only here

    start = time.monotonic()
    stats = pipeline.extract(cfg)
    print(summary_line(stats, time.monotonic() - start))


def run_finalize(cfg: ExtractConfig) -> None:
    index = finalize(cfg)
    print(f"{cfg.out_dir}/index.json: {index['num_shards']} shards, {index['total_rows']} rows")


def run_verify(cfg: ExtractConfig) -> int:
    """Print the table; exit status 1 (and the fix) when a shard is missing, damaged or refused by the readers."""
    table, ok = verify(cfg)
    width = max(len(name) for name, _, _ in table)
    print(f"{cfg.out_dir}:")
    print(f"{'shard':<{width}}  {'rows':>7}  status")
    for name, rows, status in table:
        print(f"{name:<{width}}  {rows:>7}  {status}")
    if not ok:
        print(f"extract verify: error: {cfg.out_dir} is not usable; fix: delete the shards marked above (or the whole "
              f"folder) and rerun `python -m services.extract --config <yaml> split={cfg.split} "
              f"num_shards={cfg.num_shards}`, which embeds what is missing and rebuilds index.json", file=sys.stderr)
    return 0 if ok else 1
