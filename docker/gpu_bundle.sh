#!/usr/bin/env bash
# The wheels bench/gpu_check.py needs on the GPU machine, which has no network:  bash docker/gpu_bundle.sh [OUT]
#
# OUT (default .gpu-bundle/, git-ignored) gets, for CPython 3.12 on manylinux x86_64, at the versions pinned in
# docker/requirements/{train,train.nodeps,extract}.txt:
#   fine-tuning  unsloth, unsloth_zoo, trl, datasets, peft, bitsandbytes and what they import that the machine lacks
#                (docker/gpu_device_packages.txt lists what it has: torch, transformers, accelerate, timm, ...);
#                bitsandbytes repacked with only its CUDA 13.0 and CPU libraries (torch there is 2.11+cu130; the
#                published wheel carries one library per CUDA version, 41 MiB);
#   ImageBind    imagebind-unofficial, ftfy, wcwidth, iopath (built here from its sdist, pure Python): the vision and
#                text towers only (services/extract/imagebind.py never runs imagebind/__init__.py, so no torchaudio,
#                pytorchvideo or av);
# left out although declared: xformers (no build for that torch: unsloth uses PyTorch attention), diffusers and
# hf_transfer (imported only by unsloth's studio / through find_spec).
# Then it checks every wheel's RECORD, one version per name, and the size: wheels + the working tree that travels
# with a device call (tracked + untracked-not-ignored files) must stay under 64 MiB. Downloads are cached in
# ~/.cache/vdmem/gpu-wheels (VDMEM_WHEEL_CACHE), so a second run fetches nothing.
# On the machine:  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#                    --target /tmp/site .gpu-bundle/*.whl && export PYTHONPATH=/tmp/site   (bench/gpu_check.py)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.gpu-bundle}
cache=${VDMEM_WHEEL_CACHE:-$HOME/.cache/vdmem/gpu-wheels}
py=${PY:-$root/.venvs/train/bin/python}   # any Python with pip; the wheels are chosen for 3.12 whatever it is
limit_mib=64
FINETUNE=(unsloth unsloth_zoo trl datasets peft fsspec cut_cross_entropy torchao msgspec tyro docstring_parser
          typeguard pydantic pydantic_core annotated-types typing-inspection structlog json5 nest-asyncio dill
          multiprocess)
IMAGEBIND=(imagebind-unofficial ftfy wcwidth)
FROM_SDIST=(iopath)

pins() {  # NAME... -> NAME==VERSION from the requirement files (an unpinned name is an error)
  "$py" - "$root/docker/requirements" "$@" <<'EOF'
import re, sys
from pathlib import Path
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pinned = {}
for name in ("extract.txt", "train.txt", "train.nodeps.txt"):
    for line in (Path(sys.argv[1]) / name).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#;]+)", line.strip())
        if m:
            pinned[canon(m.group(1))] = f"{m.group(1)}=={m.group(2)}"
missing = [n for n in sys.argv[2:] if canon(n) not in pinned]
if missing:
    sys.exit(f"gpu_bundle: not pinned in docker/requirements: {missing}")
print(" ".join(pinned[canon(n)] for n in sys.argv[2:]))
EOF
}

download() {  # DEST SPEC...: wheels for the GPU machine's Python 3.12 (never an sdist)
  local dest=$1; shift
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$dest" "$@" 2> >(grep -v "^WARNING: Location" >&2)
}

mkdir -p "$cache/raw" "$cache/built"
read -ra specs <<< "$(pins "${FINETUNE[@]}" "${IMAGEBIND[@]}" bitsandbytes)"
download "$cache/raw" "${specs[@]}"
read -ra sdists <<< "$(pins "${FROM_SDIST[@]}")"
for spec in "${sdists[@]}"; do
  name=${spec%%==*}; version=${spec##*==}
  ls "$cache/built/$name-$version-py3-none-any.whl" >/dev/null 2>&1 ||
    "$py" -m pip wheel -q --no-deps --no-binary=:all: -w "$cache/built" "$spec" 2> >(grep -v "^WARNING: Location" >&2)
  ls "$cache/built/$name-$version-py3-none-any.whl" >/dev/null ||
    { echo "gpu_bundle: $spec did not build as a pure-Python wheel" >&2; exit 1; }
done

rm -rf "$out" && mkdir -p "$out"
"$py" - "$cache" "$out" "${specs[@]}" "${sdists[@]}" <<'EOF'
import re, shutil, sys
from pathlib import Path
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
cache, out = Path(sys.argv[1]), Path(sys.argv[2])
wheels = list((cache / "raw").glob("*.whl")) + list((cache / "built").glob("*.whl"))
for spec in sys.argv[3:]:
    name, version = spec.split("==")
    if canon(name) == "bitsandbytes":
        continue  # repacked below
    hits = [w for w in wheels if canon(w.name.split("-")[0]) == canon(name) and w.name.split("-")[1] == version]
    if len(hits) != 1:
        sys.exit(f"gpu_bundle: {spec}: {len(hits)} wheels in {cache} ({[w.name for w in hits]})")
    shutil.copy2(hits[0], out / hits[0].name)
EOF
bnb=$(ls "$cache"/raw/bitsandbytes-"$(pins bitsandbytes | cut -d= -f3)"-*.whl)
"$py" "$root/docker/repack_wheel.py" "$bnb" "$out" --build-tag 1cu130 \
  --drop '^bitsandbytes/libbitsandbytes_(?!cuda130\.so$|cpu\.so$)[^/]*\.so$' >/dev/null

for wheel in "$out"/*.whl; do "$py" "$root/docker/repack_wheel.py" --check "$wheel" >/dev/null ||
  { echo "gpu_bundle: $wheel: RECORD does not match its files" >&2; exit 1; }; done
dupes=$(ls "$out" | cut -d- -f1 | tr 'A-Z_.' 'a-z--' | sort | uniq -d)
[ -z "$dupes" ] || { echo "gpu_bundle: two versions of: $dupes" >&2; exit 1; }

bundle=$(du -cb "$out"/*.whl | tail -1 | cut -f1)
tree=$(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | awk '/\ttotal$/ {s += $1} END {print s}')
ls -l "$out" | awk 'NR > 1 {printf "%10d  %s\n", $5, $9}'
awk -v b="$bundle" -v t="$tree" -v cap="$limit_mib" -v n="$(ls "$out" | wc -l)" 'BEGIN {
  printf "gpu_bundle_wheels: %d\ngpu_bundle_mib: %.2f\nworking_tree_mib: %.2f\ndevice_call_mib: %.2f  # limit %d\n",
         n, b / 2^20, t / 2^20, (b + t) / 2^20, cap
  if ((b + t) / 2^20 >= cap) { print "gpu_bundle: over the per-call limit" > "/dev/stderr"; exit 1 } }'
