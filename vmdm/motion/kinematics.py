"""Batched rotation utilities and inverse kinematics.

Conventions used throughout the project:

* Quaternions are ``(w, x, y, z)``, unit norm, acting on column vectors.
* Rotation matrices act on column vectors: ``v' = R @ v``.
* The continuous 6D representation (Zhou et al. 2019) is the first two
  *columns* of the matrix, concatenated: ``[R[:, 0], R[:, 1]]`` (HumanML3D's
  ``quaternion_to_cont6d`` uses the same layout).
* y is up; ``rotation_about_y(a)`` maps +z to ``(sin a, 0, cos a)``.

Every function accepts any number of leading dimensions and works for float32
and float64 on any device. All functions except :func:`inverse_kinematics`'s
branch selection are differentiable.
"""

from __future__ import annotations

import functools

import torch
from vmdm_kernels.ref import motion_features as _mf

from vmdm.motion.skeleton import Skeleton, feature_skeleton, forward_kinematics

__all__ = [
    "quat_to_matrix",
    "matrix_to_quat",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_rot6d",
    "rot6d_to_matrix",
    "quat_mul",
    "quat_inv",
    "quat_rotate",
    "quat_normalize",
    "quat_between",
    "matrix_between",
    "rotation_about_y",
    "yaw_of_direction",
    "inverse_kinematics",
    "chain_bone_rotations",
    "bone_lengths",
    "offsets_from_lengths",
    "forward_kinematics",
]

_EPS = 1e-8


def _check_last(x: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[x.dim() - len(shape):]) != shape or x.dim() < len(shape):
        exp = "[..., " + ", ".join(map(str, shape)) + "]"
        raise ValueError(f"{name}: expected shape {exp}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")


# --------------------------------------------------------------------------- quaternions


