"""Bones of a skeleton as (child, parent) joint pairs, and their lengths."""

from __future__ import annotations

import torch

__all__ = ["bone_pairs", "bone_length_sum"]


def bone_pairs(parents) -> tuple[torch.Tensor, torch.Tensor]:
    """``(child, parent)`` joint indices of every bone of a skeleton's ``parents`` (root: -1)."""
    par = torch.as_tensor(parents)
    child = torch.nonzero(par >= 0)[:, 0]
    return child, par[child]


def bone_length_sum(joints: torch.Tensor, parents) -> torch.Tensor:
    """Sum of bone lengths per frame: ``[..., J, 3]`` -> ``[...]``."""
    child, par = bone_pairs(parents)
    return (joints[..., child, :] - joints[..., par, :]).norm(dim=-1).sum(-1)
