"""How the reminder condition's settings were chosen: MRR / R@1 / prompt tokens of reminder variants on the TUNING
dialogs of bench/history.py (never the bench's own), next to full, window and caption, in one process.

    .venvs/train/bin/python bench/history_tune.py [--dialogs N] [--variants k2:turn k3:turn k3:score ...]

A variant is k<reminder_k>:<order>[:recency=<w>,...] (memory weights as `prompt.memory.weights.*`). Identical
prompts are scored once (rank_text.job.RoundScorer), so variants that agree on a round cost nothing more there.
The metrics are computed here from the scores (the same definitions as the evaluator's: rank = 1 + options scoring
higher, ties to the lower index); the reported figures come from bench/history.py and the evaluator.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench.history import SAMPLE, TUNING_DIALOGS  # noqa: E402
from services.train.rank_text.config import RankTextConfig  # noqa: E402
from services.train.rank_text.job import RoundScorer, select_dialogs  # noqa: E402
from services.train.rank_text.prompts import dialog_reminders, prompt_text  # noqa: E402


def variant_settings(base: RankTextConfig, spec: str):
    """(condition, prompt settings) of one variant spec: full, caption, window<k> or k<k>:<order>[:w=v,...]."""
    prompt = copy.deepcopy(base.prompt)
    if spec in ("full", "caption", "none"):
        return spec, prompt
    if spec.startswith("window"):
        prompt.window = int(spec[6:])
        return "window", prompt
    parts = spec.split(":")
    prompt.reminder_k, prompt.reminder_order = int(parts[0][1:]), parts[1]
    for item in parts[2:]:
        for pair in item.split(","):
            name, value = pair.split("=")
            setattr(prompt.memory.weights, name, float(value))
    return "reminder", prompt


def gt_rank(scores: list[float], gt: int) -> int:
    return 1 + sum(1 for i, s in enumerate(scores) if s > scores[gt] or (s == scores[gt] and i < gt))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogs", type=int, default=len(TUNING_DIALOGS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["caption", "full", "window2", "window3", "k1:turn",
                                                          "k2:turn", "k2:score", "k3:turn", "k3:score"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = RankTextConfig(device="cpu")
    cfg.data.dialogs, cfg.data.image_ids = str(SAMPLE), TUNING_DIALOGS[: args.dialogs]
    dialogs, _ = select_dialogs(cfg)
    scorer = RoundScorer(cfg, torch.device("cpu"))
    rows = {}
    for spec in args.variants:
        condition, prompt = variant_settings(cfg, spec)
        started, ranks, tokens = time.perf_counter(), [], []
        for dialog in dialogs:
            reminders = dialog_reminders(dialog, prompt) if condition == "reminder" else None
            for rnd in dialog.rounds:
                ids = scorer.prompt_ids(prompt_text(dialog, rnd.round_id, condition, prompt, reminders))
                tokens.append(len(ids))
                ranks.append(gt_rank(scorer(ids, rnd.options), rnd.gt_index))
        rows[spec] = (sum(1 / r for r in ranks) / len(ranks), sum(r == 1 for r in ranks) / len(ranks),
                      sum(tokens) / len(tokens), time.perf_counter() - started)
        print(f"{spec:28s} MRR {rows[spec][0]:.4f} R@1 {rows[spec][1]:.3f} tokens {rows[spec][2]:6.1f} "
              f"({rows[spec][3]:.0f} s)", flush=True)
    full = rows.get("full")
    print(f"\n{len(dialogs)} tuning dialogs, {len(ranks)} rounds; ratio = tokens / full's")
    for spec, (mrr, r1, tok, _) in rows.items():
        ratio = f"{tok / full[2]:.2f}" if full else "–"
        print(f"| {spec} | {mrr:.3f} | {r1:.3f} | {tok:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
