"""HumanML3D's retargeting (``uniform_skeleton``): put any SMPL-22 motion on one skeleton.

HumanML3D moves every clip onto the bone lengths of one reference body before computing
its features: the clip's bone directions are kept (HumanML3D's inverse then forward
kinematics with its axis-aligned rest directions reproduces each bone's observed
direction exactly), every bone gets the reference body's length, and the root
trajectory is scaled by the ratio of the reference's leg (knee + shin, of the right leg)
to the clip's, measured in the clip's first frame.

When to use it: for external motion (CMU, BVH imports, a user's own clips) that will be
mixed with HumanML3D data or scored by an evaluator trained on HumanML3D, so that body
size does not tell the sources apart. Not for the built-in corpus, whose per-subject
proportions are part of the data, nor where the true body size matters (lifting
benchmarks are scored against the motion as captured).
"""

from __future__ import annotations

import numpy as np
import torch

from vmdm.motion.skeleton import SMPL22, Skeleton

__all__ = ["HUMANML3D_BONE_LENGTHS", "humanml3d_offsets", "uniform_skeleton"]

# Bone lengths (metres, joints 1..21) of HumanML3D's target skeleton: measured on its own
# clip 012314 (``new_joints``, which HumanML3D has retargeted onto it; constant over its
# frames to 2.5e-7 m). tests/data/test_retarget.py checks them against the file.
HUMANML3D_BONE_LENGTHS = (
    0.10307, 0.10988, 0.13157, 0.39362, 0.39019, 0.14319, 0.43243, 0.42564, 0.05736, 0.14338, 0.14942,
    0.21936, 0.13749, 0.14338, 0.10304, 0.13161, 0.12298, 0.25684, 0.26309, 0.26601, 0.26988,
)
# HumanML3D's leg for the scale ratio: right knee and right ankle (its l_idx1, l_idx2).
_LEG = (5, 8)


def humanml3d_offsets() -> np.ndarray:
    """``[22, 3]`` rest offsets of HumanML3D's target skeleton (its raw directions x its lengths)."""
    dirs = np.asarray(SMPL22.ik_directions, dtype=np.float64)
    return dirs * np.concatenate(([0.0], HUMANML3D_BONE_LENGTHS))[:, None]


def uniform_skeleton(joints, target_lengths=None, skeleton: Skeleton = SMPL22):
    """``joints [T, J, 3]`` (numpy or torch, metres, y up) on the target bone lengths.

    ``target_lengths [J]`` (root entry ignored) defaults to HumanML3D's target skeleton
    (SMPL-22 only). Each bone keeps its direction per frame; the root trajectory is scaled
    by target leg / source leg (frame 0). A zero-length source bone takes the skeleton's
    IK rest direction. Returns the same type and dtype as ``joints``.
    """
    is_torch = isinstance(joints, torch.Tensor)
    x = joints.detach().cpu().double().numpy() if is_torch else np.asarray(joints, dtype=np.float64)
    J = skeleton.num_joints
    if x.ndim != 3 or x.shape[1:] != (J, 3):
        raise ValueError(f"joints: expected shape [T, {J}, 3] for skeleton {skeleton.name!r}, got {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError("joints: contains NaN or inf")
    if target_lengths is None:
        if skeleton is not SMPL22:
            raise ValueError(f"target_lengths: required for skeleton {skeleton.name!r} (the default is HumanML3D's "
                             "SMPL-22 target)")
        target = np.concatenate(([0.0], HUMANML3D_BONE_LENGTHS))
    else:
        target = np.asarray(target_lengths, dtype=np.float64).reshape(-1)
        if target.shape != (J,) or (target[1:] <= 0).any():
            raise ValueError(f"target_lengths: expected {J} lengths, positive except the root's, got "
                             f"{np.asarray(target_lengths).shape}")
    parents = skeleton.parents
    src = np.stack([np.linalg.norm(x[0, j] - x[0, parents[j]]) if j else 0.0 for j in range(J)])
    leg = [j for j in _LEG if j < J] if skeleton is SMPL22 else []
    src_leg = src[leg].sum() if leg else src[1:].sum()
    tgt_leg = target[leg].sum() if leg else target[1:].sum()
    if src_leg <= 1e-9:
        raise ValueError("joints: the source leg has zero length in frame 0; cannot compute the scale")
    rest = np.asarray(skeleton.ik_directions or skeleton.offsets, dtype=np.float64)
    out = np.empty_like(x)
    out[:, 0] = x[:, 0] * (tgt_leg / src_leg)
    # Parents precede children, so one pass over the tree (not over frames) rebuilds the body.
    for j in range(1, J):
        bone = x[:, j] - x[:, parents[j]]
        n = np.linalg.norm(bone, axis=-1, keepdims=True)
        fallback = rest[j] / max(np.linalg.norm(rest[j]), 1e-12)
        unit = np.where(n > 1e-9, bone / np.maximum(n, 1e-12), fallback)
        out[:, j] = out[:, parents[j]] + target[j] * unit
    if is_torch:
        return torch.from_numpy(out).to(joints.dtype)
    return out.astype(np.asarray(joints).dtype if np.asarray(joints).dtype.kind == "f" else np.float64)
