"""HumanML3D's ``recover_from_ric``: motion features -> joint positions (reference).

Reads channels ``0 .. 4 + 3 (J - 1)`` of each feature frame (layout: see
:mod:`vmdm_kernels.ref.motion_features`): integrates the heading from 0 (channel 0 is
half the per-frame yaw change) and the root's ground velocity (channels 1, 2, in the
heading of the next frame) from the origin, takes the root height from channel 3 and
places joints 1..J-1 around the root's ground point, rotated by the heading. The
inverse of the encoder up to the canonical frame. Differentiable: the ground truth for
the compiled backends.
"""

from __future__ import annotations

import torch

from .motion_features import rot_y_apply

__all__ = ["recover_from_ric", "ric_channels"]


def ric_channels(num_joints: int) -> int:
    """How many leading channels the decoder reads: ``4 + 3 (J - 1)``."""
    return 4 + 3 * (num_joints - 1)


def recover_from_ric(features: torch.Tensor, num_joints: int, mean: torch.Tensor | None = None,
                     std: torch.Tensor | None = None) -> torch.Tensor:
    """``features [..., T, D]`` (``x * std + mean`` first when given) -> joints ``[..., T, J, 3]``."""
    J = num_joints
    f = features[..., : ric_channels(J)]
    if mean is not None:
        f = f * std[: ric_channels(J)] + mean[: ric_channels(J)]
    zero = torch.zeros_like(f[..., :1, 0])
    half = torch.cat((zero, torch.cumsum(f[..., :-1, 0], dim=-1)), dim=-1)
    yaw = -2.0 * half  # heading of each frame, [..., T]

    v = f[..., :-1, 1:3]
    v3 = torch.stack((v[..., 0], torch.zeros_like(v[..., 0]), v[..., 1]), dim=-1)
    step = rot_y_apply(yaw[..., 1:], v3)
    root_xz = torch.cat((f.new_zeros(f.shape[:-2] + (1, 3)), torch.cumsum(step, dim=-2)), dim=-2)

    ric = f[..., 4:].reshape(f.shape[:-1] + (J - 1, 3))
    body = rot_y_apply(yaw[..., None], ric) + root_xz[..., None, :]
    root = torch.stack((root_xz[..., 0], f[..., 3], root_xz[..., 2]), dim=-1)
    return torch.cat((root[..., None, :], body), dim=-2)
