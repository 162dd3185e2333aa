"""Atomic training checkpoints: trainable weights, optimizer, scheduler, RNG and data position — no pickle.

Layout: `<outputs_root>/<run>/checkpoints/step-000050/{weights.safetensors, optimizer.safetensors, state.json}` and
`<outputs_root>/<run>/checkpoints/latest.json` naming the newest complete step folder. A step folder is written under a temporary
name and renamed once complete, and latest.json is replaced atomically afterwards, so a kill at any moment leaves
either the previous checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from shared.config import from_dict, to_dict
from shared.files import atomic_write_text, fsync_dir
from shared.settings import location_keys

LATEST = "latest.json"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(folder: Path, step: int, weights: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                    scheduler, position: dict, extra: dict, keep: int,
                    rng_per_rank: list[tuple[dict[str, torch.Tensor], dict]]) -> Path:
    """Write step folder + latest.json atomically; keep the newest `keep` step folders.

    `rng_per_rank` holds every process's RNG state (from `rng_state()`), so dropout continues identically per rank.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:06d}"
    for stale in folder.glob(".tmp-step-*"):  # a save cut off by a kill
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder / f".tmp-step-{step:06d}-{os.getpid()}"
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    rng_tensors = {f"rng{rank}.{k}": v for rank, (tensors, _) in enumerate(rng_per_rank) for k, v in tensors.items()}
    save_file({**{f"opt.{k}": v for k, v in opt_tensors.items()}, **rng_tensors}, str(tmp / "optimizer.safetensors"))
    state = {"step": step, "position": position, "optimizer": opt_meta, "rng": [meta for _, meta in rng_per_rank],
             "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}, **extra}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    for name in ("weights.safetensors", "optimizer.safetensors", "state.json"):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(folder)
    atomic_write_text(folder / LATEST, json.dumps({"step": step, "dir": final.name}))
    steps = sorted(p for p in folder.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The step folder that `folder`/latest.json names (None when there is none yet)."""
    marker = folder / LATEST
    if not marker.is_file():
        return None
    folder = folder / json.loads(marker.read_text())["dir"]
    if not (folder / "state.json").is_file():
        raise FileNotFoundError(f"{marker} names {folder}, which is incomplete or gone; delete {marker} to restart "
                                "from the previous step folder, or the whole run folder to start over")
    return folder


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / "weights.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {folder} is not a bridge checkpoint folder")
    return load_file(str(path))


def read_state(folder: Path) -> dict:
    """A step folder's state.json: step, data position, optimizer/scheduler/RNG metadata, config, dims, ..."""
    return json.loads((folder / "state.json").read_text())


def restore(folder: Path, state: dict, optimizer: torch.optim.Optimizer, scheduler, rank: int = 0) -> None:
    """Load optimizer, scheduler and this rank's RNG state of `folder` (whose `read_state` is `state`)."""
    tensors = load_file(str(folder / "optimizer.safetensors"))
    _load_optimizer(optimizer, {k[4:]: v for k, v in tensors.items() if k.startswith("opt.")}, state["optimizer"])
    scheduler.load_state_dict({**scheduler.state_dict(), **state["scheduler"]})
    if rank >= len(state["rng"]):
        raise ValueError(f"{folder}: saved by {len(state['rng'])} processes; resume it with the same number")
    prefix = f"rng{rank}."
    set_rng_state({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, state["rng"][rank])


def changed_settings(saved: dict, cfg) -> list[str]:
    """Top-level config keys whose values differ between a checkpoint's saved config and `cfg`. Locations and run
    control (outputs_root, resume, threads, how often to save or log) are not settings; keys added to the config
    classes after the save compare as their defaults."""
    before, now = to_dict(from_dict(type(cfg), saved)), to_dict(cfg)
    ignored = location_keys(cfg)
    return sorted(k for k in now if k not in ignored and now[k] != before.get(k))
