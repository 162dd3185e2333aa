"""Checks that run before any model code is imported: a missing run is one clear line within a second.

Only paths are looked at here (no torch, no gradio); the engines then load and check everything in full.
"""
from __future__ import annotations

from pathlib import Path

from shared.settings import refuse_old_layout

from services.train.chat.config import ChatConfig, ChatError

LATEST = "latest.json"  # services/train/bridge/checkpoints.py's marker of the newest complete step folder
ADAPTER_DIR, TRAIN_CONFIG = "adapter", "finetune_config.yaml"  # services/train/finetune/config.py's names


def require_trained_run(cfg: ChatConfig) -> None:
    """The bridge run (or the step folder) to chat with exists."""
    if cfg.bridge.checkpoint is not None:
        if not Path(cfg.bridge.checkpoint, "state.json").is_file():
            raise ChatError(f"bridge.checkpoint={cfg.bridge.checkpoint}: not a bridge step folder (state.json missing)",
                            fix="give a folder outputs/<run>/checkpoints/step-*, or null for the run's latest")
        return
    refuse_old_layout(cfg.run, cfg.run_dir)
    if not (cfg.run_dir / "checkpoints" / LATEST).is_file():
        raise ChatError(f"{cfg.run_dir / 'checkpoints'}: no trained bridge run '{cfg.run}' yet",
                        fix="run `make demo` (the whole demo pipeline, about 9 minutes on a CPU), or `make "
                            "train-bridge` once the demo data and embeddings exist; or set run=<a trained run>")


def require_adapter(cfg: ChatConfig) -> None:
    """The fine-tuned adapter to chat with exists (gemma.adapter=none: the base model alone)."""
    if cfg.gemma.adapter == "none":
        return
    folder = Path(cfg.gemma.adapter) if cfg.gemma.adapter else cfg.run_dir / ADAPTER_DIR
    if not (folder / TRAIN_CONFIG).is_file():
        raise ChatError(f"{folder}: no finished fine-tuning run (no {TRAIN_CONFIG})",
                        fix="run `make finetune` (GPU) or `make finetune-tiny` (a CPU smoke run), then "
                            "run=<that run>; or gemma.adapter=none to talk to the base model")


def check(cfg: ChatConfig) -> None:
    require_adapter(cfg) if cfg.model == "gemma" else require_trained_run(cfg)
    if cfg.model == "bridge" and cfg.bridge.candidates is not None and not Path(cfg.bridge.candidates).is_file():
        raise ChatError(f"bridge.candidates={cfg.bridge.candidates}: no such file",
                        fix="run `make data-demo`, or set bridge.candidates=null for no ranking")
