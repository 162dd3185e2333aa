"""Every pipeline name and path the docker tests rely on, in one place.

The tests run the demo at the tiny size of tests/e2e/test_demo_pipeline.py: a few dialogs, six bridge steps with a
checkpoint every two, so the first checkpoint comes early enough to kill the run after it.
"""
from __future__ import annotations

from pathlib import Path

RUN = "demo"  # the run name of configs/train/bridge_demo.yaml and infer_demo.yaml
PREPARE_WEIGHTS_VERB = "prepare-weights"  # the train verb that converts the packaged SmolLM2
WEIGHTS_CONFIG = "configs/train/weights_demo.yaml"
LLM_DIR = "checkpoints/smollm2-135m-instruct"  # input weights, made by the verb above
BRIDGE_CONFIG = "configs/train/bridge_demo.yaml"
INFER_CONFIG = "configs/train/infer_demo.yaml"
EXTRACT_CONFIG = "configs/extract/cpu_default.yaml"
EVALUATE_CONFIG = "configs/evaluate/default.yaml"
EMBEDDINGS = "embeddings/cpu_default"  # + /<split>/
PREDICTIONS = f"outputs/{RUN}/predictions.jsonl"
REPORT = f"outputs/{RUN}/eval/report.md"

DIALOGS = {"train": 24, "val": 6, "test": 4}
DATA_ARGS = ["--train-dialogs", str(DIALOGS["train"]), "--val-dialogs", str(DIALOGS["val"]),
             "--test-dialogs", str(DIALOGS["test"])]
MAX_STEPS, SAVE_EVERY = 6, 2
BRIDGE_ARGS = ["optim.batch_size=4", "optim.micro_batch_size=4", "optim.warmup_steps=1", f"save_every={SAVE_EVERY}",
               "log_every=1", "model.qformer.num_hidden_layers=2", f"optim.max_steps={MAX_STEPS}"]


def bridge_checkpoints(project: Path, run: str = RUN) -> Path:
    """The folder of the bridge's step-XXXXXX/ checkpoints + latest.json."""
    return project / "outputs" / run / "checkpoints"


def step_dir(project: Path, step: int, run: str = RUN) -> Path:
    return bridge_checkpoints(project, run) / f"step-{step:06d}"


def metrics(project: Path, run: str = RUN) -> Path:
    return project / "outputs" / run / "metrics.jsonl"


def mount_folders(project: Path) -> list[Path]:
    """The bind-mounted folders of compose.yaml: the only host paths a container may write."""
    return [project / name for name in ("data", "checkpoints", "outputs", "embeddings")]