def quat_normalize(q: torch.Tensor) -> torch.Tensor:
    _check_last(q, (4,), "q")
    return q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` (apply ``b`` first, then ``a``)."""
    _check_last(a, (4,), "a")
    _check_last(b, (4,), "b")
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def quat_inv(q: torch.Tensor) -> torch.Tensor:
    """Inverse of a unit quaternion (its conjugate)."""
    _check_last(q, (4,), "q")
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``v [..., 3]`` by unit quaternions ``q [..., 4]`` (broadcast)."""
    _check_last(q, (4,), "q")
    _check_last(v, (3,), "v")
    w = q[..., :1]
    u = q[..., 1:]
    # v' = v + 2w (u x v) + 2 u x (u x v): avoids building matrices.
    u, v = torch.broadcast_tensors(u, v)
    w = w.expand(u.shape[:-1] + (1,))
    uv = torch.cross(u, v, dim=-1)
    return v + 2.0 * (w * uv + torch.cross(u, uv, dim=-1))


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` (w, x, y, z) -> ``[..., 3, 3]``; ``q`` is normalised first."""
    _check_last(q, (4,), "q")
    w, x, y, z = quat_normalize(q).unbind(-1)
    two = 2.0
    m = torch.stack(
        (
            1 - two * (y * y + z * z), two * (x * y - z * w), two * (x * z + y * w),
            two * (x * y + z * w), 1 - two * (x * x + z * z), two * (y * z - x * w),
            two * (x * z - y * w), two * (y * z + x * w), 1 - two * (x * x + y * y),
        ),
        dim=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` -> ``[..., 4]`` with ``w >= 0``.

    Uses the branch of Shepperd's method with the largest pivot, selected per
    element, so it is accurate for every rotation (including 180 degrees).
    """
    _check_last(m, (3, 3), "m")
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * |component|^2 for each of w, x, y, z.
    sq = torch.stack(
        (1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), dim=-1
    )
    r = sq.clamp_min(_EPS).sqrt()  # 2 * |component|
    cand = torch.stack(
        (
            torch.stack((r[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, r[..., 1] ** 2, m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, r[..., 2] ** 2, m12 + m21), dim=-1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, r[..., 3] ** 2), dim=-1),
        ),
        dim=-2,
    ) / (2.0 * r[..., :, None])
    best = sq.argmax(dim=-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = quat_normalize(q)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Shortest-arc unit quaternion taking direction ``u`` to direction ``v``.

    Opposite directions get a half turn about an axis perpendicular to ``u``.
    """
    return matrix_to_quat(matrix_between(u, v))


# --------------------------------------------------------------------------- matrices


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues: ``[..., 3]`` axis * angle (radians) -> ``[..., 3, 3]``."""
    _check_last(aa, (3,), "aa")
    theta2 = (aa * aa).sum(-1, keepdim=True)
    theta = theta2.clamp_min(1e-24).sqrt()
    small = theta2 < 1e-12
    # Taylor expansions keep the small-angle case finite and differentiable.
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-24))
    k = _skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(k.shape)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` -> axis * angle with angle in ``[0, pi]``."""
    q = matrix_to_quat(m)
    vec = q[..., 1:]
    s = vec.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(s, q[..., :1])
    scale = torch.where(s < 1e-8, 2.0 + 0.0 * s, angle / s.clamp_min(1e-12))
    return vec * scale


def matrix_to_rot6d(m: torch.Tensor) -> torch.Tensor:
    """First two columns ``[R[:,0], R[:,1]]`` -> ``[..., 6]``."""
    _check_last(m, (3, 3), "m")
    return torch.cat((m[..., :, 0], m[..., :, 1]), dim=-1)


def rot6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt of the two stored columns (works for unnormalised input)."""
    _check_last(d6, (6,), "d6")
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    b2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = b2 / b2.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def rotation_about_y(angle: torch.Tensor) -> torch.Tensor:
    """``[...]`` angles (radians) -> ``[..., 3, 3]`` rotations about +y."""
    if not isinstance(angle, torch.Tensor):
        angle = torch.as_tensor(angle, dtype=torch.get_default_dtype())
    return _mf.rotation_about_y(angle)


def yaw_of_direction(d: torch.Tensor) -> torch.Tensor:
    """Heading angle of horizontal direction ``d [..., 3]``: ``rotation_about_y(yaw) @ +z ~ d``."""
    _check_last(d, (3,), "d")
    return torch.atan2(d[..., 0], d[..., 2])


def _skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(v.shape[:-1] + (3, 3))


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def matrix_between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Shortest-arc rotation matrix taking direction ``u`` to direction ``v`` (broadcast)."""
    _check_last(u, (3,), "u")
    _check_last(v, (3,), "v")
    u = _normalize(u)
    return _rotation_between_units(u, _normalize(v), _half_turn_about_perpendicular(u))


_half_turn_about_perpendicular = _mf.half_turn_about_perpendicular
_rotation_between_units = _mf.rotation_between_units


# --------------------------------------------------------------------------- inverse kinematics


@functools.lru_cache(maxsize=None)
def _branch_plan(skeleton: Skeleton) -> tuple:
    """For each joint: (children, primary child, secondary pair) used by the IK.

    A joint with one child gets the shortest rotation taking the rest bone to
    the observed bone. A joint with several children (pelvis, upper spine) is
    a rigid frame: it is fixed by a primary bone (the one continuing a chain
    through the joint, otherwise the longest) and a secondary direction (the
    difference of two other child directions -- the hip or shoulder line --
    or the single other child), which is exact for rigid geometry even when
    bones are scaled individually.
    """
    J = skeleton.num_joints
    off = torch.tensor(skeleton.offsets, dtype=torch.float64)
    plan = []
    for j in range(J):
        ch = skeleton.children(j)
        if len(ch) <= 1:
            plan.append((tuple(ch), None, None))
            continue
        primary = None
        for chain in skeleton.chains:
            for k in range(1, len(chain) - 1):
                if chain[k] == j and chain[k + 1] in ch:
                    primary = chain[k + 1]
        if primary is None:
            primary = max(ch, key=lambda c: float(off[c].norm()))
        others = [c for c in ch if c != primary]
        pdir = _normalize(off[primary])
        if len(others) == 1:
            secondary = (others[0], None)
        else:
            best, best_score = None, -1.0
            for a in others:
                for b in others:
                    if a < b:
                        d = _normalize(off[a]) - _normalize(off[b])
                        score = float(torch.cross(pdir, _normalize(d), dim=-1).norm())
                        if score > best_score:
                            best, best_score = (a, b), score
            secondary = best
        plan.append((tuple(ch), primary, secondary))
    return tuple(plan)


def _frame(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Orthonormal frame (columns) from a primary and a secondary direction."""
    e1 = _normalize(primary)
    e2 = _normalize(secondary - (secondary * e1).sum(-1, keepdim=True) * e1)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack((e1, e2, e3), dim=-1)


def _check_joints(joints: torch.Tensor, skeleton: Skeleton, name: str = "joints") -> None:
    J = skeleton.num_joints
    if not isinstance(joints, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(joints).__name__}")
    if joints.dim() < 2 or tuple(joints.shape[-2:]) != (J, 3):
        raise ValueError(
            f"{name}: expected shape [..., {J}, 3] for skeleton {skeleton.name!r}, got {tuple(joints.shape)}"
        )
    if not joints.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {joints.dtype}")


def inverse_kinematics(joints: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Local rotations ``[..., J, 3, 3]`` that reproduce ``joints [..., J, 3]``.

    The convention is that of :func:`vmdm.motion.skeleton.forward_kinematics`:
    joint ``j``'s local rotation is relative to its parent's global frame and
    moves ``j``'s children; the root's is global. Rest bone directions are the
    skeleton's offsets. Walking the tree from the root (HumanML3D walks the
    same chains), a joint with one child gets the shortest-arc rotation from
    its rest bone to the observed bone expressed in the parent frame (no
    twist: bone twist is unobservable from positions); a joint with several
    children -- the root included, whose rotation is the pelvis frame given by
    the spine and the hip line, i.e. the body's facing and tilt -- gets the
    rigid frame through its children (see ``_branch_plan``); leaf joints get
    the identity.

    ``forward_kinematics(R, joints[..., 0, :], skeleton, offsets_from_lengths(
    bone_lengths(joints, skeleton), skeleton))`` reproduces ``joints`` exactly
    when the joints come from rigid bones along the rest directions.
    """
    _check_joints(joints, skeleton)
    J = skeleton.num_joints
    dtype, device = joints.dtype, joints.device
    rest = _normalize(skeleton.offsets_tensor(dtype, device))
    eye = torch.eye(3, dtype=dtype, device=device).expand(joints.shape[:-2] + (3, 3))
    glob: list[torch.Tensor | None] = [None] * J
    local: list[torch.Tensor | None] = [None] * J
    plan = _branch_plan(skeleton)
    for j in range(J):
        parent_glob = eye if j == 0 else glob[skeleton.parents[j]]
        children, primary, secondary = plan[j]
        if not children:
            loc = eye
        elif primary is None:
            c = children[0]
            v = joints[..., c, :] - joints[..., j, :]
            v_local = (parent_glob.transpose(-1, -2) @ v[..., None])[..., 0]
            loc = matrix_between(rest[c].expand_as(v_local), v_local)
        else:
            def obs(c):
                return _normalize(joints[..., c, :] - joints[..., j, :])

            a, b = secondary
            sec_obs = obs(a) if b is None else obs(a) - obs(b)
            sec_rest = rest[a] if b is None else rest[a] - rest[b]
            f_obs = parent_glob.transpose(-1, -2) @ _frame(obs(primary), sec_obs)
            f_rest = _frame(rest[primary], sec_rest)
            loc = f_obs @ f_rest.transpose(-1, -2)
        local[j] = loc
        glob[j] = parent_glob @ loc
    return torch.stack(local, dim=-3)


def chain_bone_rotations(joints: torch.Tensor, skeleton: Skeleton, root_yaw: torch.Tensor) -> torch.Tensor:
    """HumanML3D's per-bone rotations for joints ``1..J-1``: ``[..., J-1, 3, 3]``, as its
    ``inverse_kinematics_np`` computes them (the feature encoder's rotation channels).

    Bone ``p -> c`` gets ``inv(F) @ arc(rest_c, bone_c)``: the world shortest arc from its
    rest direction (``Skeleton.ik_directions``) to the observed bone, seen from ``F``: the
    root rotation ``rotation_about_y(root_yaw)`` for the first bone of each of
    ``skeleton.chains`` (HumanML3D's arm chains start again from the root, not from the
    spine), the previous bone's world arc otherwise. ``root_yaw`` is ``[...]`` radians.
    Every bone at once.
    """
    _check_joints(joints, skeleton)
    if root_yaw.shape != joints.shape[:-2]:
        raise ValueError(f"root_yaw: expected shape {tuple(joints.shape[:-2])}, got {tuple(root_yaw.shape)}")
    _check_chains(skeleton)
    half = root_yaw.to(joints.dtype) / 2
    q = _mf.chain_rotations(joints, feature_skeleton(skeleton), torch.stack((torch.cos(half), torch.sin(half)), -1))
    return quat_to_matrix(q)


@functools.lru_cache(maxsize=None)
def _check_chains(skeleton: Skeleton) -> None:
    """Every chain follows parent links from a joint an earlier chain reached, and every
    joint is on a chain: then walking the chains is walking the tree by parents."""
    reached = {0}
    for chain in skeleton.chains:
        if chain[0] not in reached:
            raise ValueError(
                f"skeleton {skeleton.name!r}: chain {chain} starts at joint {chain[0]} before any chain reaches it"
            )
        for p, c in zip(chain[:-1], chain[1:]):
            if skeleton.parents[c] != p:
                raise ValueError(f"skeleton {skeleton.name!r}: chain {chain} has {p}->{c}, not a bone")
            reached.add(c)
    missing = [j for j in range(1, skeleton.num_joints) if j not in reached]
    if missing:
        raise ValueError(f"skeleton {skeleton.name!r}: joints {missing} are on no chain")


def bone_lengths(joints: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Per-bone lengths ``[..., J]`` (root: 0), averaged over the frame axis ``-3``
    when ``joints`` is ``[..., T, J, 3]`` with ``T`` frames."""
    _check_joints(joints, skeleton)
    par = torch.tensor([max(p, 0) for p in skeleton.parents], device=joints.device)
    lengths = (joints - joints[..., par, :]).norm(dim=-1)
    return lengths.mean(dim=-2) if joints.dim() >= 3 else lengths


def offsets_from_lengths(lengths: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Bone offsets ``[..., J, 3]``: rest directions scaled to ``lengths [..., J]``."""
    J = skeleton.num_joints
    if lengths.shape[-1:] != (J,):
        raise ValueError(f"lengths: expected shape [..., {J}], got {tuple(lengths.shape)}")
    rest = _normalize(skeleton.offsets_tensor(lengths.dtype, lengths.device))
    return rest * lengths[..., None]
