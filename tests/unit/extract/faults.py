"""Run `python -m services.extract ...` and SIGKILL it at a chosen point, for the resume tests:

    python tests/unit/extract/faults.py <point> --config ... key=value ...

Points:
  image_batch      after the first batch of images of a shard is embedded (mid-shard, nothing written yet)
  before_rename    when a shard's temp file is written and fsynced, just before its rename to the final name
  after_shard:<i>  after shard i and its done-marker are complete, before the next shard starts
SIGKILL (not an exception) so nothing gets to clean up: exactly what an OOM kill or a pre-empted node does. The hooks
wrap the product's functions from outside; nothing in services/ knows about them.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    from services.extract import embed, pipeline

    if point == "image_batch":  # the loader's second batch is asked for only once the first one is embedded
        make_loader = embed.make_loader

        def dying_loader(*args, **kwargs):
            for i, batch in enumerate(make_loader(*args, **kwargs)):
                if i == 1:
                    die()
                yield batch

        embed.make_loader = dying_loader
    elif point == "before_rename":  # any writer that follows the temp-file-then-rename protocol
        replace = Path.replace

        def replace_or_die(self: Path, target):
            if str(target).endswith(".safetensors"):
                die()
            return replace(self, target)

        Path.replace = replace_or_die
    elif point.startswith("after_shard:"):
        shard, run_shard = int(point.split(":")[1]), pipeline.SplitJob.run_shard

        def run_then_die(self, i: int):
            stats = run_shard(self, i)
            if i == shard:
                die()
            return stats

        pipeline.SplitJob.run_shard = run_then_die
    else:
        raise SystemExit(f"unknown point {point!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    arm(sys.argv[1])
    from services.extract.__main__ import main

    sys.exit(main(sys.argv[2:]))
