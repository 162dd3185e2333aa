"""Data-parallel training under torchrun: process group setup and gradient averaging.

Gradients of the trainable parameters are summed over processes with one coalesced all_reduce per optimizer step
(what DistributedDataParallel does, after its no_sync accumulation). The module is not wrapped in DDP because DDP
broadcasts every parameter at construction, which the frozen 4-bit LLM's packed bitsandbytes weights do not support;
the frozen weights are identical on every rank anyway (loaded from the same files). The loss is already normalised by
the GLOBAL batch size, so a sum of gradients over ranks equals the single-process gradient of the same global batch.
Each process works on GPU `LOCAL_RANK` of its node (`local_device`), the LLM included.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shared.config import ConfigError


@dataclass
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_device(device: torch.device, env: Mapping[str, str] | None = None) -> torch.device:
    """This process's device: under torchrun on CUDA, GPU `LOCAL_RANK` (made the current device), else `device`.

    Without this every rank would load its LLM and run its kernels on GPU 0 (`cuda` means the current device, 0 by
    default), which at best runs N copies on one GPU and at worst runs out of its memory.
    """
    env = os.environ if env is None else env
    if device.type != "cuda" or int(env.get("WORLD_SIZE", "1")) == 1:
        return device
    if "LOCAL_RANK" not in env:
        raise RuntimeError("WORLD_SIZE is set but LOCAL_RANK is not: start multi-GPU training with torchrun "
                           "(torchrun --nproc_per_node N -m services.train bridge ...)")
    if device.index is not None:
        raise ConfigError(f"device={device} with {env['WORLD_SIZE']} processes: each process takes cuda:LOCAL_RANK",
                          fix="use device=cuda (or auto) under torchrun; choose the GPUs with CUDA_VISIBLE_DEVICES")
    local, count = int(env["LOCAL_RANK"]), torch.cuda.device_count()
    if not 0 <= local < count:
        raise RuntimeError(f"LOCAL_RANK={local} but this node has {count} visible GPU(s): start at most {count} "
                           "processes per node (torchrun --nproc_per_node), or make more GPUs visible")
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def init(device: torch.device) -> World:
    """Join the torchrun process group (gloo on CPU, nccl on CUDA bound to `device`); a plain run is a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        if device.type == "cuda":  # device_id: NCCL's communicator is bound to this rank's GPU, not GPU 0
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return World(dist.get_rank(), dist.get_world_size())


def sum_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    if world.size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset: offset + n].view_as(p).clone()
        offset += n


def sum_scalar(value: float, world: World, device: torch.device) -> float:
    if world.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t)


def gather_objects(obj, world: World) -> list:
    """Every rank's `obj` on every rank (small JSON-like values such as RNG states)."""
    if world.size == 1:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def broadcast_parameters(params: list[torch.nn.Parameter], world: World) -> None:
    """Start every rank from rank 0's trainable weights."""
    if world.size == 1:
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def shutdown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
