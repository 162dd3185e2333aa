#!/usr/bin/env bash
# The demo pipeline end to end on CPU (make demo): data -> LLM checkpoint -> extract -> train -> infer -> evaluate.
# Every stage skips work that is already complete, so a rerun after an interruption picks up where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
m() { make --no-print-directory "$@"; }
stage() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "== demo: $name"
  "$@"
  echo "== demo: $name done in $(( $(date +%s) - t0 )) s"
}
t_all=$(date +%s)
stage data m data-demo
stage checkpoints m checkpoints-demo
stage extract m extract-demo
stage train m train-bridge
stage infer m infer
stage evaluate m evaluate
echo "== demo: finished in $(( $(date +%s) - t_all )) s; report: outputs/demo/eval/report.md"
cat outputs/demo/eval/report.md
