"""Reference: ray-projection pseudo-targets.

For each predicted joint ``X`` and its observed keypoint ``(u, v)``, the closest
point on the camera ray through the keypoint::

    d  = ((u - cx) / fx, (v - cy) / fy, 1)      ray direction, camera frame
    r  = R^T d                                  ray direction, world frame
    C  = -R^T t                                 camera centre
    P* = C + ((X - C) . r / |r|^2) r
"""

from __future__ import annotations

import torch

from .camera import per_frame_camera, split_intrinsics

__all__ = ["ray_targets"]


def ray_targets(
    joints: torch.Tensor,
    keypoints: torch.Tensor,
    camera: torch.Tensor,
    intrinsics: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B,T,J,3]`` closest points on the keypoints' camera rays."""
    cam = per_frame_camera(camera, joints.shape[1])
    R, t = cam[..., :3], cam[..., 3]
    fx, fy, cx, cy = split_intrinsics(intrinsics, joints)
    d = torch.stack(
        ((keypoints[..., 0] - cx) / fx, (keypoints[..., 1] - cy) / fy, torch.ones_like(keypoints[..., 0])),
        dim=-1,
    )
    Rt = R.transpose(-1, -2)
    r = (Rt @ d[..., None])[..., 0]
    centre = -(Rt @ t[..., None])[..., 0]
    s = ((joints - centre) * r).sum(-1, keepdim=True) / (r * r).sum(-1, keepdim=True)
    return centre + s * r
