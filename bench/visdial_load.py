"""Time shared.visdial.load_visdial on a synthetic train-sized VisDial file: GC paused (shipped) vs GC running.

`python bench/visdial_load.py [--dialogs 20000]` writes a VisDial-format file with 10 rounds x 100 options per
dialog (real train: 123,287 dialogs, pools of 376,082 questions / 337,527 answers) to a temp folder, then times
in this one process: plain json.load (the floor), load_visdial with the cyclic GC running (the baseline), and
load_visdial as shipped (GC paused while the objects are built).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import tempfile
import time
from pathlib import Path

import shared.visdial as visdial


def write_file(path: Path, dialogs: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    n_q, n_a = 376_082, 337_527
    popular = rng.sample(range(n_a), 2000)  # VisDial options mix popular answers with per-question ones
    out = []
    for i in range(dialogs):
        rounds = []
        for _ in range(10):
            options = rng.sample(popular, 50) + rng.sample(range(n_a), 50)
            gt = rng.randrange(100)
            rounds.append({"question": rng.randrange(n_q), "answer": options[gt], "gt_index": gt,
                           "answer_options": options})
        out.append({"image_id": i, "caption": f"caption {i}", "dialog": rounds})
    data = {"questions": [f"question {i}" for i in range(n_q)], "answers": [f"answer {i}" for i in range(n_a)],
            "dialogs": out}
    path.write_text(json.dumps({"version": "1.0", "split": "train", "data": data}))
    return dialogs * 10


def timed(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    gc.collect()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dialogs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.json"
        rounds = write_file(path, args.dialogs)
        shipped_pause = visdial._gc_paused
        floor, baseline, shipped = [], [], []
        for _ in range(args.repeats):
            floor.append(timed(lambda: json.load(path.open("rb"))))
            visdial._gc_paused = contextlib.nullcontext  # baseline: the same loader with the GC running
            baseline.append(timed(lambda: visdial.load_visdial(path)))
            visdial._gc_paused = shipped_pause
            shipped.append(timed(lambda: visdial.load_visdial(path)))
    print(f"rounds: {rounds}")
    print(f"dialogs: {args.dialogs}")
    print(f"json_load_s: {min(floor):.2f}")
    print(f"load_visdial_gc_running_s: {min(baseline):.2f}")
    print(f"load_visdial_s: {min(shipped):.2f}")
    print(f"speedup_x: {min(baseline) / min(shipped):.2f}")
    print(f"rounds_per_s: {rounds / min(shipped):.0f}")


if __name__ == "__main__":
    main()
