"""HumanML3D motion features from joint positions: the reference encoder.

For a skeleton of ``J`` joints and ``N`` foot joints, frame ``t`` of a clip gives
``D = 12 J - 5 + N`` channels (263 for SMPL-22 with two foot joints per side)::

    [0]                 root angular velocity about y: the half-angle of the root
                        rotation's change from t to t + 1, rad/frame
    [1:3]               root linear velocity (x, z) rotated by the root rotation of t + 1, m/frame
    [3]                 root height y, m
    [4 : 4+3(J-1)]      joints 1..J-1 relative to the root's ground point, rotated by the
                        root rotation of t
    next 6(J-1)         per-bone rotations of joints 1..J-1, continuous 6D (first two
                        matrix columns)
    next 3J             joint velocities rotated by the root rotation of t, m/frame
    last N              foot contacts (squared displacement below a threshold), 0/1

This is HumanML3D's ``process_file`` feature computation, step for step:

- the clip's canonical frame: lowest joint of the clip on y = 0, root at the xz origin
  and facing +z at frame 0, facing from up x (right hip - left hip + right shoulder -
  left shoulder) of frame 0;
- the root rotation of every frame is the shortest arc taking its facing direction to
  +z, where the facing comes from HumanML3D's inverse kinematics: up x (left hip - right
  hip + right shoulder - left shoulder) -- the hip term enters reversed there -- with the
  across vector normalised, then smoothed over frames with a Gaussian (sigma 20 frames,
  truncated at 4 sigma, edges repeated: ``gaussian_filter1d(..., mode="nearest")``) and
  normalised; frame 0's root rotation is the identity;
- bone rotations walk HumanML3D's kinematic chains: bone ``p -> c`` stores
  ``inv(F) * arc(rest_c, bone_c)``, the world shortest arc from the rest direction to
  the observed bone seen from ``F``, where ``F`` is the root rotation for the first bone
  of a chain and the world arc of the bone ending at ``p`` otherwise (arm chains start
  again from the root rotation, not from the spine);
- channel 0 is ``asin`` of the y component of ``q(t+1) * inv(q(t))`` with the root
  quaternions kept continuous (HumanML3D's ``qfix``): a heading that passes +-180 degrees
  from frame 0 keeps the sign of its velocity.

``T`` frames give ``T - 1`` feature frames; rows at or past ``lengths[b] - 1`` are zero.
The smoothing makes row ``t`` depend on frames up to ``4 sigma`` (80) away, clamped to the
clip's valid frames. ``facing_sigma = 0`` turns the smoothing off.

This module is the ground truth for the compiled encoders and is differentiable.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

__all__ = ["FeatureSkeleton", "motion_features", "chain_rotations", "root_quaternions", "gaussian_weights",
           "quaternion_between", "rotation_between_units", "half_turn_about_perpendicular", "facing_yaw",
           "wrap_angle", "rot_y_apply", "fill_padding", "canonical_origin", "canonical_frame",
           "HUMANML3D_FACING_SIGMA"]

_EPS = 1e-8
MAX_JOINTS = 64  # the compiled kernels keep one frame per joint in registers / on the stack


@dataclass(frozen=True)
class FeatureSkeleton:
    """What the encoder needs to know about a skeleton.

    ``parents[j]`` precedes ``j`` (``parents[0] == -1``); ``offsets[j]`` is the rest
    vector of bone ``parents[j] -> j`` (any length; only its direction is used);
    ``facing_joints`` = (right hip, left hip, right shoulder, left shoulder); ``feet_left``
    and ``feet_right`` are the joints whose contacts are reported, in that order.
    For HumanML3D's SMPL-22 the offsets are its axis-aligned ``t2m_raw_offsets``.
    ``chains`` are HumanML3D's kinematic chains (parent-linked joint paths; every joint
    but the root on exactly one); the first bone of a chain is expressed from the root
    rotation. Without chains, a joint's first child (lowest index) continues its parent's
    chain and the others start new ones.
    """

    parents: tuple[int, ...]
    offsets: tuple[tuple[float, float, float], ...]
    facing_joints: tuple[int, int, int, int]
    feet_left: tuple[int, ...]
    feet_right: tuple[int, ...]
    chains: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        J = len(self.parents)
        if J < 2:
            raise ValueError(f"FeatureSkeleton: parents: expected at least 2 joints, got {J}")
        if len(self.offsets) != J or any(len(o) != 3 for o in self.offsets):
            raise ValueError(f"FeatureSkeleton: offsets: expected {J} triples, got {len(self.offsets)} entries")
        if self.parents[0] != -1:
            raise ValueError(f"FeatureSkeleton: parents[0]: expected -1 (the root), got {self.parents[0]}")
        for j, p in enumerate(self.parents[1:], start=1):
            if not 0 <= p < j:
                raise ValueError(f"FeatureSkeleton: parents[{j}] = {p}: parents must precede their children")
        if len(self.facing_joints) != 4:
            raise ValueError(f"FeatureSkeleton: facing_joints: expected 4 joints, got {len(self.facing_joints)}")
        for name in ("facing_joints", "feet_left", "feet_right"):
            bad = [j for j in getattr(self, name) if not 0 <= j < J]
            if bad:
                raise ValueError(f"FeatureSkeleton: {name}: joints {bad} are outside [0, {J})")
        self.frames  # validates the chains

    @functools.cached_property
    def frames(self) -> tuple[int, ...]:
        """Per joint ``j >= 1`` (index ``j - 1``): the joint whose bone's world arc is the
        frame bone ``parents[j] -> j`` is expressed in, or -1 for the root rotation."""
        J = len(self.parents)
        frame = [None] * J
        if self.chains:
            for chain in self.chains:
                for k, (p, c) in enumerate(zip(chain[:-1], chain[1:])):
                    if not (0 <= c < J) or self.parents[c] != p:
                        raise ValueError(f"FeatureSkeleton: chains: {tuple(chain)} has {p} -> {c}, which is not a bone")
                    if frame[c] is not None:
                        raise ValueError(f"FeatureSkeleton: chains: joint {c} is on two chains")
                    frame[c] = -1 if k == 0 else p
            missing = [j for j in range(1, J) if frame[j] is None]
            if missing:
                raise ValueError(f"FeatureSkeleton: chains: joints {missing} are on no chain")
        else:
            for c in range(1, J):
                p = self.parents[c]
                first = min(j for j in range(1, J) if self.parents[j] == p)
                frame[c] = p if (p != 0 and first == c) else -1
        return tuple(frame[1:])

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def feet(self) -> tuple[int, ...]:
        return tuple(self.feet_left) + tuple(self.feet_right)

    @property
    def feature_dim(self) -> int:
        return 12 * self.num_joints - 5 + len(self.feet)

    @functools.cached_property
    def kernel_tables(self) -> tuple:
        """``(bone_child, bone_parent, bone_frame, rest, facing, feet)`` as the compiled encoders
        take them: bones in level order (parents first), each with its frame joint (-1: the
        root rotation), rest vectors flattened."""
        _, child, parent, _ = self.levels
        rest = [float(v) for o in self.offsets for v in o]
        frame = tuple(self.frames[c - 1] for c in child)
        return tuple(child), tuple(parent), frame, tuple(rest), tuple(self.facing_joints), tuple(self.feet)

    @functools.cached_property
    def levels(self) -> tuple:
        """Bones grouped by tree depth: ``(levels, child, parent, order)``. ``levels`` holds
        one ``(bone count, each bone's parent slot in the previous level)`` per depth (slot 0
        of depth 0 is the root); ``child``/``parent`` list the bones' joints level after
        level; ``order`` takes that order back to joints ``1..J-1``."""
        J = self.num_joints
        depth = [0] * J
        for j in range(1, J):
            depth[j] = depth[self.parents[j]] + 1
        levels, slot, child, parent = [], {0: 0}, [], []
        for d in range(1, max(depth) + 1):
            level = [j for j in range(1, J) if depth[j] == d]
            par = [self.parents[j] for j in level]
            levels.append((len(level), tuple(slot[p] for p in par)))
            slot = {j: i for i, j in enumerate(level)}
            child += level
            parent += par
        order = tuple(child.index(j) for j in range(1, J))
        return tuple(levels), tuple(child), tuple(parent), order


# --------------------------------------------------------------------------- rotations


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def half_turn_about_perpendicular(u: torch.Tensor) -> torch.Tensor:
    """A half turn ``[..., 3, 3]`` about an axis perpendicular to the unit vectors ``u``: the
    shortest arc to ``-u``. The axis is built from the coordinate axis least aligned with u."""
    ax = torch.zeros_like(u)
    ax.scatter_(-1, u.abs().argmin(dim=-1, keepdim=True), 1.0)
    perp = _normalize(torch.linalg.cross(u, ax, dim=-1))
    return 2.0 * perp[..., :, None] * perp[..., None, :] - torch.eye(3, dtype=u.dtype, device=u.device)


# [w]x as a gather of w's components with signs (row-major 3x3).
_SKEW_INDEX = (0, 2, 1, 2, 0, 0, 1, 0, 0)
_SKEW_SIGN = (0.0, -1.0, 1.0, 1.0, 0.0, -1.0, -1.0, 1.0, 0.0)


@functools.lru_cache(maxsize=None)
def _skew_index(device: torch.device) -> torch.Tensor:
    return torch.tensor(_SKEW_INDEX, dtype=torch.long, device=device)


def rotation_between_units(u: torch.Tensor, v: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Shortest-arc rotation ``[..., 3, 3]`` taking unit ``u`` to unit ``v``, with ``flip`` the
    half turn used when v = -u.

    Rodrigues, I + [w]x + [w]x^2 / (1 + c), with [w]x^2 = w w^T - |w|^2 I and |w|^2 = 1 - c^2,
    written with elementwise products: a handful of tensor ops, no batched 3x3 matmul."""
    w = torch.linalg.cross(*torch.broadcast_tensors(u, v), dim=-1)
    c = (u * v).sum(-1)
    skew = w.index_select(-1, _skew_index(w.device)) * w.new_tensor(_SKEW_SIGN)
    general = (c[..., None, None] * torch.eye(3, dtype=w.dtype, device=w.device) + skew.unflatten(-1, (3, 3))
               + w[..., :, None] * w[..., None, :] / (1.0 + c).clamp_min(1e-6)[..., None, None])
    return torch.where((c < -1.0 + 1e-6)[..., None, None], flip, general)


