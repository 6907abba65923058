"""Depth freedom for the 2D loss: a per-clip shift of the prediction along the camera ray
through its frame-0 root (``LossConfig.depth_offset``).

In 2D training the camera is expressed in the teacher lift's canonical frame, and decoding
puts the prediction's root on the vertical through the teacher's frame-0 root, at the
teacher's depth. Where that depth is off (the teacher's root-depth error is several per
cent), the only way for the prediction to fit the keypoints is to change the body's size
by the same ratio, which the model cannot know from its input. Shifting the whole clip
along the ray through its frame-0 root keeps that root's projection and changes only its
depth; solved per clip for the best 2D fit before the loss is taken (without gradient:
the offset is a nuisance parameter, not something the model learns), it lets the body's
size come from its bones' projections and the alignment term instead of from the
teacher's depth error.
"""

from __future__ import annotations

import torch

from vmdm.motion.cameras import camera_center
from vmdm_kernels.ref.camera import per_frame_camera, split_intrinsics

__all__ = ["root_ray", "solve_root_ray_offset", "shift_along_ray"]


def root_ray(joints: torch.Tensor, camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit direction ``[B, 3]`` (world) of the ray from frame 0's camera centre through the
    frame-0 root of ``joints [B, F, J, 3]``, and that root's distance from the centre ``[B]``."""
    centre = camera_center(camera if camera.dim() == 3 else camera[:, 0])
    v = joints[:, 0, 0] - centre.to(joints.dtype)
    dist = v.norm(dim=-1).clamp_min(1e-9)
    return v / dist[:, None], dist


def shift_along_ray(joints: torch.Tensor, offset: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``joints [B, F, J, 3]`` translated by ``offset [B]`` metres along ``direction [B, 3]``."""
    return joints + (offset[:, None] * direction)[:, None, None, :].to(joints.dtype)


@torch.no_grad()
def solve_root_ray_offset(joints: torch.Tensor, keypoints: torch.Tensor, camera: torch.Tensor,
                          weights: torch.Tensor, intrinsics: torch.Tensor | None = None, *, iterations: int = 5,
                          z_min: float = 0.5, max_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The shift along each clip's frame-0 root ray that best fits its keypoints.

    Minimises ``sum w ||proj(X + d u) - k||^2`` over one scalar ``d`` per clip by
    Gauss-Newton from ``d = 0`` (``iterations`` steps), where ``u`` is :func:`root_ray`'s
    direction; points nearer than ``z_min`` are left out, and ``|d|`` is kept within
    ``max_fraction`` of the root's distance. Shapes and conventions as
    :func:`vmdm_kernels.reprojection_velocity_loss`: ``joints [B, F, J, 3]``, ``keypoints
    [B, F, J, 2]`` (pixels with ``intrinsics [B, 4]``, else normalised), ``camera [B, 3,
    4]`` or ``[B, F, 3, 4]``, ``weights [B, F, J]``. Returns ``(d [B], u [B, 3])``, no
    gradient.
    """
    X = joints.detach().double()
    kp, w = keypoints.double(), weights.double()
    cam = per_frame_camera(camera.double(), X.shape[1])  # [B, F, 1, 3, 4]
    R, t = cam[..., :3], cam[..., 3]
    fx, fy, cx, cy = split_intrinsics(None if intrinsics is None else intrinsics.double(), X)
    u, dist = root_ray(X, camera.double())
    Xc0 = (R @ X[..., None])[..., 0] + t  # [B, F, J, 3] at d = 0
    du = (R @ u[:, None, None, :, None])[..., 0]  # d Xc / d d, [B, F, 1, 3]
    d = torch.zeros(X.shape[0], dtype=X.dtype, device=X.device)
    limit = max_fraction * dist
    for _ in range(iterations):
        Xc = Xc0 + d[:, None, None, None] * du
        z = Xc[..., 2]
        ok = (z > z_min).to(X.dtype) * w
        zs = torch.where(z > z_min, z, torch.ones_like(z))
        px, py = Xc[..., 0] / zs, Xc[..., 1] / zs
        rx, ry = fx * px + cx - kp[..., 0], fy * py + cy - kp[..., 1]
        # d (x / z) = (dx - (x / z) dz) / z
        jx = fx * (du[..., 0] - px * du[..., 2]) / zs
        jy = fy * (du[..., 1] - py * du[..., 2]) / zs
        g = (ok * (jx * rx + jy * ry)).sum((1, 2))
        h = (ok * (jx * jx + jy * jy)).sum((1, 2))
        step = torch.where(h > 0, -g / h.clamp_min(1e-30), torch.zeros_like(g))
        d = torch.maximum(torch.minimum(d + step, limit), -limit)
    return d.to(joints.dtype), u.to(joints.dtype)
