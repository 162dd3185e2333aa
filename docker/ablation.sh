#!/usr/bin/env bash
# `make ablation`: the demo MA-LMM bridge with and without <reminder> memories, and with each memory score component
# alone, every variant trained, run on the demo val split, scored by the evaluator, then compared against the
# no-reminder baseline into outputs/ablation/ (compare.md, compare.json, compare.png, and table.md: R@1 by question
# kind per run, seed means, and where the gate fired; docker/ablation_table.py).
#
# Variants: none (prompt.reminder=none), full (retrieved, the default weights of shared.memory.ScoreWeights),
# gated (retrieved only where shared.memory.memory_needed says the question needs the past; docs/RETRIEVAL.md) and
# recency|frequency|saliency|relevance (retrieved, that weight 1, the others 0). Run names: ablation_<variant>, plus
# _s<seed> for a seed other than 0 and _<steps> for a length other than 60 (ablation_gated_s1_300). Everything else is
# configs/train/bridge_demo.yaml / infer_demo.yaml / configs/evaluate/default.yaml.
# Kept short for CPU: ABLATION_STEPS optimizer steps per variant (default 60 instead of the demo's 300), so the
# absolute numbers are below the full demo's — the comparison is what counts. Measured on the idle 2-core dev VM:
# all six original variants in 38 minutes (~1.5 s a training step without reminders, ~3.2 s with them; 1.5-3 min of
# inference a variant). Times of every stage go to outputs/ablation/times.tsv. Results: docs/FINETUNE.md.
# Every stage resumes: rerunning after an interruption continues the unfinished variant and skips finished ones.
#   ABLATION_STEPS=300 make ablation                       # the demo's full training length
#   VARIANTS="none full relevance" make ablation           # a subset (the first one is the baseline)
#   VARIANTS="none gated" SEEDS="0 1" ABLATION_STEPS=300 make ablation   # the gate's acceptance runs (4 trainings)
#   ABLATION_INFER_ARGS="score_options=false" make ablation  # answers only: no R@k/MRR/NDCG, much faster
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${ABLATION_STEPS:-60}
VARIANTS=${VARIANTS:-"none full recency frequency saliency relevance"}
SEEDS=${SEEDS:-0}
INFER_ARGS=${ABLATION_INFER_ARGS:-}
OUT=${ABLATION_OUT:-outputs/ablation}
m() { make --no-print-directory "$@"; }

overrides() {  # the bridge overrides of one variant
  local w="prompt.memory.weights"
  case $1 in
    none) echo "prompt.reminder=none" ;;
    full) echo "prompt.reminder=retrieved" ;;
    gated) echo "prompt.reminder=gated" ;;
    recency|frequency|saliency|relevance)
      local args="prompt.reminder=retrieved" c
      for c in recency frequency saliency relevance; do
        if [ "$c" = "$1" ]; then args+=" $w.$c=1.0"; else args+=" $w.$c=0.0"; fi
      done
      echo "$args" ;;
    *) echo "ablation: unknown variant '$1' (none full gated recency frequency saliency relevance)" >&2; return 2 ;;
  esac
}

t0=$(date +%s)
echo "== ablation: prerequisites (demo data, SmolLM2 checkpoint, cpu_default embeddings)"
m data-demo checkpoints-demo extract-demo
mkdir -p "$OUT"
times=$OUT/times.tsv
[ -f "$times" ] || printf 'run\tstage\tseconds\n' > "$times"
timed() {  # timed <run> <stage> <command...>: run it and append its wall time to times.tsv
  local run=$1 stage=$2 start
  shift 2
  start=$(date +%s)
  "$@"
  printf '%s\t%s\t%s\n' "$run" "$stage" "$(( $(date +%s) - start ))" >> "$times"
}
evals=()
for v in $VARIANTS; do
  args=$(overrides "$v")
  for seed in $SEEDS; do
    run=ablation_$v
    [ "$seed" = 0 ] || run+=_s$seed
    [ "$STEPS" = 60 ] || run+=_$STEPS
    echo "== ablation: $run ($args, seed $seed, $STEPS steps)"
    timed "$run" train m train-bridge ARGS="run=$run seed=$seed optim.max_steps=$STEPS save_every=$STEPS $args"
    timed "$run" infer m infer ARGS="run=$run $INFER_ARGS"
    pred=outputs/$run/predictions.jsonl
    if [ -f "outputs/$run/eval/report.json" ] && [ "outputs/$run/eval/report.json" -nt "$pred" ]; then
      echo "   (evaluation up to date: outputs/$run/eval)"
    else
      timed "$run" evaluate m evaluate ARGS="predictions=$pred out=outputs/$run/eval"
    fi
    evals+=("outputs/$run/eval")
  done
done
if [ ${#evals[@]} -lt 2 ]; then
  echo "ablation: only ${#evals[@]} variant(s); compare needs two or more" >&2
  exit 2
fi
echo "== ablation: compare (every variant against ${evals[0]})"
runs="runs=[$(IFS=,; echo "${evals[*]}")]"
if [ "${RUNNER:-local}" = docker ]; then
  docker compose run --rm evaluate compare "$runs" "out=$OUT"
else
  .venvs/evaluate/bin/python -m services.evaluate compare "$runs" "out=$OUT"
fi
if [ -x .venvs/evaluate/bin/python ]; then  # (RUNNER=docker without local venvs: compare.md only)
  .venvs/evaluate/bin/python docker/ablation_table.py --dialogs data/demo/val.json --times "$times" "${evals[@]}" \
    > "$OUT/table.md"
  cat "$OUT/table.md"
fi
echo "== ablation: finished in $(( $(date +%s) - t0 )) s; tables: $OUT/compare.md, $OUT/table.md"
