"""One process or many (torchrun): the device of each rank, the process group, the random
streams a resumed rank continues with, and the global-batch weighted mean."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["resolve_device", "setup_distributed", "timestep_weighted_mean", "resume_rng", "reseed"]


def resolve_device(device_arg: str | None, world: int, local_rank: int, cuda_available: bool) -> torch.device:
    """The training device: ``cuda:LOCAL_RANK`` under torchrun, else what ``--device`` says.

    Under torchrun each rank owns one GPU, so ``--device cuda`` means the rank's own GPU and
    an explicit other index (which would put several ranks on one GPU) is refused.
    """
    if device_arg is None:
        return torch.device(f"cuda:{local_rank}" if cuda_available else "cpu")
    device = torch.device(device_arg)
    if device.type != "cuda":
        return device
    if world > 1:
        if device.index is not None and device.index != local_rank:
            raise ValueError(f"--device: expected 'cuda' or 'cuda:{local_rank}' under torchrun (LOCAL_RANK "
                             f"{local_rank}; one GPU per rank), got {device_arg!r}")
        return torch.device(f"cuda:{local_rank}")
    return device if device.index is not None else torch.device("cuda:0")


def setup_distributed(device_arg: str | None):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_arg, world, local, torch.cuda.is_available())
    if device.type == "cuda":
        # Kernels launched on the current device (Triton's, cuBLAS handles) must run on this one.
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def timestep_weighted_mean(losses: torch.Tensor, weights: torch.Tensor, world: int) -> torch.Tensor:
    """sum(w * loss) / sum(w) over the global batch.

    DDP averages the ranks' gradients, so with several ranks each one's weighted sum is
    divided by the global weight sum and scaled by the rank count; dividing by its own sum
    would make the gradient depend on how the batch is split.
    """
    den = weights.sum().detach()
    if world > 1:
        den = den.clone()
        dist.all_reduce(den)
        return (losses * weights).sum() * world / den
    return (losses * weights).sum() / den


def resume_rng(saved: list, rank: int, world: int) -> dict | None:
    """The random state rank ``rank`` resumes with, or None when it must be reseeded.

    With as many ranks as were saved each rank continues its own streams; with another
    count, handing saved streams round would give two ranks the same noise, so every rank
    is reseeded from (seed, step, rank) instead.
    """
    if len(saved) == world:
        return saved[rank]
    return None


def reseed(seed: int, step: int, rank: int) -> None:
    value = (seed * 1_000_003 + step) * 4_099 + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
