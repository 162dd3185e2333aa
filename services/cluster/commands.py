"""What each Slurm job runs: the stage's own command line, built once here for submitit and the sbatch templates alike.

Nothing here talks to Slurm, so the commands and the shard plan can be checked from any environment.
The stage's config class is read through `services.<stage>.verbs.VERBS` (the same light registry the stage's own
command line and tests/unit/shared/test_configs.py use), so a bad config fails on the login node, before 64 array
tasks fail one by one on the compute nodes.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from services.cluster.config import STAGE_ENVS, ClusterSettings, StageSettings
from shared.config import ConfigError, load_config
from shared.shards import INDEX_NAME, missing_shards

REPO_ROOT = Path(__file__).resolve().parents[2]


def stage_class(stage: StageSettings) -> type:
    """The config class of the stage's verb, from the stage's own verb registry."""
    verbs = importlib.import_module(f"services.{stage.service}.verbs").VERBS
    if stage.verb_name not in verbs:
        raise ConfigError(f"stage.verb={stage.verb_name!r} is not a verb of services.{stage.service}",
                          fix=f"choose one of {', '.join(verbs)}")
    return verbs[stage.verb_name].config


def stage_python(cfg: ClusterSettings, stage: str) -> str:
    """The interpreter that runs `stage` on a node: --python, `python` in a container, else the stage's venv."""
    if cfg.python:  # a bare name is looked up on the node's PATH; a path is taken from the repository root
        # abspath, not resolve(): a venv's python is a symlink that must stay one
        return cfg.python if "/" not in cfg.python else os.path.abspath(REPO_ROOT / cfg.python)
    if cfg.container:
        return "python"
    return str(REPO_ROOT / ".venvs" / STAGE_ENVS[stage] / "bin" / "python")


def wrap(cfg: ClusterSettings, argv: list[str], gpus: int) -> list[str]:
    """Prefix `apptainer exec [--nv] [--bind ...] <sif>` when a container image is configured.

    Apptainer binds the current folder by default and starts there, so the repository's data/, embeddings/ and
    configs/ resolve exactly as they do outside the container.
    """
    if not cfg.container:
        return list(argv)
    nv = ["--nv"] if gpus > 0 else []
    binds = [f"--bind={b}" for b in cfg.binds]
    return [cfg.apptainer, "exec", *nv, *binds, str(cfg.container), *argv]


def job_path(path: str) -> str:
    """A path as the jobs see it (they start in the repository root): relative inside the repository, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(REPO_ROOT))
    except ValueError:
        return str(absolute)


@dataclass
class ExtractPlan:
    """One split's extraction: which shards still lack their done-marker, and where they go."""
    config_path: str
    overrides: list[str]
    num_shards: int
    split: str
    out_dir: Path
    missing: list[int]

    @property
    def index_done(self) -> bool:
        return not self.missing and (self.out_dir / INDEX_NAME).is_file()

    @property
    def job_name(self) -> str:
        return f"extract-{self.out_dir.parent.name}-{self.split}"


def plan_extract(stage: StageSettings, num_shards: int | None) -> ExtractPlan:
    """Load the extract config (with the overrides) and list the shards without a done-marker."""
    overrides = stage.override_args()
    extra = [f"num_shards={num_shards}"] if num_shards is not None else []
    stage_cfg = load_config(stage_class(stage), stage.config, overrides + extra)
    n = stage_cfg.num_shards
    out_dir = stage_cfg.out_dir if stage_cfg.out_dir.is_absolute() else REPO_ROOT / stage_cfg.out_dir
    return ExtractPlan(job_path(stage.config), overrides, n, stage_cfg.split, out_dir, missing_shards(out_dir, n))


def extract_base_command(cfg: ClusterSettings, plan: ExtractPlan) -> list[str]:
    """The extraction command without its shard arguments (the sbatch template appends them from the array index)."""
    argv = [stage_python(cfg, "extract"), "-m", "services.extract", "--config", plan.config_path, *plan.overrides]
    return wrap(cfg, argv, cfg.job.gpus_per_node)


def extract_shard_command(cfg: ClusterSettings, plan: ExtractPlan, shard: int) -> list[str]:
    return extract_base_command(cfg, plan) + [f"shard_index={shard}", f"num_shards={plan.num_shards}"]


def extract_finalize_command(cfg: ClusterSettings, plan: ExtractPlan) -> list[str]:
    argv = [stage_python(cfg, "extract"), "-m", "services.extract", "finalize", "--config", plan.config_path,
            *plan.overrides, f"num_shards={plan.num_shards}"]
    return wrap(cfg, argv, cfg.finalize.gpus_per_node)


def validate_train(stage: StageSettings, resume_override: str) -> None:
    """Load the training config on the login node, as submitted and as requeued (with the resume override), so a
    typo fails now, not after hours in the queue or at the first requeue."""
    cls, overrides = stage_class(stage), stage.override_args()
    load_config(cls, stage.config, overrides)
    try:
        load_config(cls, stage.config, with_resume(overrides, resume_override))
    except ConfigError as e:
        raise ConfigError(f"the requeued job would fail: {e.message}",
                          fix="set cluster.resume_override to the key this job resumes with") from None


def train_command(cfg: ClusterSettings, stage: StageSettings) -> list[str]:
    argv = [stage_python(cfg, "train"), "-m", "services.train", stage.verb_name, "--config", job_path(stage.config),
            *stage.override_args()]
    return wrap(cfg, argv, cfg.job.gpus_per_node)


def with_resume(command: list[str], resume_override: str) -> list[str]:
    """The same command asking the stage to continue from its last checkpoint (added once, replacing `key=...`)."""
    key = resume_override.split("=", 1)[0] + "="
    return [arg for arg in command if not arg.startswith(key)] + [resume_override]
