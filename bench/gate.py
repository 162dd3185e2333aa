"""The reminder gate (shared/memory/_gate.py): where it fires, and its relevance threshold calibrated on train.

    python bench/gate.py [--data data/demo]

Every demo dialog of train and val is replayed as the bridge's PromptBuilder does (lexical relevance, top-3, the
default MemoryConfig): per round, the gate's reason (or none) and the best retrieved memory's raw relevance. Prints
the fire rate by question kind ("memory" rounds need the past, "current" ones do not) on both splits, for the
default gate (explicit references) and for a relevance-only gate whose `min_relevance` is calibrated on TRAIN
(`calibrate_min_relevance`, at most 5% of current rounds may fire) and then applied to val unchanged. Also the fire
rate on the bundled real VisDial val sample (tests/assets/visdial_v1_real_sample; no kinds there) with and without
the pronoun rule, and the gate's cost per round. Figures in docs/BENCHMARKS.md and docs/RETRIEVAL.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.memory import (GateConfig, MemoryConfig, best_relevance, calibrate_min_relevance,  # noqa: E402
                           dialog_gates, gate_reason, replay_dialog)
from shared.dialog_text import picture_numbers, shown_image  # noqa: E402
from shared.visdial import load_visdial  # noqa: E402
from bench.inputs import DEMO, require  # noqa: E402

K = 3
REAL = REPO / "tests/assets/visdial_v1_real_sample/visdial_1.0_val.small.json"


def replay(path: Path) -> list[dict]:
    """Per round of every dialog: kind, question, picture shown, retrieved memories (as the bridge retrieves)."""
    rows = []
    for dialog in load_visdial(path).dialogs:
        retrieved = replay_dialog(dialog, MemoryConfig(), K)
        numbers = picture_numbers(dialog)
        for rnd in dialog.rounds:
            rows.append({"kind": rnd.kind, "question": rnd.question, "picture": numbers[shown_image(dialog, rnd)],
                         "retrieved": retrieved.get(rnd.round_id, [])})
    return rows


def fire_rates(rows: list[dict], gate: GateConfig) -> tuple[dict[str, float], Counter, float]:
    """Fire rate per kind, the reasons' counts, and the gate's seconds per round."""
    start = time.perf_counter()
    reasons = [gate_reason(r["question"], r["retrieved"], r["picture"], gate) for r in rows]
    seconds = (time.perf_counter() - start) / max(len(rows), 1)
    rates = {}
    for kind in sorted({str(r["kind"]) for r in rows}):
        mine = [reason for r, reason in zip(rows, reasons) if str(r["kind"]) == kind]
        rates[kind] = sum(reason is not None for reason in mine) / len(mine)
    return rates, Counter(r for r in reasons if r), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEMO)
    args = parser.parse_args()
    require(args.data / "train.json", "data-demo")
    splits = {name: replay(args.data / f"{name}.json") for name in ("train", "val")}
    default = GateConfig()
    figures = {}
    for name, rows in splits.items():
        rates, reasons, seconds = fire_rates(rows, default)
        print(f"{name}: {len(rows)} rounds; default gate fires on {rates}; reasons {dict(reasons)}")
        for kind, rate in rates.items():
            figures[f"gate_fire_{kind}_{name}"] = rate
        figures[f"gate_us_per_round_{name}"] = seconds * 1e6
    train = splits["train"]
    needed = [r["kind"] == "memory" for r in train]
    best = [best_relevance(r["retrieved"]) for r in train]
    fired = [gate_reason(r["question"], r["retrieved"], r["picture"], default) is not None for r in train]
    with_refs = calibrate_min_relevance(best, needed, fired)
    alone = calibrate_min_relevance(best, needed)
    print(f"train calibration: min_relevance on top of the references = {with_refs} (None: nothing to add); "
          f"relevance alone = {alone}")
    figures["gate_min_relevance_alone_train"] = alone if alone is not None else float("nan")
    relevance_only = GateConfig(refers_back=False, min_relevance=alone)
    for name, rows in splits.items():
        rates, _, _ = fire_rates(rows, relevance_only)
        print(f"{name}: relevance-only gate (min_relevance {alone:.3f}, from train) fires on {rates}")
        for kind, rate in rates.items():
            figures[f"gate_relevance_only_fire_{kind}_{name}"] = rate
    if REAL.is_file():
        real = load_visdial(REAL)
        for label, gate in (("", default), ("_pronouns", GateConfig(pronouns=True))):
            fires = [reason is not None for d in real.dialogs
                     for reason in dialog_gates(d, replay_dialog(d, MemoryConfig(), K), gate).values()]
            figures[f"gate_fire_visdial_real{label}"] = sum(fires) / len(fires)
        print(f"real VisDial val sample ({sum(len(d.rounds) for d in real.dialogs)} rounds): default gate fires on "
              f"{figures['gate_fire_visdial_real']:.3f}, with pronouns on {figures['gate_fire_visdial_real_pronouns']:.3f}")
    for name, value in figures.items():
        print(f"{name}: {value:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
