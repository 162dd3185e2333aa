"""Settings of the cluster launcher's verbs `submit` and `render` (no submitit here: any environment validates them).

One YAML says what runs and where (configs/cluster/*.yaml):
- `stage`: the stage's own job config, unchanged — its service and verb, its YAML, and overrides of that YAML as a
  mapping (`stage.overrides.split=train` on the command line), passed to every job;
- `cluster`: where and how it runs on Slurm (resources per job, shards, interpreter or Apptainer image, requeueing).
Every key is overridable like any other job's: `python -m services.cluster submit --config FILE cluster.job.partition=gpu
dry_run=true`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from shared.config import REQUIRED, ConfigError

def check_text(where: str, value: str | None, sbatch: bool = False) -> None:
    """Values end up in shell scripts and #SBATCH lines: control characters (a newline would start a new script
    line) are never meant; #SBATCH values cannot hold spaces either. The value itself is not echoed."""
    if value is None:
        return
    if any(not ch.isprintable() for ch in str(value)):
        raise ConfigError(f"{where} holds a control character (e.g. a newline)",
                          fix=f"give {where} a one-line value without control characters")
    if sbatch and any(ch.isspace() for ch in str(value)):
        raise ConfigError(f"{where}={value!r} holds a space, which a #SBATCH line cannot carry",
                          fix=f"give {where} a value without spaces")


# Which stages the launcher knows, and the environment (.venvs/<env> or image) each runs in.
STAGE_ENVS = {"extract": "extract", "train": "train"}
RESERVED_OVERRIDES = ("shard_index", "num_shards")  # the launcher sets these per task


@dataclass
class Resources:
    """What one Slurm job (or one array task) asks for."""

    partition: str | None = None  # --partition; null = the cluster's default partition
    gpus_per_node: int = 0  # --gpus-per-node; 0 = a CPU-only job
    cpus_per_task: int = 4  # --cpus-per-task: DataLoader workers + torch threads
    mem_gb: int | None = None  # --mem in GB; null = the partition's default
    timeout_min: int = 60  # --time in minutes
    account: str | None = None  # --account, where the cluster bills by account
    qos: str | None = None  # --qos
    constraint: str | None = None  # --constraint, e.g. "a100|h100"

    def __post_init__(self) -> None:
        for name in ("partition", "account", "qos", "constraint"):
            check_text(f"resources.{name}", getattr(self, name), sbatch=True)
        if self.gpus_per_node < 0 or self.cpus_per_task < 1 or self.timeout_min < 1:
            raise ConfigError(f"resources: gpus_per_node={self.gpus_per_node}, cpus_per_task={self.cpus_per_task}, "
                              f"timeout_min={self.timeout_min}",
                              fix="use gpus_per_node >= 0, cpus_per_task >= 1, timeout_min >= 1")
        if self.mem_gb is not None and self.mem_gb < 1:
            raise ConfigError(f"resources.mem_gb={self.mem_gb}: must be >= 1",
                              fix="give >= 1, or null for the partition's default")


def _finalize_resources() -> Resources:
    return Resources(cpus_per_task=1, timeout_min=30)


@dataclass
class StageSettings:
    """What each job runs: `python -m services.<service> <verb> --config <config> <overrides as key=value>`."""

    service: Literal["extract", "train"] = "extract"
    verb: str | None = None  # the service's verb; null = its default (extract: extract, train: bridge)
    config: str = REQUIRED  # the stage's own YAML, e.g. configs/extract/imagebind_huge.yaml
    overrides: dict[str, Any] = field(default_factory=dict)  # overrides of that YAML, e.g. {split: val}

    def __post_init__(self) -> None:
        check_text("stage.verb", self.verb)
        check_text("stage.config", self.config)
        for key, value in _flatten(self.overrides):
            check_text(f"stage.overrides.{key}", key)
            check_text(f"stage.overrides.{key}", value if isinstance(value, str) else str(value))
        reserved = [k for k in self.overrides if k in RESERVED_OVERRIDES]
        if reserved:
            raise ConfigError(f"stage.overrides.{reserved[0]}: the launcher sets {reserved[0]} for every task",
                              fix="use cluster.num_shards=N instead")

    @property
    def verb_name(self) -> str:
        return self.verb or {"extract": "extract", "train": "bridge"}[self.service]

    def override_args(self) -> list[str]:
        """The overrides as `a.b=value` words (nested mappings flattened, lists as YAML flow lists)."""
        return [f"{key}={_yaml_scalar(value)}" for key, value in _flatten(self.overrides)]


