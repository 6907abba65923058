"""Reference: depth-weighted 2D reprojection and 2D finite-difference velocity losses.

Readable PyTorch, differentiated by autograd. Every kernel backend must agree
with these functions; they are also the fallback when no kernel is available.

Per sample ``b`` (sums over frames t and joints j)::

    L_pos[b] = w_b * sum(W * g * (ax * du**2 + ay * dv**2)) / sum(W)
    L_vel[b] = w_b * sum(W_t W_t+1 * g_t g_t+1 * (ax * ddu**2 + ay * ddv**2)) / sum(W_t W_t+1)

with ``(du, dv) = proj(X) - K2`` and ``(ddu, ddv)`` the same on forward differences
along time. ``g`` is the near/behind-camera guard ``not (z <= z_min)``. Depth weights
(all detached from the graph):

- ``none``:   w_b = 1, ax = ay = 1.
- ``sample``: w_b = (mean z over points with W > 0 and g = 1) ** p, ax = ay = 1.
- ``point``:  w_b = 1, ax = z**p / fx**2, ay = z**p / fy**2 with the point's own depth
  (for velocity pairs, the mean depth of the two frames). With p = 2 this turns
  squared image-plane errors back into squared lateral errors in metres.

Points with zero weight are ignored entirely: non-finite keypoints or joints there
cannot leak into the loss or its gradients.
"""

from __future__ import annotations

import torch

from .camera import project, split_intrinsics

__all__ = ["DEPTH_MODES", "default_depth_power", "reproj_vel_loss", "depth_weights"]

DEPTH_MODES = ("none", "sample", "point")


def default_depth_power(depth_weight: str) -> float:
    return {"none": 0.0, "sample": 1.0, "point": 2.0}[depth_weight]


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    nonzero = den != 0
    return torch.where(nonzero, num / torch.where(nonzero, den, torch.ones_like(den)), torch.zeros_like(num))


def _point_alphas(z, valid, intrinsics, power: float):
    """Per-point ``z**p / f**2`` for x and y (detached; guarded points get z = 1)."""
    fx, fy, _, _ = split_intrinsics(intrinsics, z)
    zp = torch.where(valid, z.detach(), torch.ones_like(z)) ** power
    return zp / fx.detach() ** 2, zp / fy.detach() ** 2


def depth_weights(z, valid, intrinsics, depth_weight: str, power: float):
    """Detached ``(w_b [B], ax [B,T,J], ay [B,T,J])`` for one of the depth modes."""
    z = z.detach()
    one = torch.ones((), dtype=z.dtype, device=z.device)
    if depth_weight == "none":
        return torch.ones(z.shape[0], dtype=z.dtype, device=z.device), one, one
    if depth_weight == "sample":
        cnt = valid.sum(dim=(1, 2)).to(z.dtype)
        zsum = torch.where(valid, z, torch.zeros_like(z)).sum(dim=(1, 2))
        mean_z = _safe_div(zsum, cnt)
        w = torch.where(cnt > 0, mean_z**power, torch.zeros_like(mean_z))
        return w, one, one
    if depth_weight == "point":
        ax, ay = _point_alphas(z, valid, intrinsics, power)
        return torch.ones(z.shape[0], dtype=z.dtype, device=z.device), ax, ay
    raise ValueError(f"depth_weight: expected one of {DEPTH_MODES}, got {depth_weight!r}")


def reproj_vel_loss(
    joints: torch.Tensor,
    keypoints: torch.Tensor,
    camera: torch.Tensor,
    weights: torch.Tensor,
    intrinsics: torch.Tensor | None = None,
    *,
    depth_weight: str = "sample",
    depth_power: float | None = None,
    z_min: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(L_pos [B], L_vel [B])``; see the module docstring."""
    if depth_power is None:
        depth_power = default_depth_power(depth_weight)
    active = weights != 0
    # Zeroing ignored joints keeps their depth finite, so neither the guard nor
    # the division by z can turn a NaN there into a NaN gradient.
    joints = torch.where(active[..., None], joints, torch.zeros_like(joints))
    uv, z, in_front = project(joints, camera, intrinsics, z_min)
    valid = active & in_front
    w_b, ax, ay = depth_weights(z, valid, intrinsics, depth_weight, depth_power)

    r = torch.where(valid[..., None], uv - keypoints, torch.zeros_like(uv))
    num_pos = (weights * (ax * r[..., 0] ** 2 + ay * r[..., 1] ** 2)).sum(dim=(1, 2))
    loss_pos = w_b * _safe_div(num_pos, weights.sum(dim=(1, 2)))

    pair_w = weights[:, 1:] * weights[:, :-1]
    pair_valid = valid[:, 1:] & valid[:, :-1]
    e = (uv[:, 1:] - uv[:, :-1]) - (keypoints[:, 1:] - keypoints[:, :-1])
    e = torch.where(pair_valid[..., None], e, torch.zeros_like(e))
    if depth_weight == "point":
        vx, vy = _point_alphas(0.5 * (z[:, 1:] + z[:, :-1]), pair_valid, intrinsics, depth_power)
    else:
        vx, vy = ax, ay
    num_vel = (pair_w * (vx * e[..., 0] ** 2 + vy * e[..., 1] ** 2)).sum(dim=(1, 2))
    loss_vel = w_b * _safe_div(num_vel, pair_w.sum(dim=(1, 2)))
    return loss_pos, loss_vel
