#!/usr/bin/env bash
# Run every benchmark in its own environment and collect the `<figure>: <number>` lines they end with into
# docs/benchmarks-latest.txt (docs/BENCHMARKS.md explains each figure and records the reviewed numbers).
set -euo pipefail
cd "$(dirname "$0")/.."
# Every input a bench reads, built once here (each bench stops when one is missing; none falls back to another).
make --no-print-directory data-demo data-longconv checkpoints-demo extract-demo
declare -A venv=([extract]=extract [train]=train [evaluate]=evaluate [memory]=evaluate [gate]=evaluate [visdial_load]=evaluate [finetune_gpu]=train)
out=docs/benchmarks-latest.txt
{ echo "# bench/run_all.sh on $(hostname) at $(date -u +%FT%TZ), $(nproc) cores"; } > "$out"
for name in visdial_load extract memory gate evaluate train finetune_gpu; do
  script=bench/$name.py
  [ -f "$script" ] || { echo "skip $script (missing)"; continue; }
  echo "== $script (.venvs/${venv[$name]})"
  .venvs/${venv[$name]}/bin/python "$script" | tee "/tmp/bench-$name.log"
  grep -E '^[a-z0-9_]+: [-0-9.eE+]+$' "/tmp/bench-$name.log" | sed "s|^|$name/|" >> "$out"
done
cat "$out"