def _flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((prefix + key, value))
    return out


def _yaml_scalar(value: Any) -> str:
    import yaml

    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("\n...").strip()


@dataclass
class ClusterSettings:
    """Where and how the stage runs on Slurm."""

    job: Resources = field(default_factory=Resources)  # each array task (extract) or the training job
    finalize: Resources = field(default_factory=_finalize_resources)  # the job that builds index.json after the array
    num_shards: int | None = None  # extract: shards of the split; null = the extract config's num_shards
    array_parallelism: int = 64  # extract: at most this many array tasks run at once (sbatch --array=...%N)
    python: str | None = None  # interpreter on the nodes; null = .venvs/<env>/bin/python, or `python` in a container
    container: str | None = None  # Apptainer image (.sif): run the stage with `apptainer exec [--nv] <sif> python ...`
    apptainer: str = "apptainer"  # the Apptainer (or Singularity) executable on the nodes
    binds: list[str] = field(default_factory=list)  # extra `apptainer exec --bind` specs, e.g. "/scratch:/scratch"
    logs_dir: str = "outputs/cluster"  # submitit folders, rendered sbatch files and submission manifests
    signal_delay_s: int = 120  # train: Slurm sends USR2 this long before the time limit -> checkpoint + requeue
    max_requeues: int = 3  # train: time-outs requeued before the job is given up (submitit max_num_timeout)
    resume_override: str = "resume=true"  # train: the override appended when a requeued job restarts
    grace_s: int = 60  # train: seconds the stage gets after SIGTERM to save a checkpoint before the requeue

    def __post_init__(self) -> None:
        for name in ("python", "container", "apptainer", "resume_override"):
            check_text(f"cluster.{name}", getattr(self, name))
        for bind in self.binds:
            check_text("cluster.binds", bind)
        check_text("cluster.logs_dir", self.logs_dir, sbatch=True)  # it becomes the #SBATCH --output folder
        if self.num_shards is not None and self.num_shards < 1:
            raise ConfigError(f"cluster.num_shards={self.num_shards}: must be >= 1",
                              fix="give >= 1, or null for the extract config's num_shards")
        if self.array_parallelism < 1:
            raise ConfigError(f"cluster.array_parallelism={self.array_parallelism}: must be >= 1", fix="give >= 1")
        if "=" not in self.resume_override:
            raise ConfigError(f"cluster.resume_override={self.resume_override!r} is not a key=value override",
                              fix="e.g. resume_override=resume=true")
        # the finalize job runs where the array runs unless the YAML says otherwise
        for name in ("partition", "account", "qos"):
            if getattr(self.finalize, name) is None:
                setattr(self.finalize, name, getattr(self.job, name))


@dataclass
class ClusterJobConfig:
    """A submission: the stage's own config plus the cluster section."""

    stage: StageSettings = field(default_factory=StageSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    dry_run: bool = False  # submit: print the plan and the commands, submit nothing
    wait: bool = False  # submit: block until the jobs end; exit status 1 if one failed
    out: str | None = None  # render: folder for the sbatch scripts; null = <logs_dir>/sbatch

    def __post_init__(self) -> None:
        check_text("out", self.out, sbatch=True)  # the scripts' log folder is inside it

    moved_keys: ClassVar[dict[str, str]] = {key: ("the cluster YAML has two sections now: stage {service, verb, config, overrides} and cluster "
                        "{job, finalize, num_shards, ...}; see configs/cluster/*.yaml")
                  for key in ("stage_config", "stage_verb", "stage_overrides", "job", "logs_dir", "num_shards")}
