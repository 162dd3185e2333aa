"""`python -m services.extract [finalize|verify] --config configs/extract/<name>.yaml split=val num_shards=8 ...`.

No verb: embed shard `shard_index` of `num_shards` (or, without shard_index, every missing shard, then index.json).
`finalize`: build index.json once every shard is complete. `verify`: re-hash every shard and print a table.
"""
from __future__ import annotations

import logging
import sys
import time

from services.extract.config import DEFAULT_VERB, JOBS
from shared.config import ConfigError, load_config, split_cli
from shared.runlog import setup_logging

log = logging.getLogger("services.extract")


def main(argv: list[str]) -> int:
    setup_logging()
    try:
        config_path, overrides, words = split_cli(argv)
        verb = words[0] if words else DEFAULT_VERB
        if verb not in JOBS or len(words) > 1:
            raise ConfigError(f"unknown command {' '.join(words)!r}; use one of {sorted(JOBS)} (none = {DEFAULT_VERB})")
        cfg = load_config(JOBS[verb], config_path, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from services.extract import pipeline, verbs  # heavy imports only after the config is known to be valid
    from services.extract.encoders import EncoderError
    from shared.images import ImageIndexError
    from shared.shards import ShardError
    from shared.visdial import VisDialError

    try:
        if verb == "finalize":
            index = verbs.finalize(cfg)
            print(f"{cfg.out_dir}/index.json: {index['num_shards']} shards, {index['total_rows']} rows")
        elif verb == "verify":
            table, ok = verbs.verify(cfg)
            width = max(len(name) for name, _, _ in table)
            print(f"{'shard':<{width}}  {'rows':>7}  status")
            for name, rows, status in table:
                print(f"{name:<{width}}  {rows:>7}  {status}")
            return 0 if ok else 1
        else:
            start = time.monotonic()
            stats = pipeline.extract(cfg)
            print(verbs.summary_line(stats, time.monotonic() - start))
    except (pipeline.ExtractError, EncoderError, ImageIndexError, ShardError, VisDialError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
