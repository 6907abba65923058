"""Temporal smoothing of the ray-projection corrections behind the alignment targets.

Representation alignment moves each predicted joint onto the camera ray through its
observed keypoint and re-encodes the result. Detector noise is (nearly) white in time, so
the per-frame corrections carry it straight into the channels that difference or invert
the joints: local velocities, foot contacts (thresholded velocities) and IK rotations. On
the built-in data, targets built from the *true* joints miss the true features by about as
much as the signal itself in those channels. The correction ``ray - joint`` of a good
prediction changes slowly over time while the noise does not, so a short Gaussian over
frames removes most of it; a second pass drops corrections that stand out from their
smoothed value (gross detector outliers) before smoothing again. The measurements behind
this are in docs/evaluation.md and results/README.md.
"""

from __future__ import annotations

import torch

__all__ = ["smooth_corrections", "masked_gaussian_smooth"]


def masked_gaussian_smooth(values: torch.Tensor, valid: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-weighted average over time of the valid entries.

    ``values`` ``[B, T, J, C]``, ``valid`` ``[B, T, J]`` (bool). Each output frame averages
    the valid frames within ``3 sigma`` with Gaussian weights renormalised over the valid
    ones, so padding and undetected joints neither pull values towards zero nor get lost
    (they take their neighbours' value); a joint with no valid frame in reach gets 0.
    """
    if sigma <= 0:
        raise ValueError(f"sigma: expected > 0, got {sigma}")
    B, T, J, C = values.shape
    if valid.shape != (B, T, J):
        raise ValueError(f"valid: expected shape {[B, T, J]}, got {list(valid.shape)}")
    radius = max(1, int(3 * sigma))
    t = torch.arange(T, dtype=values.dtype, device=values.device)
    lag = t[:, None] - t[None, :]
    # The filter as a banded [T, T] matrix: one batched matmul smooths every (joint,
    # channel) series and, through the appended weight column, its normaliser too.
    band = torch.exp(-0.5 * (lag / sigma) ** 2) * (lag.abs() <= radius)
    w = valid.to(values.dtype)[..., None]
    stacked = torch.cat([values * w, w], dim=-1).reshape(B, T, J * (C + 1))
    out = (band @ stacked).view(B, T, J, C + 1)
    return out[..., :C] / out[..., C:].clamp_min(1e-6)


def smooth_corrections(joints: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, sigma: float,
                       outlier: float = 0.0) -> torch.Tensor:
    """``joints + smoothed(targets - joints)`` over the ``valid`` ``[B, T, J]`` entries.

    ``joints``, ``targets`` ``[B, T, J, 3]``. ``sigma`` is the Gaussian's standard deviation
    in frames (0 returns ``targets`` where valid, ``joints`` elsewhere). ``outlier`` > 0
    (metres): corrections farther than this from their smoothed value are dropped and the
    rest smoothed again. Invalid entries (padding, undetected joints) get the smoothed
    correction of their neighbours.
    """
    if joints.shape != targets.shape or joints.ndim != 4 or joints.shape[-1] != 3:
        raise ValueError(f"joints, targets: expected equal shapes [B, T, J, 3], got {list(joints.shape)} "
                         f"and {list(targets.shape)}")
    if sigma < 0 or outlier < 0:
        raise ValueError(f"sigma, outlier: expected >= 0, got {sigma} and {outlier}")
    if sigma == 0:
        return torch.where(valid[..., None], targets, joints)
    correction = torch.where(valid[..., None], targets - joints, torch.zeros_like(joints))
    smooth = masked_gaussian_smooth(correction, valid, sigma)
    if outlier > 0:
        valid = valid & ((correction - smooth).norm(dim=-1) <= outlier)
        smooth = masked_gaussian_smooth(correction, valid, sigma)
    return joints + smooth
