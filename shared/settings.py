"""Settings every job shares, so each means one thing everywhere (docs/CONTRACTS.md, "Config").

- `RunSettings` (mixed into a job's config): the run's name and where its files go, resume and overwrite;
- `DeviceSettings` (mixed in): device and CPU threads;
- `CheckpointSettings` (mixed into training jobs): how often to log and save;
- `DialogSelection` (a job's `data` section extends it): which VisDial dialogs and rounds a job reads;
- `OptimSettings` (a job's `optim` section extends it): learning rate, schedule length, batch sizes, clipping;
- `LoraSettings` (a job's `lora` section extends it): LoRA adapters.

One convention for "off": an optional number is `None` when unset (`num_threads: null` = the library's default,
`limit_dialogs: null` = every dialog); 0 is never a hidden "off". Ranges are checked when a config loads.
A run's files all live in `<outputs_root>/<run>/`; `checkpoints/` holds input weights only (checkpoints/README.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from shared.config import ConfigError

# Keys of the layout before runs moved out of checkpoints/: a config still naming one gets this fix.
CHECKPOINTS_ROOT_MOVED = ("a run's checkpoints now live in <outputs_root>/<run>/checkpoints and checkpoints/ holds "
                          "input weights only: drop checkpoints_root (outputs_root moves the whole run); an old run "
                          "folder moves with `mv checkpoints/<run> outputs/<run>/checkpoints`")


@dataclass
class RunSettings:
    """Which run this is and where its files go: everything a job writes is under <outputs_root>/<run>/."""

    run: str = "demo"  # the run's name
    outputs_root: str = "outputs"  # folder holding every run (a location, not a training setting)
    resume: bool = True  # continue an interrupted run where it stopped; finished work is never redone
    overwrite: bool = False  # allow replacing a run's existing outputs when not resuming (never needed to resume)

    moved_keys: ClassVar[dict[str, str]] = {"checkpoints_root": CHECKPOINTS_ROOT_MOVED}
    # Settings that locate or steer a run but never change its result: a resumed run may change them.
    LOCATION_KEYS: ClassVar[tuple[str, ...]] = ("outputs_root", "resume", "overwrite")

    @property
    def run_dir(self) -> Path:
        return Path(self.outputs_root) / self.run

    def __post_init__(self) -> None:
        parts = self.run.split("/")
        if not self.run.strip() or self.run.startswith("/") or ".." in parts or not self.run.isprintable():
            raise ConfigError(f"run={self.run!r}: not a usable run name (it becomes a folder under outputs_root)",
                              fix="give a plain name such as run=demo2 (a/b makes a subfolder)")
        _next_post_init(self, RunSettings)


@dataclass
class DeviceSettings:
    """Where the job computes."""

    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    num_threads: int | None = None  # torch CPU threads; null = torch's default

    LOCATION_KEYS: ClassVar[tuple[str, ...]] = ("num_threads",)

    def __post_init__(self) -> None:
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"num_threads={self.num_threads}: must be >= 1",
                              fix="give a thread count, or null for torch's default")
        _next_post_init(self, DeviceSettings)


@dataclass
class CheckpointSettings:
    """How often a training run logs and saves; none of it changes what the run learns."""

    save_every: int = 50  # optimizer steps between checkpoints (and one at the end)
    keep_checkpoints: int = 2  # the newest this many checkpoints are kept
    log_every: int = 5  # optimizer steps between metrics records

    LOCATION_KEYS: ClassVar[tuple[str, ...]] = ("save_every", "keep_checkpoints", "log_every")

    def __post_init__(self) -> None:
        for name in ("save_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1", fix=f"give {name} >= 1")
        _next_post_init(self, CheckpointSettings)


@dataclass
class DialogSelection:
    """Which dialogs and rounds of a VisDial-format split a job reads."""

    dialogs: str = "data/demo/train.json"  # VisDial-format JSON of the split
    rounds: Literal["all", "memory", "current", "last"] = "all"  # memory/current: rounds of that `kind` only
    limit_dialogs: int | None = None  # the first N dialogs only (smoke runs); null = every dialog

    def __post_init__(self) -> None:
        if self.limit_dialogs is not None and self.limit_dialogs < 1:
            raise ConfigError(f"limit_dialogs={self.limit_dialogs}: must be >= 1",
                              fix="give a dialog count, or null for every dialog")


@dataclass
class OptimSettings:
    """Optimisation: learning rate and its schedule, steps, batch sizes, clipping."""

    lr: float = 1e-4  # peak learning rate
    weight_decay: float = 0.0
    warmup_steps: int = 20  # linear warm-up from 0 to lr
    max_steps: int = 200  # optimizer steps of the whole run
    batch_size: int = 16  # samples per optimizer step, over all processes and accumulation steps
    micro_batch_size: int = 16  # samples per forward on one process (batch_size / micro = accumulation)
    clip_norm: float = 1.0  # gradient norm clipping

    def __post_init__(self) -> None:
        checks = [("lr", self.lr > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                  ("warmup_steps", self.warmup_steps >= 0, ">= 0"), ("max_steps", self.max_steps >= 1, ">= 1"),
                  ("batch_size", self.batch_size >= 1, ">= 1"),
                  ("micro_batch_size", self.micro_batch_size >= 1, ">= 1"), ("clip_norm", self.clip_norm > 0, "> 0")]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"optim.{name}={getattr(self, name)}: must be {rule}",
                                  fix=f"give optim.{name} a value {rule}")
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(f"optim.batch_size={self.batch_size} is not a multiple of optim.micro_batch_size="
                              f"{self.micro_batch_size}", fix="make batch_size a multiple of micro_batch_size")


@dataclass
class LoraSettings:
    """LoRA adapters (peft) on a frozen model."""

    enabled: bool = False
    r: int = 8  # adapter rank
    alpha: int = 16  # scale = alpha / r
    dropout: float = 0.0  # dropout on the adapters' input while training

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ConfigError(f"lora: r={self.r}, alpha={self.alpha}, dropout={self.dropout}",
                              fix="use r >= 1, alpha > 0 and 0 <= dropout < 1")


def refuse_old_layout(run: str, run_dir: Path) -> None:
    """Runs used to keep their checkpoints in checkpoints/<run>/: say where they go now rather than start over."""
    old = Path("checkpoints") / run
    markers = ("latest.json", "step-*", "checkpoint-*", "adapter_config.json")
    if (run_dir / "checkpoints").exists() or not old.is_dir() or not any(any(old.glob(m)) for m in markers):
        return
    raise ConfigError(f"{old}: a run written by an earlier version (runs kept their checkpoints in checkpoints/<run>)",
                      fix=f"move it to the new place: mkdir -p {run_dir} && mv {old} {run_dir / 'checkpoints'}")


def _next_post_init(obj: object, klass: type) -> None:
    """Run the next __post_init__ in the MRO after `klass`'s, so mixed-in settings classes each check their part."""
    nxt = getattr(super(klass, obj), "__post_init__", None)
    if nxt is not None:
        nxt()


def torch_device(choice: str):
    """The torch.device of a `device` setting: auto = cuda when torch sees a GPU; cuda without one is an input error."""
    import torch  # here, not at module level: the evaluator's environment stays light

    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA device here", fix="use device=auto or device=cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def location_keys(cfg: object) -> set[str]:
    """Top-level keys of `cfg` that a resumed run may change (locations and run control, not settings)."""
    keys: set[str] = set()
    for klass in type(cfg).__mro__:
        keys.update(getattr(klass, "LOCATION_KEYS", ()))
    return keys
