"""BVH export of joint-position motions (the reader, :func:`read_bvh`, is :mod:`vmdm.data.formats.bvh`'s).

A motion is given as joint positions ``[F, J, 3]`` (metres, y up, 20 fps); BVH stores
a fixed skeleton (per-joint offsets) plus per-frame joint rotations and a root
trajectory, so the writer

* scales the skeleton's rest bone directions to the motion's mean bone lengths
  (:func:`vmdm.motion.kinematics.offsets_from_lengths`), which is the skeleton the BVH
  declares;
* recovers local joint rotations with :func:`vmdm.motion.kinematics.inverse_kinematics`
  and writes them as Euler angles (``ZYX`` or ``XYZ``, degrees), kept continuous from
  frame to frame;
* writes the root position channels (the root's ``OFFSET`` is zero, so readers that add
  the offset to the channel and readers that do not agree).

BVH semantics used here (the ones Blender's importer and most tools follow): joint
``j``'s global rotation is its parent's global rotation times its local rotation, the
local rotation is the product of its rotation channels in the order listed (channels
``Zrotation Yrotation Xrotation`` mean ``Rz @ Ry @ Rx``), and a child sits at
``parent position + parent global rotation @ child OFFSET``. That is exactly the
project's :func:`vmdm.motion.skeleton.forward_kinematics`, so a motion made of rigid bones
along the rest directions round-trips exactly; generated motions, whose bone lengths
drift slightly from frame to frame, come back within the drift
(:func:`bvh_reconstruction_error` measures it).

Joints are written depth-first (BVH needs a child's block inside its parent's), so the
file's joint order differs from the skeleton's; :class:`BVHMotion` keeps the names.
Leaf joints (head, wrists, toes) get rotation channels (always zero) and an ``End Site``
continuing their bone, which BVH requires for a joint without children.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from vmdm.data.formats.bvh import BVHFormatError, BVHMotion, euler_matrices_rad, read_bvh
from vmdm.motion.kinematics import bone_lengths, inverse_kinematics, offsets_from_lengths
from vmdm.motion.skeleton import SMPL22, Skeleton

__all__ = [
    "EULER_ORDERS",
    "BVHMotion",
    "BVHFormatError",
    "euler_to_matrix",
    "matrix_to_euler",
    "motion_to_bvh",
    "write_bvh",
    "read_bvh",
    "bvh_reconstruction_error",
]

EULER_ORDERS = ("ZYX", "XYZ")
_AXIS = {"X": 0, "Y": 1, "Z": 2}
# End Site length as a fraction of the leaf joint's own bone (a marker for viewers only).
_END_SITE_FRACTION = 0.4


# --------------------------------------------------------------------------- Euler angles


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """``angles [..., 3]`` (radians, one per letter of ``order``) -> ``R_a @ R_b @ R_c``."""
    _check_order(order)
    return euler_matrices_rad(angles, order)


def _check_order(order: str) -> None:
    if order not in EULER_ORDERS:
        raise ValueError(f"order: expected one of {EULER_ORDERS}, got {order!r}")


def matrix_to_euler(R: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` -> angles ``[..., 3]`` (radians) with
    ``R = R_a(angle0) @ R_b(angle1) @ R_c(angle2)`` for ``order = "abc"``; the middle
    angle is in ``[-pi/2, pi/2]``. At gimbal lock (middle angle +-90 deg) the last angle is 0."""
    _check_order(order)
    R = np.asarray(R, dtype=np.float64)
    i, j, k = (_AXIS[a] for a in order)
    # +1 for a cyclic axis order (XYZ), -1 otherwise (ZYX): fixes the signs below.
    eps = 1.0 if (j - i) % 3 == 1 else -1.0
    sb = np.clip(eps * R[..., i, k], -1.0, 1.0)
    beta = np.arcsin(sb)
    cb = np.sqrt(np.maximum(0.0, 1.0 - sb * sb))
    alpha = np.arctan2(-eps * R[..., j, k], R[..., k, k])
    gamma = np.arctan2(-eps * R[..., i, j], R[..., i, i])
    # Gimbal lock: only alpha + gamma (or alpha - gamma) is defined; put it all in alpha.
    # With gamma = 0, column j of R is R_i(alpha) e_j = cos(alpha) e_j + eps sin(alpha) e_k.
    locked = cb < 1e-9
    if np.any(locked):
        alpha = np.where(locked, np.arctan2(eps * R[..., k, j], R[..., j, j]), alpha)
        gamma = np.where(locked, 0.0, gamma)
    return np.stack((alpha, beta, gamma), axis=-1)


