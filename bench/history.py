"""Does the dialog history help a pretrained LM rank real VisDial answers, and does a short reminder do as well?

    python bench/history.py                 # the bench: SmolLM2-135M, the BENCH_DIALOGS subset, 5 conditions
    python bench/history.py --smoke         # 2 dialogs, last rounds only (the CI test of this entry point)
    python bench/history.py --all --models smollm2 gemma3 --out outputs/history   # make eval-history

Runs `python -m services.train rank-text` (train venv) for each model, scores every condition's predictions.jsonl
with the evaluator (ranking metrics only), `services.evaluate compare`s the conditions, then writes
<run>/history.md (table, paired bootstrap differences) and <run>/per_round.png. Text only: the caption stands in for
the picture. The bench ends with the figures of docs/BENCHMARKS.md: history_mrr_<condition>, history_r1_full,
history_r1_reminder and history_context_ratio (mean prompt tokens of reminder / full). Run it in the evaluate venv
(.venvs/evaluate/bin/python); it starts the train venv's python for the ranking. Subsets (docs/HISTORY.md):
BENCH_DIALOGS are the first 8 dialogs of tests/assets/visdial_v1_real_sample/visdial_1.0_val.small.json; the
reminder settings were tuned on TUNING_DIALOGS (its last 25), which the bench never reads.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history_report import collect, markdown, paired_bootstrap, plot_per_round  # noqa: E402
from bench.inputs import SMOLLM, require  # noqa: E402

SAMPLE = ROOT / "tests/assets/visdial_v1_real_sample/visdial_1.0_val.small.json"
BENCH_DIALOGS = [185565, 284024, 574189, 148816, 88394, 255061, 36690, 76113]  # the sample's first 8 dialogs
TUNING_DIALOGS = [214573, 137772, 117081, 99643, 240413, 59107, 249833, 258193, 23817, 384075, 416756, 275254, 244832,
                  454063, 52542, 239836, 162655, 209271, 186922, 467669, 304354, 202577, 550190, 101728, 443580]
MODELS = {"smollm2": ("configs/train/rank_text_visdial.yaml", SMOLLM, "checkpoints-demo"),
          "gemma3": ("configs/train/rank_text_visdial_gemma3.yaml", ROOT / "checkpoints/gemma-3-270m",
                     "checkpoints-gemma3")}
BENCH_CONDITIONS = ["none", "caption", "full", "reminder", "gated"]
ALL_CONDITIONS = ["none", "caption", "full", "window", "reminder", "gated"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def venv_python(env: str) -> str:
    path = ROOT / ".venvs" / env / "bin" / "python"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `make setup` first")
    return str(path)


def call(argv: list[str]) -> float:
    """Run one job (its output streams through); seconds it took."""
    started = time.perf_counter()
    print("$", " ".join(argv), flush=True)
    subprocess.run(argv, cwd=ROOT, env=ENV, check=True)
    return time.perf_counter() - started


def run_model(model: str, args: argparse.Namespace, conditions: list[str], image_ids: list[int] | None) -> dict:
    """rank-text, one evaluation per condition, compare, report; the collected figures and step times."""
    config, weights, target = MODELS[model]
    require(weights / "done.json", target)
    run = f"{args.prefix}_{model}"
    run_dir = Path(args.out) / run
    job = [venv_python("train"), "-m", "services.train", "rank-text", "--config", config, f"run={run}",
           f"outputs_root={args.out}", f"prompt.conditions=[{','.join(conditions)}]", f"data.dialogs={args.data}",
           f"data.rounds={args.rounds}", f"num_threads={args.threads}"]
    job += [f"data.image_ids=[{','.join(map(str, image_ids))}]"] if image_ids else []
    job += ["resume=false", "overwrite=true"] if args.fresh else []
    times = {"rank_text_s": call(job + args.job_args)}
    context = json.loads((run_dir / "context.json").read_text())
    started = time.perf_counter()
    evals = []
    for name in conditions:
        out = run_dir / name / "eval"
        call([sys.executable, "-m", "services.evaluate", "--config", "configs/evaluate/default.yaml",
              f"predictions={run_dir / name / 'predictions.jsonl'}", f"data={context['evaluate_data']}",
              f"dense={args.dense or 'null'}", f"out={out}", "bertscore.enabled=false", "text.enabled=false",
              "images=null",  # text only: dialogs.html without pictures (VisDial's COCO images are not bundled)
              f"expect_rounds={args.rounds}", "overwrite=true"])
        evals.append(str(out))
    call([sys.executable, "-m", "services.evaluate", "compare", f"runs=[{','.join(evals)}]",
          f"out={run_dir / 'compare'}"])
    times["evaluate_s"] = time.perf_counter() - started
    data = collect(run_dir)
    diffs = {}
    if {"full", "reminder"} <= set(conditions):
        full, reminder = data["conditions"]["full"]["ranks"], data["conditions"]["reminder"]["ranks"]
        diffs = {f"reminder - full, {m}": paired_bootstrap(reminder, full, m) for m in ("mrr", "r@1")}
    text = markdown(model, data, diffs)
    (run_dir / "history.md").write_text(text)
    plot_per_round({model: data}, run_dir / "per_round.png")
    print(text)
    return {"data": data, "diffs": diffs, "times": times}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2"], choices=sorted(MODELS))
    parser.add_argument("--all", action="store_true", help="every dialog of --data (default: BENCH_DIALOGS)")
    parser.add_argument("--smoke", action="store_true", help="2 dialogs, last rounds only (CI)")
    parser.add_argument("--data", default=str(SAMPLE.relative_to(ROOT)), help="VisDial-format split")
    parser.add_argument("--dense", default=None, help="dense annotations of --data (adds NDCG)")
    parser.add_argument("--out", default="outputs/bench", help="outputs_root of the runs")
    parser.add_argument("--prefix", default="history", help="runs are named <prefix>_<model>")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the ranking (docs/HISTORY.md)")
    parser.add_argument("--resume", action="store_true", help="keep finished predictions (default for --all)")
    parser.add_argument("--plot", default=None, help="also write the per-round plot here (e.g. docs/...png)")
    parser.add_argument("job_args", nargs="*", help="extra key=value settings of rank-text")
    args = parser.parse_args()
    args.rounds = "last" if args.smoke else "all"
    args.fresh = not (args.resume or args.all)  # a bench times the whole run: nothing is reused
    image_ids = None if args.all else (BENCH_DIALOGS[:2] if args.smoke else BENCH_DIALOGS)
    conditions = ALL_CONDITIONS if args.all else BENCH_CONDITIONS
    started = time.perf_counter()
    results = {m: run_model(m, args, conditions, image_ids) for m in args.models}
    if args.plot:
        plot_per_round({m: r["data"] for m, r in results.items()}, ROOT / args.plot)
    for model, r in results.items():
        print(f"{model}: rank-text {r['times']['rank_text_s']:.0f} s, evaluation + compare "
              f"{r['times']['evaluate_s']:.0f} s; load average {os.getloadavg()[0]:.1f}")
    print(f"total {time.perf_counter() - started:.0f} s on {os.cpu_count()} cores, {args.threads} torch thread(s)")
    first = results[args.models[0]]["data"]["conditions"]
    figures = {f"history_mrr_{c}": first[c]["headline"]["mrr"]["value"] for c in BENCH_CONDITIONS if c in first}
    if {"full", "reminder"} <= set(first):
        figures |= {"history_r1_full": first["full"]["headline"]["r@1"]["value"],
                    "history_r1_reminder": first["reminder"]["headline"]["r@1"]["value"],
                    "history_context_ratio": first["reminder"]["tokens"] / first["full"]["tokens"]}
    for name, value in figures.items():
        print(f"{name}: {value:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
