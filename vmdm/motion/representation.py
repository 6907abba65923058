"""The HumanML3D motion feature vector: encoder, decoder, channel layout, normaliser.

For a skeleton with ``J`` joints and ``F = len(feet_left) + len(feet_right)``
foot joints one frame's features are (HumanML3D's layout; D = 12J - 1 when F = 4,
263 for SMPL-22)::

    [0]                 root angular velocity about y (half the yaw change, rad/frame)
    [1:3]               root linear velocity (x, z) in the body-heading frame, m/frame
    [3]                 root height y, m
    [4 : 4+3(J-1)]      "ric": joints 1..J-1 relative to the root's ground point,
                        rotated into the heading frame (heights stay absolute)
    next 6(J-1)         per-bone rotations of joints 1..J-1, continuous 6D
                        (first two matrix columns, see ``kinematics``)
    next 3J             joint velocities of all joints in the heading frame, m/frame
    last F              foot contacts (left feet, then right feet), 0/1

A clip of ``T`` frames gives ``T - 1`` feature frames (velocities look one
frame ahead).

``encode`` is HumanML3D's ``process_file`` feature computation (reproduced on
HumanML3D's own clip 012314 to the 1e-4 level, see ``tests/data/test_humanml3d_exact.py``):
the floor at the clip's lowest joint over all joints, the root rotation from
HumanML3D's IK facing (its hip term reversed) smoothed with a Gaussian of sigma
20 frames (``mode="nearest"``) with frame 0 the identity, bone rotations along
HumanML3D's kinematic chains from its axis-aligned rest directions
(``Skeleton.ik_directions``), contacts from the squared per-frame foot
displacement alone (HumanML3D's height test is commented out). The root
quaternions are kept continuous, so a heading that passes +-180 degrees from
frame 0 keeps the sign of its velocity. HumanML3D also retargets every clip to
one reference skeleton first; that is optional here
(:func:`vmdm.motion.retarget.uniform_skeleton`).

Because of the smoothing, a feature row depends on frames up to 80 away: the
features of a window cut from a clip differ from the clip's features cut to the
window in the first and last ~80 frames (see ``docs/data.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

import vmdm_kernels as vk
from vmdm_kernels.ref import motion_features as _mf

from vmdm.motion.kinematics import _check_joints
from vmdm.motion.skeleton import Skeleton, feature_skeleton

__all__ = [
    "CanonicalTransform",
    "FEATURE_CONVENTION",
    "FeatureConventionError",
    "check_feature_convention",
    "feature_convention_record",
    "Normalizer",
    "canonicalize",
    "channel_groups",
    "compute_mean_std",
    "decode",
    "encode",
    "facing_yaw",
    "feature_skeleton",
    "feature_dim",
    "group_std",
    "redundant_slice",
]

FEET_THRESHOLD = 0.002
FACING_SIGMA = _mf.HUMANML3D_FACING_SIGMA
# The feature convention every derived artefact records (caches, normalisers,
# evaluators, checkpoints). 2: HumanML3D's process_file exactly; 1 (before
# 2026-12-03): a heading-relative variant with per-frame facing and yaw-invariant IK.
FEATURE_CONVENTION = 2
FEATURE_CONVENTION_NAME = "humanml3d-process-file"


# --------------------------------------------------------------------------- convention


class FeatureConventionError(ValueError):
    """An artefact made from motion features of another convention than this code's."""


def feature_convention_record() -> dict:
    """What every artefact derived from features records about them."""
    return {"feature_convention": FEATURE_CONVENTION, "feature_convention_name": FEATURE_CONVENTION_NAME}


def check_feature_convention(record, where) -> None:
    """Refuse ``where`` (a path or a name) when its recorded convention is not this code's;
    artefacts from before conventions were recorded are convention 1."""
    got = record.get("feature_convention", 1) if isinstance(record, dict) else 1
    if got != FEATURE_CONVENTION:
        raise FeatureConventionError(
            f"{where}: made from motion features of convention {got} (1: the heading-relative variant used "
            f"before 2026-12-03); this code encodes convention {FEATURE_CONVENTION} ({FEATURE_CONVENTION_NAME}: "
            "HumanML3D's own features). The two differ in 196 of 263 channels and must not be mixed: rebuild "
            "the data (delete the cache folder or rerun its build command) and retrain models and evaluators.")


# --------------------------------------------------------------------------- layout


def num_feet(skeleton: Skeleton) -> int:
    return len(skeleton.feet_left) + len(skeleton.feet_right)


def feature_dim(skeleton: Skeleton) -> int:
    """``12J - 5 + F``; equals ``12J - 1`` for two feet joints per side."""
    return 12 * skeleton.num_joints - 5 + num_feet(skeleton)


