#!/usr/bin/env bash
# Build the local virtual environment of one service:  docker/setup_venv.sh extract|train|evaluate
#
# The venv is built from docker/requirements/<env>.txt (the same file its Docker image installs) plus test.txt, in a
# cache folder keyed by the hash of those files and of this script, and .venvs/<env> is linked to it. A second run with
# unchanged files installs nothing; a changed file builds a fresh venv, so a missing requirement always shows.
# Optional extras: <env>.nodeps.txt (model packages installed with --no-deps) and <env>.local.txt (local tools only).
set -euo pipefail
env_name=${1:?usage: docker/setup_venv.sh extract|train|evaluate}
root=$(cd "$(dirname "$0")/.." && pwd)
req=$root/docker/requirements
[ -f "$req/$env_name.txt" ] || { echo "setup_venv: no $req/$env_name.txt (choose extract, train or evaluate)" >&2; exit 2; }

inputs=("$req/$env_name.txt" "$req/test.txt" "$root/docker/setup_venv.sh" "$root/docker/install_nltk_data.sh")
for extra in nodeps local; do [ -f "$req/$env_name.$extra.txt" ] && inputs+=("$req/$env_name.$extra.txt"); done
hash=$(cat "${inputs[@]}" | sha256sum | cut -c1-16)
cache=${VDMEM_VENV_CACHE:-$HOME/.cache/vdmem/venvs}
dest=$cache/$env_name-$hash
link=$root/.venvs/$env_name
mkdir -p "$root/.venvs" "$cache"

if [ -f "$dest/.complete" ]; then
  ln -sfn "$dest" "$link"
  echo "setup_venv: $env_name is up to date ($dest)"
  exit 0
fi

start=$(date +%s)
echo "setup_venv: building $env_name in $dest"
rm -rf "$dest"   # a half-built venv from an interrupted run
python3 -m venv "$dest"
pip=("$dest/bin/python" -m pip install --quiet --no-input)
# torch first, alone: its pins decide which wheels (CPU file on disk or CUDA build) the rest resolves against
torch_pins=$(grep -E '^(torch|torchvision|torchaudio)==' "$req/$env_name.txt" | tr '\n' ' ')
[ -n "$torch_pins" ] && "${pip[@]}" $torch_pins
"${pip[@]}" -r "$req/$env_name.txt" -r "$req/test.txt"
[ -f "$req/$env_name.nodeps.txt" ] && "${pip[@]}" --no-deps -r "$req/$env_name.nodeps.txt"
[ -f "$req/$env_name.local.txt" ] && "${pip[@]}" -r "$req/$env_name.local.txt"
if [ "$env_name" = evaluate ]; then
  bash "$root/docker/install_nltk_data.sh" "$dest/nltk_data"   # nltk looks in <venv>/nltk_data by itself
fi
touch "$dest/.complete"
ln -sfn "$dest" "$link"
echo "setup_venv: $env_name built in $(( $(date +%s) - start )) s, $(du -sh "$dest" | cut -f1)"
