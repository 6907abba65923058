"""Pinhole camera helpers shared by the reference ops.

Conventions (used by every backend): a camera is an extrinsic ``[R|t]`` of
shape ``[B, 3, 4]`` (one per clip) or ``[B, T, 3, 4]`` (one per frame), and
optional intrinsics ``(fx, fy, cx, cy)`` of shape ``[B, 4]``. Without
intrinsics, 2D points are normalised camera coordinates (f = 1, c = 0).
"""

from __future__ import annotations

import torch

__all__ = ["per_frame_camera", "camera_frame", "split_intrinsics", "project"]


def per_frame_camera(camera: torch.Tensor, T: int) -> torch.Tensor:
    """``[B,3,4]`` or ``[B,T,3,4]`` -> a ``[B,T,1,3,4]`` view that broadcasts over joints."""
    if camera.dim() == 3:
        camera = camera[:, None].expand(-1, T, -1, -1)
    return camera[:, :, None]


def camera_frame(joints: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """World joints ``[B,T,J,3]`` -> camera-frame points ``Xc = R X + t``."""
    cam = per_frame_camera(camera, joints.shape[1])
    R, t = cam[..., :3], cam[..., 3]
    return (R @ joints[..., None])[..., 0] + t


def split_intrinsics(intrinsics: torch.Tensor | None, like: torch.Tensor):
    """``(fx, fy, cx, cy)`` each shaped ``[B,1,1]`` (ones/zeros without intrinsics)."""
    if intrinsics is None:
        one = torch.ones((), dtype=like.dtype, device=like.device)
        zero = torch.zeros((), dtype=like.dtype, device=like.device)
        return one, one, zero, zero
    k = intrinsics[:, None, None, :]
    return k[..., 0], k[..., 1], k[..., 2], k[..., 3]


def project(joints, camera, intrinsics=None, z_min: float | None = None):
    """Perspective projection. Returns ``(uv [B,T,J,2], z [B,T,J], in_front [B,T,J])``.

    ``in_front`` is ``not (z <= z_min)`` so that a NaN depth counts as in front
    and propagates instead of being silently guarded away. Guarded points are
    divided by 1 instead of z, which keeps their values and gradients finite.
    """
    xc = camera_frame(joints, camera)
    z = xc[..., 2]
    in_front = ~(z <= z_min) if z_min is not None else torch.ones_like(z, dtype=torch.bool)
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    fx, fy, cx, cy = split_intrinsics(intrinsics, joints)
    u = fx * xc[..., 0] / z_safe + cx
    v = fy * xc[..., 1] / z_safe + cy
    return torch.stack((u, v), dim=-1), z, in_front
