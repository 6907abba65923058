"""HumanML3D motion features from joint positions: the reference encoder.

For a skeleton of ``J`` joints and ``N`` foot joints, frame ``t`` of a clip gives
``D = 12 J - 5 + N`` channels (263 for SMPL-22 with two foot joints per side)::

    [0]                 root angular velocity about y (half the yaw change, rad/frame)
    [1:3]               root linear velocity (x, z) in the heading frame of t + 1, m/frame
    [3]                 root height y, m
    [4 : 4+3(J-1)]      joints 1..J-1 relative to the root's ground point, in the heading frame
    next 6(J-1)         per-bone rotations of joints 1..J-1, continuous 6D (first two columns)
    next 3J             joint velocities in the heading frame, m/frame
    last N              foot contacts (squared displacement below a threshold), 0/1

in the clip's canonical frame: lowest joint of the clip on y = 0, root at the xz origin
and facing +z at frame 0. ``T`` frames give ``T - 1`` feature frames; rows at or past
``lengths[b] - 1`` are zero. The facing direction is up x (right hip - left hip + right
shoulder - left shoulder). Bone rotations are shortest arcs from the rest direction to the
observed bone, expressed in the frame of the bone ending at the parent (the heading for
bones leaving the root): yaw-invariant and exactly invertible.

This module is the ground truth for the compiled encoders and is differentiable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

__all__ = ["FeatureSkeleton", "motion_features", "bone_rotations", "rotation_between_units",
           "half_turn_about_perpendicular", "facing_yaw", "wrap_angle", "rot_y_apply", "fill_padding",
           "canonical_origin", "canonical_frame"]

_EPS = 1e-8
MAX_JOINTS = 64  # the compiled kernels keep one frame per joint in registers / on the stack


@dataclass(frozen=True)
class FeatureSkeleton:
    """What the encoder needs to know about a skeleton.

    ``parents[j]`` precedes ``j`` (``parents[0] == -1``); ``offsets[j]`` is the rest
    vector of bone ``parents[j] -> j`` (any length; only its direction is used);
    ``facing_joints`` = (right hip, left hip, right shoulder, left shoulder); ``feet_left``
    and ``feet_right`` are the joints whose contacts are reported, in that order.
    """

    parents: tuple[int, ...]
    offsets: tuple[tuple[float, float, float], ...]
    facing_joints: tuple[int, int, int, int]
    feet_left: tuple[int, ...]
    feet_right: tuple[int, ...]

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
        """``(bone_child, bone_parent, rest, facing, feet)`` as the compiled encoders take them:
        bones in level order, rest vectors flattened."""
        _, child, parent, _ = self.levels
        rest = [float(v) for o in self.offsets for v in o]
        return tuple(child), tuple(parent), tuple(rest), tuple(self.facing_joints), tuple(self.feet)

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


@functools.lru_cache(maxsize=None)
def _level_index(skeleton: FeatureSkeleton, device: torch.device) -> tuple:
    """:attr:`FeatureSkeleton.levels` as index tensors on ``device``, made once."""
    levels, child, parent, order = skeleton.levels
    ix = lambda v: torch.tensor(v, dtype=torch.long, device=device)  # noqa: E731
    return ix(child), ix(parent), tuple(ix(slots) for _, slots in levels), ix(order)


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


def bone_rotations(joints: torch.Tensor, skeleton: FeatureSkeleton, root_yaw: torch.Tensor) -> torch.Tensor:
    """Per-bone rotations ``[..., J-1, 3, 3]`` of joints ``1..J-1`` (see the module docstring);
    ``root_yaw [...]`` is the heading, in radians, that bones leaving the root start from.

    The rotations of all bones at one tree depth are computed together, so the number of
    tensor operations grows with the skeleton's depth, not its size."""
    levels = skeleton.levels[0]
    child_ix, parent_ix, slot_ix, order_ix = _level_index(skeleton, joints.device)
    # Every bone vector at once, in level order; each level is then a contiguous slice.
    bones = joints.index_select(-2, child_ix) - joints.index_select(-2, parent_ix)
    rest = _normalize(torch.tensor(skeleton.offsets, dtype=joints.dtype, device=joints.device))[child_ix]
    rest_flip = half_turn_about_perpendicular(rest)
    frame_prev = rotation_about_y(root_yaw.to(joints.dtype))[..., None, :, :]
    locs, start = [], 0
    for (n, parent_slot), slots in zip(levels, slot_ix):
        if parent_slot == tuple(range(frame_prev.shape[-3])):
            frame = frame_prev
        elif len(set(parent_slot)) == 1:
            frame = frame_prev.narrow(-3, parent_slot[0], 1).expand(*frame_prev.shape[:-3], n, 3, 3)
        else:
            frame = frame_prev.index_select(-3, slots)
        v = bones.narrow(-2, start, n)
        v_local = (frame * v[..., :, None]).sum(-2)  # frame^T v
        loc = rotation_between_units(rest[start:start + n], _normalize(v_local), rest_flip[start:start + n])
        locs.append(loc)
        frame_prev = frame @ loc
        start += n
    return torch.cat(locs, dim=-3).index_select(-3, order_ix)


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


# --------------------------------------------------------------------------- encoder


def motion_features(joints: torch.Tensor, lengths: torch.Tensor, skeleton: FeatureSkeleton,
                    feet_threshold: float = 0.002, mean: torch.Tensor | None = None,
                    std: torch.Tensor | None = None) -> torch.Tensor:
    """Features ``[B, T-1, D]`` of ``joints [B, T, J, 3]`` (metres, y up) with ``lengths [B]``
    valid frames (each in ``[2, T]``); ``(f - mean) / std`` when ``mean``/``std`` ``[D]`` are given."""
    x = fill_padding(joints, lengths)
    B, T, J, _ = x.shape
    rotation, translation, yaw0 = canonical_frame(x, skeleton.facing_joints)
    pos = (rotation[:, None, None] @ x[..., None])[..., 0] + translation[:, None, None]
    # Heading relative to frame 0, taken from the world joints so that frame 0 is exactly 0.
    yaw = wrap_angle(facing_yaw(x, skeleton.facing_joints) - yaw0[:, None])  # [B, T]

    root = pos[:, :, 0]
    # Channel 0 is HumanML3D's quaternion half-angle of the heading change.
    root_rot_vel = -0.5 * wrap_angle(yaw[:, 1:] - yaw[:, :-1])
    root_lin_vel = rot_y_apply(-yaw[:, 1:], root[:, 1:] - root[:, :-1])[..., [0, 2]]
    root_y = root[:, :-1, 1:2]

    ground = root * root.new_tensor([1.0, 0.0, 1.0])
    ric = rot_y_apply(-yaw[:, :, None], pos - ground[:, :, None])[:, :-1, 1:]

    rot = bone_rotations(pos[:, :-1], skeleton, yaw[:, :-1])
    rot6d = torch.cat((rot[..., :, 0], rot[..., :, 1]), dim=-1)

    disp = pos[:, 1:] - pos[:, :-1]
    local_vel = rot_y_apply(-yaw[:, :-1, None], disp)
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