def rotation_about_y(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    z, o = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack((c, z, s, z, o, z, -s, z, c), dim=-1).reshape(angle.shape + (3, 3))


# --------------------------------------------------------------------------- heading and frame


def rot_y_apply(angle: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``rotation_about_y(angle) @ v`` without building matrices; broadcasts."""
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = v.unbind(-1)
    return torch.stack((c * x + s * z, y, -s * x + c * z), dim=-1)


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    return torch.atan2(torch.sin(a), torch.cos(a))


def facing_yaw(joints: torch.Tensor, facing_joints) -> torch.Tensor:
    """Heading angle ``[...]`` of ``joints [..., J, 3]``: ``rotation_about_y(yaw) @ +z`` is
    up x (right - left) over the hip and shoulder lines."""
    r_hip, l_hip, r_sh, l_sh = facing_joints
    across = (joints[..., r_hip, :] - joints[..., l_hip, :]) + (joints[..., r_sh, :] - joints[..., l_sh, :])
    # up x across = (across_z, 0, -across_x); atan2 needs no normalisation.
    return torch.atan2(across[..., 2], -across[..., 0])


def fill_padding(joints: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Replace frames past each clip's length by its last valid frame, so that
    padding never reaches the floor, facing or velocity computations."""
    T = joints.shape[1]
    idx = torch.minimum(torch.arange(T, device=joints.device)[None], (lengths - 1)[:, None])
    return torch.gather(joints, 1, idx[:, :, None, None].expand_as(joints))


def canonical_origin(joints: torch.Tensor, facing_joints) -> tuple[torch.Tensor, torch.Tensor]:
    """For filled ``[B, T, J, 3]`` joints: the canonical origin ``[B, 3]`` (frame 0's root
    over the clip's lowest joint) and frame 0's world heading ``[B]``."""
    floor = joints[..., 1].amin(dim=(1, 2))
    root0 = joints[:, 0, 0]
    origin = torch.stack((root0[:, 0], floor, root0[:, 2]), dim=-1)
    return origin, facing_yaw(joints[:, 0], facing_joints)


def canonical_frame(joints: torch.Tensor, facing_joints) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rigid map into the canonical frame of filled ``[B, T, J, 3]`` joints:
    ``(rotation [B, 3, 3], translation [B, 3], yaw0 [B])`` with ``X_c = rotation X +
    translation`` and ``yaw0`` frame 0's world heading."""
    origin, yaw0 = canonical_origin(joints, facing_joints)
    rotation = rotation_about_y(-yaw0)
    return rotation, -(rotation @ origin[..., None])[..., 0], yaw0


# --------------------------------------------------------------------------- quaternions

HUMANML3D_FACING_SIGMA = 20.0  # frames, HumanML3D's smoothing of the facing direction
_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter1d's default


def gaussian_weights(sigma: float) -> list[float]:
    """``gaussian_filter1d``'s taps for ``sigma`` (radius ``int(4 sigma + 0.5)``), in float64;
    ``[1.0]`` for ``sigma <= 0``."""
    if sigma <= 0:
        return [1.0]
    radius = int(_TRUNCATE * float(sigma) + 0.5)
    w = [math.exp(-0.5 * (k / float(sigma)) ** 2) for k in range(-radius, radius + 1)]
    total = math.fsum(w)
    return [v / total for v in w]


def _qmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, av = a[..., :1], a[..., 1:]
    bw, bv = b[..., :1], b[..., 1:]
    w = aw * bw - (av * bv).sum(-1, keepdim=True)
    v = aw * bv + bw * av + torch.linalg.cross(*torch.broadcast_tensors(av, bv), dim=-1)
    return torch.cat((w, v), dim=-1)


def _qconj(q: torch.Tensor) -> torch.Tensor:
    return torch.cat((q[..., :1], -q[..., 1:]), dim=-1)


def quaternion_between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``(w, x, y, z)`` of the shortest arc from direction ``u`` to ``v`` (HumanML3D's
    ``qbetween``); for opposite directions a half turn about an axis perpendicular to ``u``
    (where ``qbetween`` divides by zero)."""
    u, v = torch.broadcast_tensors(u, v)
    un, vn = _normalize(u), _normalize(v)
    c = (un * vn).sum(-1, keepdim=True)
    q = torch.cat((1.0 + c, torch.linalg.cross(un, vn, dim=-1)), dim=-1)
    ax = torch.zeros_like(un)
    ax.scatter_(-1, un.abs().argmin(dim=-1, keepdim=True), 1.0)
    flip = torch.cat((torch.zeros_like(c), _normalize(torch.linalg.cross(un, ax, dim=-1))), dim=-1)
    q = torch.where(c < -1.0 + 1e-6, flip, q)
    return q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def _quaternion_columns(q: torch.Tensor) -> torch.Tensor:
    """The first two columns of unit quaternions' rotation matrices: ``[..., 6]``."""
    r, i, j, k = q.unbind(-1)
    return torch.stack((1 - 2 * (j * j + k * k), 2 * (i * j + k * r), 2 * (i * k - j * r),
                        2 * (i * j - k * r), 1 - 2 * (i * i + k * k), 2 * (j * k + i * r)), dim=-1)


def _yaw_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate ``v [..., 3]`` by rotations about y given as ``(w, y)`` quaternion parts ``q [..., 2]``."""
    w, y = q[..., 0], q[..., 1]
    return rot_y_apply_cs(1 - 2 * y * y, 2 * w * y, v)


def rot_y_apply_cs(c: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    return torch.stack((c * x + s * z, y, -s * x + c * z), dim=-1)


# --------------------------------------------------------------------------- root rotation


def _smooth_over_frames(f: torch.Tensor, lengths: torch.Tensor, sigma: float) -> torch.Tensor:
    """``gaussian_filter1d(f, sigma, axis=1, mode="nearest")`` of ``f [B, T, C]`` per clip, each
    clip's edge at its own last valid frame."""
    weights = gaussian_weights(sigma)
    if len(weights) == 1:
        return f
    B, T, C = f.shape
    R = len(weights) // 2
    taps = torch.arange(-R, R + 1, device=f.device)
    idx = torch.arange(T, device=f.device)[:, None] + taps[None]  # [T, K]
    idx = torch.minimum(idx.clamp_min(0)[None], (lengths - 1)[:, None, None])  # [B, T, K]
    picked = f.gather(1, idx.reshape(B, -1, 1).expand(-1, -1, C)).reshape(B, T, len(weights), C)
    w = torch.tensor(weights, dtype=f.dtype, device=f.device)
    return (picked * w[:, None]).sum(2)


def root_quaternions(pos: torch.Tensor, lengths: torch.Tensor, facing_joints,
                     facing_sigma: float = HUMANML3D_FACING_SIGMA) -> torch.Tensor:
    """Root rotations ``[B, T, 2]`` (the ``w`` and ``y`` parts of rotations about y) of canonical
    joints ``pos [B, T, J, 3]``: the shortest arc taking each frame's smoothed facing to +z,
    the identity at frame 0 (see the module docstring)."""
    r_hip, l_hip, r_sh, l_sh = facing_joints
    across = (pos[..., l_hip, :] - pos[..., r_hip, :]) + (pos[..., r_sh, :] - pos[..., l_sh, :])
    across = _normalize(across)
    forward = torch.stack((across[..., 2], -across[..., 0]), dim=-1)  # (x, z) of up x across
    forward = _smooth_over_frames(forward, lengths, facing_sigma)
    fx, fz = _normalize(forward).unbind(-1)
    # qbetween(forward, +z) = (1 + fz, 0, -fx, 0) normalised; facing -z exactly: a half turn about y.
    w, y = 1.0 + fz, -fx
    n = torch.sqrt(w * w + y * y)
    half_turn = n < 1e-6
    n = n.clamp_min(1e-6)
    q = torch.stack((torch.where(half_turn, torch.zeros_like(w), w / n),
                     torch.where(half_turn, torch.ones_like(y), y / n)), dim=-1)
    identity = q.new_tensor([1.0, 0.0]).expand(q.shape[0], 1, 2)
    return torch.cat((identity, q[:, 1:]), dim=1)


@functools.lru_cache(maxsize=None)
def _frame_index(skeleton: FeatureSkeleton, device: torch.device) -> tuple:
    J = skeleton.num_joints
    child = torch.arange(1, J, device=device)
    parent = torch.tensor(skeleton.parents[1:], dtype=torch.long, device=device)
    # Slot 0 is the root rotation, slot j (1..J-1) the world arc of the bone ending at j.
    frame = torch.tensor([max(f, 0) for f in skeleton.frames], dtype=torch.long, device=device)
    return child, parent, frame


def chain_rotations(pos: torch.Tensor, skeleton: FeatureSkeleton, root_q: torch.Tensor) -> torch.Tensor:
    """HumanML3D's per-bone rotations ``[..., J-1, 4]`` (unit quaternions) of joints ``1..J-1`` for
    joints ``pos [..., J, 3]`` with root rotations ``root_q [..., 2]`` (see the module docstring).
    Every bone at once: each rotation needs only its own world arc and its frame's."""
    child, parent, frame = _frame_index(skeleton, pos.device)
    rest = torch.tensor(skeleton.offsets, dtype=pos.dtype, device=pos.device)[1:]
    arcs = quaternion_between(rest, pos.index_select(-2, child) - pos.index_select(-2, parent))
    zero = torch.zeros_like(root_q[..., :1])
    root = torch.cat((root_q[..., :1], zero, root_q[..., 1:], zero), dim=-1)[..., None, :]
    frames = torch.cat((root, arcs), dim=-2).index_select(-2, frame)
    return _qmul(_qconj(frames), arcs)


# --------------------------------------------------------------------------- encoder


def motion_features(joints: torch.Tensor, lengths: torch.Tensor, skeleton: FeatureSkeleton,
                    feet_threshold: float = 0.002, mean: torch.Tensor | None = None,
                    std: torch.Tensor | None = None, facing_sigma: float = HUMANML3D_FACING_SIGMA) -> torch.Tensor:
    """Features ``[B, T-1, D]`` of ``joints [B, T, J, 3]`` (metres, y up) with ``lengths [B]``
    valid frames (each in ``[2, T]``); ``(f - mean) / std`` when ``mean``/``std`` ``[D]`` are given."""
    x = fill_padding(joints, lengths)
    B, T, J, _ = x.shape
    rotation, translation, _ = canonical_frame(x, skeleton.facing_joints)
    pos = (rotation[:, None, None] @ x[..., None])[..., 0] + translation[:, None, None]
    q = root_quaternions(pos, lengths, skeleton.facing_joints, facing_sigma)  # [B, T, 2]
    q_t, q_n = q[:, :-1], q[:, 1:]

    root = pos[:, :, 0]
    # y part of q(t+1) inv(q(t)), its sign chosen for the shorter way round (quaternion continuity).
    dot = (q_n * q_t).sum(-1)
    cross = q_n[..., 1] * q_t[..., 0] - q_n[..., 0] * q_t[..., 1]
    root_rot_vel = torch.asin(torch.where(dot < 0, -cross, cross).clamp(-1.0, 1.0))
    root_lin_vel = _yaw_rotate(q_n, root[:, 1:] - root[:, :-1])[..., [0, 2]]
    root_y = root[:, :-1, 1:2]

    ground = root * root.new_tensor([1.0, 0.0, 1.0])
    ric = _yaw_rotate(q_t[:, :, None], (pos - ground[:, :, None])[:, :-1])[:, :, 1:]

    rot6d = _quaternion_columns(chain_rotations(pos[:, :-1], skeleton, q_t))

    disp = pos[:, 1:] - pos[:, :-1]
    local_vel = _yaw_rotate(q_t[:, :, None], disp)
    contacts = ((disp[:, :, list(skeleton.feet)] ** 2).sum(-1) < feet_threshold).to(x.dtype)

    F = T - 1
    feats = torch.cat(
        (root_rot_vel[..., None], root_lin_vel, root_y, ric.reshape(B, F, -1), rot6d.reshape(B, F, -1),
         local_vel.reshape(B, F, -1), contacts),
        dim=-1,
    )
    valid = torch.arange(F, device=x.device)[None] < (lengths - 1)[:, None]
    feats = torch.where(valid[..., None], feats, torch.zeros((), dtype=feats.dtype, device=feats.device))
    if mean is not None:
        feats = (feats - mean) / std
    return feats
