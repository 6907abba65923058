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


def cuda_profiler_start() -> bool:
    """Start the CUDA profiler capture range (``nsys --capture-range=cudaProfilerApi``)."""
    if not torch.cuda.is_available():
        return False
    torch.cuda.cudart().cudaProfilerStart()
    return True


def cuda_profiler_stop() -> None:
    if torch.cuda.is_available():
        torch.cuda.cudart().cudaProfilerStop()
