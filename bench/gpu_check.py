"""GPU readiness in one run: the CUDA paths of fine-tuning, the bridge and extraction at real sizes, random weights.

    make gpu-check        # builds .gpu-bundle/ here, prints the one device command below (run it where a GPU is)
    make gpu-check-dry    # the same script on CPU at tiny sizes, through the same code: must be green anywhere

On a machine with a GPU (Python 3.12, torch, transformers 5.17, accelerate, timm, einops, no network), from the
repository root with .gpu-bundle/ beside it (the device tool: run(carry=[".gpu-bundle"], timeout_s=600)):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .gpu-bundle/*.whl && export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT

Each part runs in a fresh process (unsloth must be the first to import transformers; finetune-infer must prove that
it needs no unsloth), in this order, within one time budget (--budget, 480 s):
  cuda            CUDA present (else it fails loudly and stops: it never skips), bitsandbytes' CUDA library works
                  (--dry: also imports unsloth, CPU fallback; with --closure that shows the bundle has its needs)
  bridge          the real-size bridge (4-bit Llama-3.2-1B shape, micro-batch 32): finite loss, finite non-zero
                  llm_proj gradient, step time, peak memory
  distributed     2 GPUs: a 2-rank torchrun bridge run (NCCL refuses two ranks on one GPU); else the LOCAL_RANK tests
  imagebind       ImageBind-Huge: vision batch 128, text batch 512, bf16 vs fp32 (cosine >= 0.999), img/s, texts/s
  extract         the tiny extraction pipeline gives the same embeddings on CPU and on the GPU
  gemma-model     a random Gemma-3-4B folder (896 px, 256 image tokens) and long <reminder> records
  finetune        `finetune` on the unsloth backend: 3 steps of batch 2 x 4 at max_seq_length 2048; finite loss,
                  non-zero LoRA B, labels = the response exactly, over-long records refused; peak memory, step time
  finetune-infer  `finetune-infer` without unsloth: the adapter loads with no missing keys, vision tower not 4-bit,
                  generates
--dry runs every part on CPU at tiny sizes (finetune on the peft backend: unsloth needs a GPU); with
`--closure .gpu-bundle` (make gpu-check-dry) every import of a distribution that the GPU machine lacks
(docker/gpu_device_packages.txt) and the bundle does not carry is refused. The run ends with `<figure>: <number>`
lines (docs/BENCHMARKS.md, "GPU readiness"); the exit status is the number of failed parts.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# part -> (environment, parts it needs), the quick ones first: a run out of time loses the least
PARTS = {"cuda": ("train", ()), "bridge": ("train", ()), "distributed": ("train", ()), "imagebind": ("extract", ()),
         "extract": ("extract", ()), "gemma-model": ("train", ()), "finetune": ("train", ("gemma-model",)),
         "finetune-infer": ("train", ("finetune",))}


@dataclass
class Ctx:
    dry: bool
    work: Path

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"


def part_cuda(ctx: Ctx) -> dict:
    if ctx.dry:  # unsloth cannot train here, but its import (CPU fallback) shows its needs are met (--closure)
        from unsloth import FastVisionModel  # noqa: F401  (first: nothing has imported transformers yet)
        from unsloth.trainer import UnslothVisionDataCollator  # noqa: F401
    import torch

    import bitsandbytes as bnb

    print(f"torch {torch.__version__}, bitsandbytes {bnb.__version__}, python {sys.version.split()[0]}")
    if not ctx.dry:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device visible to torch: this check never skips; run it on a GPU machine "
                               "(or `make gpu-check-dry` for the CPU rehearsal)")
        props = torch.cuda.get_device_properties(0)
        print(f"{torch.cuda.device_count()} x {props.name}, {props.total_memory / 2**30:.1f} GiB, "
              f"capability {props.major}.{props.minor}, CUDA {torch.version.cuda}")
    # bitsandbytes' native library for this torch (the bundle carries only the CUDA 13.0 and CPU builds)
    weight = torch.randn(256, 128, device=ctx.device)
    packed, state = bnb.functional.quantize_4bit(weight, quant_type="nf4")
    error = (bnb.functional.dequantize_4bit(packed, state) - weight).abs().mean() / weight.abs().mean()
    assert float(error) < 0.15, f"nf4 round trip error {float(error):.3f}"
    import importlib.util

    print(f"xformers installed: {importlib.util.find_spec('xformers') is not None} (unsloth uses PyTorch SDPA without)")
    return {"gpus": torch.cuda.device_count() if not ctx.dry else 0, "nf4_roundtrip_rel_error": float(error)}


def part_distributed(ctx: Ctx) -> dict:
    import torch

    if not ctx.dry and torch.cuda.device_count() >= 2:
        from tests.unit.train import toy_world

        world = toy_world.build(ctx.work / "toy")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "services.train", "bridge", *world.overrides("ranks"), "device=cuda", "optim.batch_size=8"]
        started = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, timeout=300)
        assert (world.root / "outputs" / "ranks" / "checkpoints" / "latest.json").is_file()
        return {"torchrun_2rank_seconds": time.perf_counter() - started}
    print("one device: the 2-rank run needs 2 GPUs; running the LOCAL_RANK and LoRA-mode unit tests instead")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "tests/unit/train/test_bridge_devices.py"], cwd=REPO, check=True, timeout=600)
    return {}


class ImportGuard:
    """Refuses imports of installed distributions that the GPU machine lacks (--closure): neither listed in
    docker/gpu_device_packages.txt nor carried in the bundle. Run on a full venv here, a dry run then shows that the
    bundle holds everything the parts import (refused optional imports are listed; a needed one fails its part)."""

    def __init__(self, bundle: Path):
        import importlib.metadata
        import re

        canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
        self.canon = canon
        listed = (REPO / "docker/gpu_device_packages.txt").read_text().split("\n")
        wheels = sorted(bundle.glob("*.whl"))
        if not wheels:
            raise SystemExit(f"--closure {bundle}: no wheels there; build them with `bash docker/gpu_bundle.sh`")
        self.allowed = {canon(n) for n in listed if n and not n.startswith("#")} | \
                       {canon(w.name.split("-")[0]) for w in wheels}
        self.owners = importlib.metadata.packages_distributions()
        self.refused: set[str] = set()

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        owners = self.owners.get(top)
        if top in sys.stdlib_module_names or not owners or any(self.canon(d) in self.allowed for d in owners):
            return None  # the standard library, the project's own packages, or there on the machine
        self.refused.add(f"{top} ({', '.join(owners)})")
        raise ModuleNotFoundError(f"{name}: its distribution {owners} is neither on the GPU machine nor in the "
                                  "bundle (docker/gpu_bundle.sh)", name=name)


def run_part(name: str, ctx: Ctx, closure: Path | None = None) -> int:
    """Child process: one part; its figures (or its error) go to <work>/<name>.json."""
    guard = ImportGuard(closure) if closure else None
    if guard:
        sys.meta_path.insert(0, guard)
    if name in ("cuda", "distributed"):
        function = globals()[f"part_{name}"]
    else:
        module = __import__("gpu_check_finetune" if name.startswith(("gemma", "finetune")) else "gpu_check_models")
        function = getattr(module, "part_" + name.replace("-", "_"))
    try:
        figures = function(ctx)
        bad = {k: v for k, v in figures.items() if isinstance(v, float) and not math.isfinite(v)}
        assert not bad, f"non-finite figures {bad}"
        result = {"ok": True, "figures": figures}
    except BaseException as e:  # noqa: BLE001  (reported, then the next part runs)
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
    if guard and guard.refused:
        print(f"closure: refused {sorted(guard.refused)} (not on the GPU machine, not bundled)")
    (ctx.work / f"{name}.json").write_text(json.dumps(result))
    return 0 if result["ok"] else 1


def orchestrate(args) -> int:
    started = time.monotonic()
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    pythons = {"train": args.python_train or sys.executable, "extract": args.python_extract or sys.executable}
    print(f"gpu_check: {'DRY run (CPU, tiny sizes)' if args.dry else 'GPU run (real sizes)'}; work folder {work}",
          flush=True)
    results: dict[str, dict] = {}
    for name, (env, needs) in PARTS.items():
        if args.only and name not in args.only:
            continue
        missing = [n for n in needs if not results.get(n, {}).get("ok")]
        left = args.budget - (time.monotonic() - started)
        if missing or left < 10:
            results[name] = {"ok": False, "error": f"not run: needs {missing}" if missing else "no time left"}
            print(f"== {name}: {results[name]['error']}", flush=True)
            continue
        print(f"== {name} ({env} environment, {left:.0f} s left)", flush=True)
        part_started = time.monotonic()
        cmd = [pythons[env], str(Path(__file__)), "--part", name, "--work", str(work)] + (["--dry"] if args.dry else [])
        cmd += ["--closure", args.closure] if args.closure else []
        try:
            subprocess.run(cmd, cwd=REPO, timeout=left, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            results[name] = json.loads((work / f"{name}.json").read_text())
        except subprocess.TimeoutExpired:
            results[name] = {"ok": False, "error": f"timed out (budget {args.budget} s)"}
        except FileNotFoundError:
            results[name] = {"ok": False, "error": "the part died before reporting (see its output above)"}
        results[name]["seconds"] = time.monotonic() - part_started
        print(f"== {name}: {'ok' if results[name]['ok'] else 'FAILED: ' + results[name]['error']} "
              f"({results[name]['seconds']:.1f} s)", flush=True)
        if name == "cuda" and not results[name]["ok"] and not args.dry:
            break  # nothing else can run without the GPU: fail loudly, never skip
    failed = [n for n, r in results.items() if not r["ok"]]
    print("\n# gpu_check figures" + (" (dry run: CPU, tiny sizes; not GPU figures)" if args.dry else ""))
    for name, result in results.items():
        for key, value in result.get("figures", {}).items():
            print(f"{name.replace('-', '_')}_{key}: {value:.4g}" if isinstance(value, float) else
                  f"{name.replace('-', '_')}_{key}: {value}")
        print(f"{name.replace('-', '_')}_seconds: {result.get('seconds', 0):.1f}")
    print(f"gpu_check_failed_parts: {len(failed)}" + (f"  # {', '.join(failed)}" if failed else ""))
    print(f"gpu_check_seconds: {time.monotonic() - started:.1f}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps({"dry": args.dry, "parts": results}, indent=1))
    if not args.work:  # a temp folder of its own (the real-size model alone is 8.6 GB)
        shutil.rmtree(work, ignore_errors=True)
    return len(failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes (make gpu-check-dry)")
    parser.add_argument("--budget", type=float, default=480, help="seconds for all parts together")
    parser.add_argument("--work", help="folder for models, data and runs, kept (default: a temp folder, removed)")
    parser.add_argument("--out", help="also write gpu_check.json there")
    parser.add_argument("--only", nargs="*", choices=list(PARTS), help="run these parts only")
    parser.add_argument("--python-train", help="interpreter of the train parts (default: this one)")
    parser.add_argument("--python-extract", help="interpreter of the imagebind/extract parts (default: this one)")
    parser.add_argument("--closure", help="refuse imports of what the GPU machine lacks and this bundle folder does "
                                          "not carry (a dry run here then checks the bundle is complete)")
    parser.add_argument("--part", choices=list(PARTS), help=argparse.SUPPRESS)  # child process: one part
    args = parser.parse_args()
    if args.part:
        return run_part(args.part, Ctx(args.dry, Path(args.work)), Path(args.closure) if args.closure else None)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
