"""NVTX ranges for Nsight Systems, as no-ops where they cannot work.

``nvtx_range("step")`` is a context manager and decorator. It emits an NVTX
range only when profiling is enabled (``enable_nvtx(True)`` or ``VMDM_NVTX=1``)
and CUDA is available; on a CPU-only torch build ``torch.cuda.nvtx`` raises,
so it is never touched there.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["nvtx_range", "enable_nvtx", "nvtx_enabled", "cuda_profiler_start", "cuda_profiler_stop"]

_enabled = os.environ.get("VMDM_NVTX", "0") == "1"


def enable_nvtx(on: bool = True) -> None:
    global _enabled
    _enabled = on


def nvtx_enabled() -> bool:
    return _enabled and torch.cuda.is_available()


class nvtx_range(contextlib.ContextDecorator):
    def __init__(self, name: str):
        self.name = name
        self._pushed = False

    def __enter__(self):
        if nvtx_enabled():
            torch.cuda.nvtx.range_push(self.name)
            self._pushed = True
        return self

    def __exit__(self, *exc):
        if self._pushed:
            torch.cuda.nvtx.range_pop()
            self._pushed = False
        return False


def cuda_profiler_start(device: torch.device | str | None = None) -> bool:
    """Start the CUDA profiler capture range (``nsys --capture-range=cudaProfilerApi``).

    A no-op (returns False) unless ``device`` is a GPU (default: any GPU is visible). The
    queued work is finished first so the capture holds only the steps after the call.
    """
    if not _is_gpu(device):
        return False
    torch.cuda.synchronize(device)
    torch.cuda.profiler.start()
    return True


def cuda_profiler_stop(device: torch.device | str | None = None) -> None:
    if _is_gpu(device):
        torch.cuda.synchronize(device)
        torch.cuda.profiler.stop()


def _is_gpu(device) -> bool:
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda" and torch.cuda.is_available()
