"""Readers of real motion data: HumanML3D folders, CMU ASF/AMC and BVH mocap (Bandai-Namco's
built in), and video keypoint folders."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["find_shared_data"]


def find_shared_data(env_var: str, name: str, marker: str) -> Path | None:
    """``$env_var`` if set (None unless it is a folder), else ``shared/data/<name>`` in or
    beside the repository when it holds ``marker``; None if absent."""
    env = os.environ.get(env_var)
    if env:
        return Path(env) if Path(env).is_dir() else None
    repo = Path(__file__).resolve().parents[3]
    for cand in (repo / "shared" / "data" / name, repo.parent / "shared" / "data" / name):
        if (cand / marker).exists():
            return cand
    return None