def channel_groups(skeleton: Skeleton) -> dict[str, slice]:
    """Channel slices of each feature group (see module docstring).

    ``"redundant"`` spans rotations, velocities and contacts (67..262 for
    SMPL-22): the groups ``decode`` does not read, supervised by the
    representation-alignment loss.
    """
    J = skeleton.num_joints
    ric0 = 4
    rot0 = ric0 + 3 * (J - 1)
    vel0 = rot0 + 6 * (J - 1)
    con0 = vel0 + 3 * J
    end = con0 + num_feet(skeleton)
    return {
        "root_rot_vel": slice(0, 1),
        "root_lin_vel": slice(1, 3),
        "root_y": slice(3, 4),
        "ric": slice(ric0, rot0),
        "rot": slice(rot0, vel0),
        "local_vel": slice(vel0, con0),
        "contacts": slice(con0, end),
        "redundant": slice(rot0, end),
    }


def redundant_slice(skeleton: Skeleton) -> slice:
    return channel_groups(skeleton)["redundant"]


# --------------------------------------------------------------------------- helpers


def facing_yaw(joints: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Heading angle ``[...]`` of ``joints [..., J, 3]`` from the hip and shoulder lines.

    ``rotation_about_y(yaw) @ +z`` is the facing direction: up x (right - left).
    """
    return _mf.facing_yaw(joints, skeleton.facing_joints)


def _as_batched(joints, skeleton: Skeleton, lengths, name="joints"):
    """Torch ``[B, T, J, 3]`` view, lengths ``[B]``, and how to undo the wrapping."""
    is_numpy = isinstance(joints, np.ndarray)
    if is_numpy:
        if joints.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected float32/float64, got {joints.dtype}")
        joints = torch.from_numpy(np.ascontiguousarray(joints))
    _check_joints(joints, skeleton, name)
    if joints.dim() not in (3, 4):
        raise ValueError(
            f"{name}: expected [T, {skeleton.num_joints}, 3] or [B, T, {skeleton.num_joints}, 3], "
            f"got {tuple(joints.shape)}"
        )
    unbatched = joints.dim() == 3
    if unbatched:
        joints = joints[None]
    B, T = joints.shape[:2]
    if T < 2:
        raise ValueError(f"{name}: need at least 2 frames, got {T}")
    if lengths is None:
        lengths_t = torch.full((B,), T, dtype=torch.long, device=joints.device)
    else:
        lengths_t = torch.as_tensor(lengths, device=joints.device).long().reshape(-1)
        if lengths_t.shape != (B,):
            raise ValueError(f"lengths: expected shape [{B}], got {tuple(lengths_t.shape)}")
        if bool((lengths_t < 2).any()) or bool((lengths_t > T).any()):
            raise ValueError(f"lengths: each must be in [2, {T}], got {lengths_t.tolist()}")
    return joints, lengths_t, unbatched, is_numpy


_fill_padding = _mf.fill_padding


# --------------------------------------------------------------------------- canonical frame


@dataclass
class CanonicalTransform:
    """Rigid map from world to canonical coordinates: ``X_c = rotation @ X + translation``.

    ``rotation`` is ``[..., 3, 3]`` (a rotation about y) and ``translation``
    ``[..., 3]``, one per clip (leading dims ``[B]`` for batched input, none for
    a single clip).
    """

    rotation: torch.Tensor
    translation: torch.Tensor

    def _expand(self, extra_dims: int):
        """Insert singleton dims after the clip dims so the transform broadcasts
        over per-frame / per-joint axes of the argument."""
        shape_r = self.rotation.shape[:-2] + (1,) * extra_dims + (3, 3)
        shape_t = self.translation.shape[:-1] + (1,) * extra_dims + (3,)
        return self.rotation.reshape(shape_r), self.translation.reshape(shape_t)

    def _extra(self, x: torch.Tensor, tail: int, name: str) -> int:
        lead = self.rotation.dim() - 2
        extra = x.dim() - tail - lead
        if extra < 0 or tuple(x.shape[:lead]) != tuple(self.rotation.shape[:-2]):
            raise ValueError(
                f"{name}: leading dims must start with the transform's clip dims "
                f"{tuple(self.rotation.shape[:-2])}, got shape {tuple(x.shape)}"
            )
        return extra

    def apply_points(self, points: torch.Tensor) -> torch.Tensor:
        """World points ``[*clip, ..., 3]`` -> canonical points."""
        rot, tr = self._expand(self._extra(points, 1, "points"))
        rot, tr = rot.to(points), tr.to(points)
        return (rot @ points[..., None])[..., 0] + tr

    def inverse_points(self, points: torch.Tensor) -> torch.Tensor:
        """Canonical points -> world points."""
        rot, tr = self._expand(self._extra(points, 1, "points"))
        rot, tr = rot.to(points), tr.to(points)
        return (rot.transpose(-1, -2) @ (points - tr)[..., None])[..., 0]

    def apply_camera(self, R: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Extrinsics ``x_cam = R @ X + t`` (``R [*clip, ..., 3, 3]``, ``t [*clip, ..., 3]``)
        rewritten for canonical points: ``R' = R rot^T``, ``t' = t - R rot^T translation``."""
        extra = self._extra(R, 2, "R")
        if t.shape != R.shape[:-1]:
            raise ValueError(f"t: expected shape {tuple(R.shape[:-1])}, got {tuple(t.shape)}")
        rot, tr = self._expand(extra)
        rot, tr = rot.to(R), tr.to(R)
        R_new = R @ rot.transpose(-1, -2)
        t_new = t - (R_new @ tr[..., None])[..., 0]
        return R_new, t_new


def _canonical_transform(joints: torch.Tensor, skeleton: Skeleton):
    """Transform for filled ``[B, T, J, 3]`` joints, plus the world yaw of frame 0."""
    rotation, translation, yaw0 = _mf.canonical_frame(joints, skeleton.facing_joints)
    return CanonicalTransform(rotation, translation), yaw0


def canonicalize(joints, skeleton: Skeleton, lengths=None):
    """Put clips in HumanML3D's canonical frame.

    Lowest joint of the clip on y = 0, root at the xz origin at frame 0,
    facing +z at frame 0. ``joints`` is ``[T, J, 3]`` or ``[B, T, J, 3]``
    (torch or numpy); padded frames (``t >= lengths[b]``) are ignored and come
    back as the last valid frame's pose. Returns ``(canonical_joints,
    CanonicalTransform)``; the transform maps world points and cameras into
    the canonical frame.
    """
    x, lengths_t, unbatched, is_numpy = _as_batched(joints, skeleton, lengths)
    x = _fill_padding(x, lengths_t)
    tf, _ = _canonical_transform(x, skeleton)
    canon = tf.apply_points(x)
    if unbatched:
        canon, tf = canon[0], CanonicalTransform(tf.rotation[0], tf.translation[0])
    if is_numpy:
        canon = canon.numpy()
    return canon, tf


# --------------------------------------------------------------------------- encoder


def encode(joints, skeleton: Skeleton, lengths=None, *, feet_threshold: float = FEET_THRESHOLD,
           facing_sigma: float = FACING_SIGMA, backend: str | None = None):
    """Joint positions -> HumanML3D features.

    ``joints``: ``[T, J, 3]`` or ``[B, T, J, 3]`` metres, y up, at the dataset
    frame rate (the contact threshold is per frame: 0.002 m^2 at 20 fps).
    ``lengths``: ``[B]`` valid frames per clip (default all); features past
    ``lengths[b] - 1`` are zero. numpy in -> numpy out.
    ``facing_sigma``: Gaussian smoothing of the root's facing, in frames (HumanML3D: 20).
    ``backend``: ``vmdm_kernels`` backend (default: automatic -- the compiled encoder
    unless gradients are needed; see :func:`vmdm_kernels.motion_features`).
    Returns ``[..., T - 1, D]`` with ``D = feature_dim(skeleton)``.
    """
    x, lengths_t, unbatched, is_numpy = _as_batched(joints, skeleton, lengths)
    feats = vk.motion_features(x, feature_skeleton(skeleton), lengths_t, feet_threshold=feet_threshold,
                               facing_sigma=facing_sigma, backend=backend)
    if unbatched:
        feats = feats[0]
    return feats.numpy() if is_numpy else feats


# --------------------------------------------------------------------------- decoder


def decode(features, skeleton: Skeleton, *, backend: str | None = None):
    """HumanML3D features ``[..., T, D]`` -> joints ``[..., T, J, 3]`` (``recover_from_ric``).

    Integrates the heading from 0 and the root's ground velocity from the
    origin, takes the root height from channel 3 and places the ric joints
    around the root. Differentiable; reads only channels 0..3+3(J-1). numpy in
    -> numpy out. Runs :func:`vmdm_kernels.recover_from_ric` (fused forward and
    backward kernels; ``backend`` as there).
    """
    is_numpy = isinstance(features, np.ndarray)
    f = torch.from_numpy(features) if is_numpy else features
    D = feature_dim(skeleton)
    if not isinstance(f, torch.Tensor) or f.dim() < 2 or f.shape[-1] != D:
        shape = tuple(f.shape) if hasattr(f, "shape") else type(f).__name__
        raise ValueError(f"features: expected shape [..., T, {D}] for skeleton {skeleton.name!r}, got {shape}")
    if not f.is_floating_point():
        raise TypeError(f"features: expected a floating-point tensor, got {f.dtype}")
    out = vk.recover_from_ric(f, skeleton.num_joints, backend=backend)
    return out.numpy() if is_numpy else out


# --------------------------------------------------------------------------- normalisation


def compute_mean_std(
    features_list: Iterable, skeleton: Skeleton, *, feat_bias: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over all frames of all clips, with HumanML3D's grouping.

    Like HumanML3D's ``mean_variance``: each group's std is replaced by the
    group's average std (root rotation velocity, root linear velocity, root
    height, ric, rotations, velocities, contacts), so channels of one group
    share a scale. HumanML3D's released ``Std.npy`` uses no bias (1.0); its
    evaluator/VQ scripts divide the root groups and contacts by
    ``feat_bias = 5`` to up-weight them -- pass ``feat_bias`` for that. A
    group whose std is 0 (e.g. contacts that never change) gets std 1.
    """
    arrays = [np.asarray(f.detach().cpu() if isinstance(f, torch.Tensor) else f, dtype=np.float64) for f in features_list]
    D = feature_dim(skeleton)
    if not arrays:
        raise ValueError("features_list: empty; need at least one clip")
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != D:
            raise ValueError(f"features_list[{i}]: expected shape [T, {D}], got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"features_list[{i}]: contains NaN or inf")
    data = np.concatenate(arrays, axis=0)
    return group_std(data.mean(axis=0), data.std(axis=0), skeleton, feat_bias=feat_bias)


def group_std(mean: np.ndarray, std: np.ndarray, skeleton: Skeleton, *, feat_bias: float = 1.0):
    """Apply HumanML3D's per-group std averaging (see :func:`compute_mean_std`)
    to raw per-channel statistics, e.g. accumulated from running moments."""
    mean = np.asarray(mean, dtype=np.float64)
    std = np.array(std, dtype=np.float64)
    D = feature_dim(skeleton)
    if mean.shape != (D,) or std.shape != (D,):
        raise ValueError(f"mean/std: expected shape ({D},), got {mean.shape} and {std.shape}")
    groups = channel_groups(skeleton)
    for name in ("root_rot_vel", "root_lin_vel", "root_y", "ric", "rot", "local_vel", "contacts"):
        sl = groups[name]
        g = std[sl].mean() if std[sl].size else 0.0
        if g <= 1e-12:
            g = 1.0
        if name in ("root_rot_vel", "root_lin_vel", "root_y", "contacts"):
            g = g / feat_bias
        std[sl] = g
    return mean.astype(np.float32), std.astype(np.float32)


class Normalizer:
    """``(x - mean) / std`` per channel, for numpy arrays or torch tensors."""

    def __init__(self, mean, std):
        mean = np.asarray(mean, dtype=np.float32)
        std = np.asarray(std, dtype=np.float32)
        if mean.ndim != 1 or std.shape != mean.shape:
            raise ValueError(f"mean/std: expected two [D] arrays, got {mean.shape} and {std.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std <= 0).any():
            raise ValueError("std: must be finite and positive (and mean finite)")
        self.mean, self.std = mean, std
        self._cache: dict = {}

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def _params(self, x):
        if isinstance(x, torch.Tensor):
            key = (x.device, x.dtype)
            if key not in self._cache:
                self._cache[key] = (
                    torch.as_tensor(self.mean, device=x.device, dtype=x.dtype),
                    torch.as_tensor(self.std, device=x.device, dtype=x.dtype),
                )
            return self._cache[key]
        return self.mean.astype(x.dtype), self.std.astype(x.dtype)

    def _check(self, x, name):
        if x.shape[-1] != self.dim:
            raise ValueError(f"{name}: expected last dim {self.dim}, got shape {tuple(x.shape)}")

    def normalize(self, x):
        self._check(x, "x")
        m, s = self._params(x)
        return (x - m) / s

    def denormalize(self, x):
        self._check(x, "x")
        m, s = self._params(x)
        return x * s + m

    def save(self, directory) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "Mean.npy", self.mean)
        np.save(d / "Std.npy", self.std)

    @classmethod
    def load(cls, directory) -> "Normalizer":
        d = Path(directory)
        for name in ("Mean.npy", "Std.npy"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name}: missing (Normalizer.load needs Mean.npy and Std.npy)")
        return cls(np.load(d / "Mean.npy"), np.load(d / "Std.npy"))

    @classmethod
    def from_features(cls, features_list: Iterable, skeleton: Skeleton, **kw) -> "Normalizer":
        return cls(*compute_mean_std(features_list, skeleton, **kw))