def _continuous_euler(R: np.ndarray, order: str) -> np.ndarray:
    """Euler angles ``[F, J, 3]`` for ``R [F, J, 3, 3]``, each frame's chosen among the two
    equivalent solutions ``(a, b, c)`` / ``(a + pi, pi - b, c + pi)`` and shifted by
    multiples of 2 pi to be closest to the previous frame, so curves in an animation
    editor have no 360-degree jumps."""
    base = matrix_to_euler(R, order)
    alt = base + np.array([math.pi, 0.0, math.pi])
    alt[..., 1] = math.pi - base[..., 1]
    out = np.empty_like(base)
    out[0] = base[0]
    two_pi = 2.0 * math.pi
    for f in range(1, base.shape[0]):
        prev = out[f - 1]
        best, best_d = None, None
        for cand in (base[f], alt[f]):
            shifted = cand + two_pi * np.round((prev - cand) / two_pi)
            d = np.abs(shifted - prev).sum(-1)
            if best is None:
                best, best_d = shifted, d
            else:
                pick = d < best_d
                best = np.where(pick[:, None], shifted, best)
                best_d = np.where(pick, d, best_d)
        out[f] = best
    return out


# --------------------------------------------------------------------------- writer


def _depth_first(skeleton: Skeleton) -> list[int]:
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c in skeleton.children(j):
            visit(c)

    visit(0)
    return order


def motion_to_bvh(joints, skeleton: Skeleton = SMPL22, order: str = "ZYX"):
    """BVH quantities of a motion ``joints [F, J, 3]`` (numpy or torch, metres).

    Returns ``(offsets [J, 3], root_positions [F, 3], euler_degrees [F, J, 3])`` in the
    skeleton's joint order: offsets are the rest directions scaled to the motion's mean
    bone lengths, angles follow ``order`` (``"ZYX"``: ``Rz @ Ry @ Rx``).
    """
    _check_order(order)
    x = torch.as_tensor(np.asarray(joints, dtype=np.float64))
    J = skeleton.num_joints
    if x.dim() != 3 or tuple(x.shape[1:]) != (J, 3):
        raise ValueError(f"joints: expected [F, {J}, 3] for skeleton {skeleton.name!r}, got {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError("joints: need at least one frame")
    if not torch.isfinite(x).all():
        raise ValueError("joints: contains NaN or inf")
    offsets = offsets_from_lengths(bone_lengths(x, skeleton), skeleton)
    local = inverse_kinematics(x, skeleton).numpy()
    euler = np.degrees(_continuous_euler(local, order))
    return offsets.numpy(), x[:, 0].numpy(), euler


def _end_site(skeleton: Skeleton, offsets: np.ndarray, j: int) -> np.ndarray:
    off = offsets[j]
    n = np.linalg.norm(off)
    if n < 1e-9:
        return np.array([0.0, 0.05, 0.0])
    return off * _END_SITE_FRACTION


def write_bvh(path: str | os.PathLike, joints, skeleton: Skeleton = SMPL22, *, fps: float = 20.0,
              order: str = "ZYX") -> Path:
    """Write ``joints [F, J, 3]`` (metres, y up) as a BVH file; returns the path.

    Units stay metres (Blender's importer shows a 1.7 m person at scale 1.0); the frame
    time is ``1 / fps``.
    """
    if not fps > 0:
        raise ValueError(f"fps: must be positive, got {fps}")
    offsets, root, euler = motion_to_bvh(joints, skeleton, order)
    rot_channels = " ".join(f"{a}rotation" for a in order)
    dfs = _depth_first(skeleton)
    lines = ["HIERARCHY"]

    def block(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if j == 0 else "JOINT"
        lines.append(f"{pad}{kind} {skeleton.joint_names[j]}")
        lines.append(f"{pad}{{")
        o = offsets[j]
        lines.append(f"{pad}  OFFSET {o[0]:.6f} {o[1]:.6f} {o[2]:.6f}")
        if j == 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot_channels}")
        else:
            lines.append(f"{pad}  CHANNELS 3 {rot_channels}")
        children = skeleton.children(j)
        for c in children:
            block(c, depth + 1)
        if not children:
            e = _end_site(skeleton, offsets, j)
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {e[0]:.6f} {e[1]:.6f} {e[2]:.6f}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    block(0, 0)
    F = root.shape[0]
    lines += ["MOTION", f"Frames: {F}", f"Frame Time: {1.0 / fps:.6f}"]
    # One row per frame: root position, then each joint's angles in depth-first order.
    cols = np.concatenate([root[:, None, :], euler[:, dfs]], axis=1).reshape(F, -1)
    lines += [" ".join(f"{v:.6f}" for v in row) for row in cols]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- reader

# One reader serves the project's own files and imported motion capture (any channel
# layout, End Sites, .gz): vmdm.data.formats.bvh. Re-exported here for compatibility.


def bvh_reconstruction_error(bvh: BVHMotion, joints, skeleton: Skeleton = SMPL22) -> np.ndarray:
    """Per-frame mean distance (metres) between the BVH's forward kinematics and ``joints
    [F, J, 3]`` given in the skeleton's order (matched by joint name)."""
    pos = bvh.positions()
    idx = [bvh.names.index(n) for n in skeleton.joint_names]
    return np.linalg.norm(pos[:, idx] - np.asarray(joints, dtype=np.float64), axis=-1).mean(-1)

