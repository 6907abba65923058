"""What every public op does at its boundary: choose the backend, compute low precision in
float32 under autocast, make inputs contiguous once, reduce per-sample losses.

The backend is chosen here (through :func:`vmdm_kernels.dispatch.choose_backend`) once
per call, or once per trace under ``torch.compile``; how the chosen kernels are called
and differentiated is :mod:`vmdm_kernels.ops._registry`'s business.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..dispatch import choose_backend

__all__ = ["backend_name", "compute_dtype", "contig", "reduce"]


@torch.compiler.assume_constant_result
def backend_name(device_type: str, requested: Optional[str]) -> str:
    # Decided once per trace: the choice depends only on the device type,
    # the request and the environment, never on tensor values.
    return choose_backend(torch.device(device_type), requested)


def compute_dtype(*tensors):
    """Under autocast the ops compute in float32, as torch does for losses."""
    low = (torch.float16, torch.bfloat16)
    return [t.float() if t is not None and t.dtype in low else t for t in tensors]


def contig(t):
    return None if t is None else t.contiguous()


def reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample
