"""The inputs every bench reads, built by `make bench` before any bench runs (bench/run_all.sh).

A bench never falls back to something else when an input is missing: its figures would then depend on which
artifacts happen to exist. It stops and names the make target that builds the input instead.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data/demo"  # make data-demo
SMOLLM = REPO / "checkpoints/smollm2-135m-instruct"  # make checkpoints-demo
DEMO_EMBEDDINGS = REPO / "embeddings/cpu_default"  # make extract-demo
LONGCONV = REPO / "data/longconv/longconv.json"  # make data-longconv


def require(path: Path, make_target: str) -> Path:
    """`path`, or exit naming the make target that builds it."""
    if not path.exists():
        raise SystemExit(f"{path} is missing: build it with `make {make_target}` (make bench builds every input)")
    return path
