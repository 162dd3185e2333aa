"""Config dataclasses of the cluster launcher (no submitit here: any environment can validate configs/cluster/*.yaml).

A `ClusterConfig` says *where and how* a stage runs on Slurm (partition, GPUs, time, container, interpreter); *what*
runs is the stage's own config plus its `key=value` overrides, passed to every job unchanged. Two ways to say it:
- `submit extract --config configs/extract/cpu_default.yaml [--cluster <cluster yaml>] [flags] [key=value ...]`;
- `submit --config configs/cluster/<name>.yaml [flags] [key=value ...]`: a cluster YAML naming its `stage`,
  `stage_config` (and `stage_verb`, `stage_overrides`), so a whole submission is one reviewed file.
Command-line flags (`--partition gpu --gpus-per-node 1 ...`) override the cluster YAML.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.config import ConfigError


@dataclass
class Resources:
    """What one Slurm job (or one array task) asks for."""
    partition: str | None = None  # --partition; None = the cluster's default partition
    gpus_per_node: int = 0  # --gpus-per-node; 0 = a CPU-only job
    cpus_per_task: int = 4  # --cpus-per-task: DataLoader workers + torch threads
    mem_gb: int | None = None  # --mem in GB; None = the partition's default
    timeout_min: int = 60  # --time in minutes
    account: str | None = None  # --account, where the cluster bills by account
    qos: str | None = None  # --qos
    constraint: str | None = None  # --constraint, e.g. "a100|h100"

    def __post_init__(self) -> None:
        if self.gpus_per_node < 0 or self.cpus_per_task < 1 or self.timeout_min < 1:
            raise ConfigError(f"resources: need gpus_per_node >= 0, cpus_per_task >= 1, timeout_min >= 1; got {self}")
        if self.mem_gb is not None and self.mem_gb < 1:
            raise ConfigError(f"resources.mem_gb={self.mem_gb}: give >= 1, or null for the partition's default")


def _finalize_resources() -> Resources:
    return Resources(cpus_per_task=1, timeout_min=30)


@dataclass
class ClusterConfig:
    stage: Literal["extract", "train"] | None = None  # what to submit (only when this YAML is the --config)
    stage_config: str | None = None  # the stage's YAML, e.g. configs/extract/imagebind_huge.yaml
    stage_verb: str | None = None  # train: the services.train verb (bridge, finetune, infer, ...); None = bridge
    stage_overrides: list[str] = field(default_factory=list)  # key=value overrides of the stage's config
    job: Resources = field(default_factory=Resources)  # each array task (extract) or the training job
    finalize: Resources = field(default_factory=_finalize_resources)  # the job that builds index.json after the array
    num_shards: int | None = None  # extract: shards of the split; None = the extract config's num_shards
    array_parallelism: int = 64  # extract: at most this many array tasks run at once (sbatch --array=...%N)
    python: str = ""  # interpreter on the nodes; "" = .venvs/<env>/bin/python, or `python` inside --container
    container: str | None = None  # Apptainer image (.sif): run the stage with `apptainer exec [--nv] <sif> python ...`
    apptainer: str = "apptainer"  # the Apptainer (or Singularity) executable on the nodes
    binds: list[str] = field(default_factory=list)  # extra `apptainer exec --bind` specs, e.g. "/scratch:/scratch"
    logs_dir: str = "outputs/cluster"  # submitit folders, rendered sbatch files and submission manifests
    signal_delay_s: int = 120  # train: Slurm sends USR2 this long before the time limit -> checkpoint + requeue
    max_requeues: int = 3  # train: time-outs requeued before the job is given up (submitit max_num_timeout)
    resume_override: str = "resume=true"  # train: the override appended when a requeued job restarts
    grace_s: int = 60  # train: seconds the stage gets after SIGTERM to save a checkpoint before the requeue

    def __post_init__(self) -> None:
        if self.num_shards is not None and self.num_shards < 1:
            raise ConfigError(f"num_shards={self.num_shards}: must be >= 1")
        if self.array_parallelism < 1:
            raise ConfigError(f"array_parallelism={self.array_parallelism}: must be >= 1")
        if (self.stage is None) != (self.stage_config is None):
            raise ConfigError("stage and stage_config go together: name both (a complete submission) or neither")
        bad = [o for o in self.stage_overrides if "=" not in o]
        if bad:
            raise ConfigError(f"stage_overrides: {bad[0]!r} is not a key=value override")
        if "=" not in self.resume_override:
            raise ConfigError(f"resume_override={self.resume_override!r}: give a key=value override, e.g. resume=true")


# `python -m services.cluster submit|render <stage> --cluster <yaml>`: both verbs read the same config.
JOBS = {"submit": ClusterConfig, "render": ClusterConfig}
DEFAULT_VERB = "submit"
# Which stage runs in which environment (and so which .venvs/<env> or image): the stages this launcher knows.
STAGE_ENVS = {"extract": "extract", "train": "train"}
