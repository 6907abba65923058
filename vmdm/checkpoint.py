"""Crash-safe checkpoints and the random state needed to resume bit-for-bit.

A checkpoint is written to a temporary file in the same directory, flushed to
disk, then renamed over the old one (an atomic replace on POSIX), so a crash or
SIGKILL at any moment leaves either the previous checkpoint or the new one,
never a truncated file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

__all__ = ["atomic_save", "load_checkpoint", "rng_state", "set_rng_state"]


def atomic_save(obj, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # a file that is not a complete checkpoint
        raise RuntimeError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") from e


def rng_state(device: torch.device | str | None = None) -> dict:
    """The CPU generators' state, and the CUDA generator of ``device`` when it is a GPU.

    Only the training device's CUDA generator is kept: a process draws from no other, and
    the list of every visible GPU's state would not restore on a machine with fewer GPUs.
    """
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | str | None = None) -> None:
    """Restore :func:`rng_state`; its CUDA state goes to ``device`` when that is a GPU."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    device = torch.device(device) if device is not None else None
    cuda = state.get("cuda")
    if cuda is None or device is None or device.type != "cuda":
        return
    if isinstance(cuda, (list, tuple)):  # checkpoints that saved every visible GPU's state
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= len(cuda):
            return
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda, device)
