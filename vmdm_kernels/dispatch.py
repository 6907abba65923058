"""The one place that chooses a backend.

Backends: ``reference`` (pure PyTorch, any device), ``cpp`` (compiled C++ CPU
kernels), ``cuda`` (compiled CUDA kernels), ``triton`` (Triton kernels on
CUDA devices, or on CPU under ``TRITON_INTERPRET=1``).

Selection: an explicit ``backend=`` argument wins, then the ``VMDM_BACKEND``
environment variable, then the fastest available backend for the tensors'
device. Asking for a backend that cannot run raises
:class:`BackendUnavailableError` with the reason; automatic selection that has
to use the reference says so once with a warning.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from dataclasses import dataclass

import torch

__all__ = ["BACKENDS", "BackendInfo", "BackendUnavailableError", "backends", "choose_backend", "kernel_module",
           "refresh"]

BACKENDS = ("reference", "cpp", "cuda", "triton")
# Automatic preference per device type, fastest first (measured: see docs/kernels.md).
_PREFERENCE = {"cuda": ("cuda", "triton", "reference"), "cpu": ("cpp", "reference")}


class BackendUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class BackendInfo:
    name: str
    available: bool
    reason: str  # why not available, or what it runs on
    devices: tuple[str, ...]

    def __str__(self) -> str:
        state = "available" if self.available else "unavailable"
        return f"{self.name}: {state} ({self.reason})"


class BackendReport(dict):
    """``{name: BackendInfo}`` that prints as a readable table."""

    def __repr__(self) -> str:
        return "\n".join(str(info) for info in self.values())

    __str__ = __repr__


@functools.lru_cache(maxsize=None)
def _extension():
    """The compiled extension module, or the reason it cannot be loaded."""
    try:
        return importlib.import_module("vmdm_kernels._C"), ""
    except ImportError as e:
        return None, f"compiled extension not importable ({e}); reinstall without VMDM_NO_EXTENSIONS"


@functools.lru_cache(maxsize=None)
def _triton():
    try:
        return importlib.import_module("vmdm_kernels.triton"), ""
    except ImportError as e:
        return None, f"triton not importable ({e})"


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def backends() -> BackendReport:
    """What can run here and, for what cannot, why (computed once; see :func:`refresh`)."""
    return _report(_triton_interpreted())


def refresh() -> None:
    """Forget cached availability (e.g. after building the extension in a running process)."""
    _report.cache_clear()
    _extension.cache_clear()
    _triton.cache_clear()


@functools.lru_cache(maxsize=None)
def _report(interpreted: bool) -> BackendReport:
    report = BackendReport()
    report["reference"] = BackendInfo("reference", True, "pure PyTorch, any device", ("cpu", "cuda", "mps", "xpu"))
    ext, why = _extension()
    report["cpp"] = BackendInfo("cpp", ext is not None, why or "C++ kernels for CPU tensors", ("cpu",))
    if ext is None:
        report["cuda"] = BackendInfo("cuda", False, why, ("cuda",))
    elif not ext.with_cuda():
        report["cuda"] = BackendInfo(
            "cuda", False, "extension built without CUDA (no CUDA toolkit, CPU-only torch, or no visible GPU at build time; "
            "rebuild with VMDM_CUDA=1)", ("cuda",)
        )
    elif not torch.cuda.is_available():
        report["cuda"] = BackendInfo("cuda", False, "built with CUDA, but no CUDA device is visible", ("cuda",))
    else:
        report["cuda"] = BackendInfo("cuda", True, "CUDA kernels for CUDA tensors", ("cuda",))
    mod, why = _triton()
    if mod is None:
        report["triton"] = BackendInfo("triton", False, why, ("cuda",))
    elif interpreted:
        report["triton"] = BackendInfo("triton", True, "Triton interpreter (TRITON_INTERPRET=1): float32/float64/float16; bfloat16 casts truncate", ("cpu",))
    elif not torch.cuda.is_available():
        report["triton"] = BackendInfo(
            "triton", False, "no CUDA device (set TRITON_INTERPRET=1 before importing triton to interpret on CPU)", ("cuda",)
        )
    else:
        report["triton"] = BackendInfo("triton", True, "Triton kernels for CUDA tensors", ("cuda",))
    return report


_warned_fallback: set[str] = set()


def choose_backend(device: torch.device, requested: str | None = None) -> str:
    """Backend name for tensors on ``device``."""
    source = "backend= argument"
    if requested is None or requested == "auto":
        env = os.environ.get("VMDM_BACKEND", "").strip()
        if env and env != "auto":
            requested, source = env, "VMDM_BACKEND"
    report = backends()
    if requested is not None and requested != "auto":
        if requested not in BACKENDS:
            raise ValueError(f"{source}: expected one of {BACKENDS + ('auto',)}, got {requested!r}")
        info = report[requested]
        if not info.available:
            raise BackendUnavailableError(f"backend {requested!r} ({source}) is unavailable: {info.reason}")
        if device.type not in info.devices:
            raise BackendUnavailableError(
                f"backend {requested!r} ({source}) runs on {'/'.join(info.devices)} tensors, got tensors on {device}"
            )
        return requested
    for name in _PREFERENCE.get(device.type, ("reference",)):
        if report[name].available and device.type in report[name].devices:
            if name == "reference" and device.type not in _warned_fallback and device.type in _PREFERENCE:
                _warned_fallback.add(device.type)
                best = _PREFERENCE[device.type][0]
                warnings.warn(
                    f"vmdm_kernels: no compiled kernels for {device.type} tensors ({report[best]}); "
                    "using the pure-PyTorch reference backend",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return name
    return "reference"


def kernel_module(name: str):
    """Object exposing ``<op>_fwd`` / ``<op>_bwd`` for a compiled backend."""
    if name in ("cpp", "cuda"):
        ext, why = _extension()
        if ext is None:
            raise BackendUnavailableError(f"backend {name!r} is unavailable: {why}")
        return torch.ops.vmdm_C
    if name == "triton":
        mod, why = _triton()
        if mod is None:
            raise BackendUnavailableError(f"backend 'triton' is unavailable: {why}")
        return mod
    raise ValueError(f"backend {name!r} has no kernel module")
