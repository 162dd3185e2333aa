#!/usr/bin/env bash
# `make ablation`: the demo MA-LMM bridge with and without <reminder> memories, and with each memory score component
# alone, every variant trained, run on the demo val split, scored by the evaluator, then compared against the
# no-reminder baseline into outputs/ablation/ (compare.md, compare.json, compare.png).
#
# Variants (run names): ablation_none (prompt.reminder=none), ablation_full (retrieved, the default weights of
# shared.memory.ScoreWeights) and ablation_{recency,frequency,saliency,relevance} (retrieved, that weight 1, the
# others 0). Everything else is configs/train/bridge_demo.yaml / infer_demo.yaml / configs/evaluate/default.yaml.
# Kept short for CPU: ABLATION_STEPS optimizer steps per variant (default 60 instead of the demo's 300), so the
# absolute numbers are below the full demo's — the comparison is what counts. Measured on the idle 2-core dev VM:
# all six variants in 38 minutes (~1.5 s a training step without reminders, ~3.2 s with them; 1.5-3 min of
# inference a variant). Results: docs/FINETUNE.md.
# Every stage resumes: rerunning after an interruption continues the unfinished variant and skips finished ones.
#   ABLATION_STEPS=300 make ablation                       # the demo's full training length
#   VARIANTS="none full relevance" make ablation           # a subset (the first one is the baseline)
#   ABLATION_INFER_ARGS="score_options=false" make ablation  # answers only: no R@k/MRR/NDCG, much faster
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${ABLATION_STEPS:-60}
VARIANTS=${VARIANTS:-"none full recency frequency saliency relevance"}
INFER_ARGS=${ABLATION_INFER_ARGS:-}
OUT=${ABLATION_OUT:-outputs/ablation}
m() { make --no-print-directory "$@"; }

overrides() {  # the bridge overrides of one variant
  local w="prompt.memory.weights"
  case $1 in
    none) echo "prompt.reminder=none" ;;
    full) echo "prompt.reminder=retrieved" ;;
    recency|frequency|saliency|relevance)
      local args="prompt.reminder=retrieved" c
      for c in recency frequency saliency relevance; do
        if [ "$c" = "$1" ]; then args+=" $w.$c=1.0"; else args+=" $w.$c=0.0"; fi
      done
      echo "$args" ;;
    *) echo "ablation: unknown variant '$1' (none full recency frequency saliency relevance)" >&2; return 2 ;;
  esac
}

t0=$(date +%s)
echo "== ablation: prerequisites (demo data, SmolLM2 checkpoint, cpu_default embeddings)"
m data-demo checkpoints-demo extract-demo
evals=()
for v in $VARIANTS; do
  run=ablation_$v
  args=$(overrides "$v")
  echo "== ablation: $run ($args, $STEPS steps)"
  m train-bridge ARGS="run=$run optim.max_steps=$STEPS save_every=$STEPS $args"
  m infer ARGS="run=$run $INFER_ARGS"
  pred=outputs/$run/predictions.jsonl
  if [ -f "outputs/$run/eval/report.json" ] && [ "outputs/$run/eval/report.json" -nt "$pred" ]; then
    echo "   (evaluation up to date: outputs/$run/eval)"
  else
    m evaluate ARGS="predictions=$pred out=outputs/$run/eval"
  fi
  evals+=("outputs/$run/eval")
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
echo "== ablation: finished in $(( $(date +%s) - t0 )) s; table: $OUT/compare.md"
