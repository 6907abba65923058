"""Reference: 3D finite-difference velocity loss (MDM's geometric velocity term).

Per sample ``b``::

    L[b] = sum(W_t W_t+1 * |(X_t+1 - X_t) - (Y_t+1 - Y_t)|**2) / sum(W_t W_t+1)

Pairs with zero weight are ignored entirely (their inputs may be non-finite).
"""

from __future__ import annotations

import torch

from .reproj_vel import _safe_div

__all__ = ["velocity3d_loss"]


def velocity3d_loss(joints: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-sample loss ``[B]`` for joints/target ``[B,T,J,3]`` and weights ``[B,T,J]``."""
    active = (weights != 0)[..., None]
    joints = torch.where(active, joints, torch.zeros_like(joints))
    target = torch.where(active, target, torch.zeros_like(target))
    pair_w = weights[:, 1:] * weights[:, :-1]
    e = (joints[:, 1:] - joints[:, :-1]) - (target[:, 1:] - target[:, :-1])
    e = torch.where((pair_w != 0)[..., None], e, torch.zeros_like(e))
    return _safe_div((pair_w * (e**2).sum(-1)).sum(dim=(1, 2)), pair_w.sum(dim=(1, 2)))
