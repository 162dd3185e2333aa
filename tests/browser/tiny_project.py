"""A tiny but real demo project for the browser tests, built by the project's own entry points in their own venvs.

data/prepare_demo.py (few dialogs) -> services.extract (cpu_default, train + val) -> services.train bridge (the demo
recipe for a few steps, real SmolLM2-135M) -> services.train infer (val) -> services.evaluate (dialogs.html). The
answers of a bridge trained for a few steps are poor, but every part is the real one. Relative paths as in the
shipped configs: every command runs with the project folder as its working directory and the repository on PYTHONPATH.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.demo_artifacts import ROOT, smollm2, venv_python

TRAIN_OVERRIDES = ["optim.max_steps=4", "optim.batch_size=4", "optim.micro_batch_size=4", "optim.warmup_steps=1",
                   "save_every=4", "log_every=1", "model.qformer.num_hidden_layers=2", "device=cpu"]


def project_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", GRADIO_ANALYTICS_ENABLED="False")


def run(env: str, args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = subprocess.run([venv_python(env), *args], cwd=cwd, env=project_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    print(f"tiny project: {' '.join(args[:3])} ... {time.monotonic() - start:.0f} s")
    return proc


def build(project: Path) -> Path:
    """Build everything under `project`; returns it. The bridge run is outputs/demo (configs' default run)."""
    (project / "checkpoints").mkdir(parents=True, exist_ok=True)
    link = project / "checkpoints" / "smollm2-135m-instruct"
    if not link.exists():
        link.symlink_to(smollm2())
    run("evaluate", [str(ROOT / "data/prepare_demo.py"), "--out", "data/demo", "--train-dialogs", "24",
                     "--val-dialogs", "6", "--test-dialogs", "2"], project)
    for split in ("train", "val"):
        run("extract", ["-m", "services.extract", "--config", str(ROOT / "configs/extract/cpu_default.yaml"),
                        f"split={split}", "num_workers=0"], project)
    run("train", ["-m", "services.train", "bridge", "--config", str(ROOT / "configs/train/bridge_demo.yaml"),
                  *TRAIN_OVERRIDES], project)
    run("train", ["-m", "services.train", "infer", "--config", str(ROOT / "configs/train/infer_demo.yaml"),
                  "device=cpu"], project)
    run("evaluate", ["-m", "services.evaluate", "--config", str(ROOT / "configs/evaluate/default.yaml"),
                     "bertscore.enabled=false", "bootstrap.samples=50"], project)
    return project
