import math

import pytest
import torch

from vmdm.motion.kinematics import (
    axis_angle_to_matrix,
    bone_lengths,
    chain_bone_rotations,
    inverse_kinematics,
    matrix_between,
    matrix_to_axis_angle,
    matrix_to_quat,
    matrix_to_rot6d,
    offsets_from_lengths,
    quat_inv,
    quat_mul,
    quat_rotate,
    quat_to_matrix,
    rot6d_to_matrix,
    rotation_about_y,
)
from vmdm.motion.skeleton import DETECTOR16, KIT21, SMPL22, forward_kinematics


def random_rotations(*shape, dtype=torch.float64, scale=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(torch.randn(*shape, 3, generator=g, dtype=dtype) * scale)


def test_quaternion_matrix_round_trip_including_half_turns():
    R = random_rotations(500)
    # Half turns are where naive conversions fail.
    axes = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    R = torch.cat([R, axis_angle_to_matrix(axes * math.pi)])
    q = matrix_to_quat(R)
    assert torch.allclose(q.norm(dim=-1), torch.ones(550, dtype=torch.float64))
    assert (q[:, 0] >= 0).all()
    assert torch.allclose(quat_to_matrix(q), R, atol=1e-10)


def test_quaternion_algebra_matches_matrices():
    A, B = random_rotations(200, seed=1), random_rotations(200, seed=2)
    qa, qb = matrix_to_quat(A), matrix_to_quat(B)
    assert torch.allclose(quat_to_matrix(quat_mul(qa, qb)), A @ B, atol=1e-10)
    assert torch.allclose(quat_to_matrix(quat_inv(qa)), A.transpose(-1, -2), atol=1e-10)
    v = torch.randn(200, 3, dtype=torch.float64)
    assert torch.allclose(quat_rotate(qa, v), (A @ v[..., None])[..., 0], atol=1e-10)
    # Broadcasting one quaternion over many vectors.
    assert torch.allclose(quat_rotate(qa[:1], v), (A[:1] @ v[..., None])[..., 0], atol=1e-10)


def test_rot6d_is_first_two_columns_and_round_trips():
    R = random_rotations(4, 7)
    d6 = matrix_to_rot6d(R)
    assert d6.shape == (4, 7, 6)
    assert torch.equal(d6[..., :3], R[..., :, 0]) and torch.equal(d6[..., 3:], R[..., :, 1])
    assert torch.allclose(rot6d_to_matrix(d6), R, atol=1e-12)
    # Unnormalised input still gives a proper rotation.
    M = rot6d_to_matrix(d6 * 3.0 + 0.01)
    assert torch.allclose(M @ M.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(M), atol=1e-10)
    assert torch.allclose(torch.linalg.det(M), torch.ones(4, 7, dtype=torch.float64))


def test_axis_angle_round_trip_and_small_angles():
    # Angles below pi have a unique axis-angle.
    aa = torch.nn.functional.normalize(torch.randn(300, 3, dtype=torch.float64), dim=-1)
    aa = aa * torch.rand(300, 1, dtype=torch.float64) * 3.1
    assert torch.allclose(matrix_to_axis_angle(axis_angle_to_matrix(aa)), aa, atol=1e-8)
    tiny = torch.tensor([[1e-9, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    R = axis_angle_to_matrix(tiny)
    R.sum().backward()
    assert torch.isfinite(tiny.grad).all()


def test_rotation_about_y_convention():
    R = rotation_about_y(torch.tensor([0.0, math.pi / 2, 0.3]))
    z = torch.tensor([0.0, 0.0, 1.0])
    out = R @ z
    assert torch.allclose(out[1], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(out[2], torch.tensor([math.sin(0.3), 0.0, math.cos(0.3)]), atol=1e-6)


def test_matrix_between_including_opposite_directions():
    u = torch.randn(100, 3, dtype=torch.float64)
    v = torch.randn(100, 3, dtype=torch.float64)
    for target in (v, -u):
        R = matrix_between(u, target)
        got = (R @ torch.nn.functional.normalize(u, dim=-1)[..., None])[..., 0]
        assert torch.allclose(got, torch.nn.functional.normalize(target, dim=-1), atol=1e-6)
        assert torch.allclose(torch.linalg.det(R), torch.ones(100, dtype=torch.float64))


def test_float32_and_bad_shapes():
    R = random_rotations(3, dtype=torch.float32)
    assert matrix_to_quat(R).dtype == torch.float32
    with pytest.raises(ValueError, match=r"q: expected shape \[..., 4\]"):
        quat_to_matrix(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="floating-point"):
        matrix_to_rot6d(torch.zeros(2, 3, 3, dtype=torch.long))


def _scaled_motion(skeleton, B=3, T=20, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    J = skeleton.num_joints
    rot = axis_angle_to_matrix(torch.randn(B, T, J, 3, generator=g, dtype=dtype) * 0.7)
    root = torch.randn(B, T, 3, generator=g, dtype=dtype)
    # Per-clip, per-bone lengths (same rest directions).
    lengths = skeleton.offsets_tensor(dtype).norm(dim=-1) * (0.8 + 0.4 * torch.rand(B, 1, J, generator=g, dtype=dtype))
    joints = forward_kinematics(rot, root, skeleton, offsets_from_lengths(lengths, skeleton))
    return joints, root


@pytest.mark.parametrize("skeleton", [SMPL22, KIT21, DETECTOR16], ids=lambda s: s.name)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_ik_then_fk_reproduces_joints(skeleton, dtype, tol):
    joints, root = _scaled_motion(skeleton, dtype=dtype)
    R = inverse_kinematics(joints, skeleton)
    assert R.shape == joints.shape[:-1] + (3, 3)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=dtype).expand_as(R), atol=10 * tol)
    offsets = offsets_from_lengths(bone_lengths(joints, skeleton), skeleton)[:, None]
    rebuilt = forward_kinematics(R, root, skeleton, offsets)
    assert (rebuilt - joints).abs().max() < tol


def test_ik_leaf_joints_are_identity_and_errors():
    joints, _ = _scaled_motion(SMPL22, B=1, T=4)
    R = inverse_kinematics(joints, SMPL22)
    for leaf in (10, 11, 15, 20, 21):
        assert torch.allclose(R[..., leaf, :, :], torch.eye(3, dtype=torch.float64).expand(1, 4, 3, 3))
    with pytest.raises(ValueError, match=r"joints: expected shape \[..., 22, 3\]"):
        inverse_kinematics(torch.zeros(4, 21, 3), SMPL22)


@pytest.mark.parametrize("skeleton", [SMPL22, KIT21, DETECTOR16], ids=lambda s: s.name)
def test_chain_bone_rotations_follow_humanml3d_chains(skeleton):
    """HumanML3D's chain IK: composing a bone's rotation with its frame (the root rotation
    for a chain's first bone, else the previous bone's world rotation) rebuilds the bone's
    direction, including a bone pointing exactly against its rest direction."""
    from vmdm.motion.skeleton import feature_skeleton

    J = skeleton.num_joints
    joints, _ = _scaled_motion(skeleton, B=2, T=5)
    fs = feature_skeleton(skeleton)
    rest = torch.nn.functional.normalize(torch.tensor(fs.offsets, dtype=torch.float64), dim=-1)
    c0 = skeleton.chains[0][1]
    joints[0, 0, c0] = joints[0, 0, skeleton.parents[c0]] - 0.3 * rest[c0]
    yaw = torch.rand(2, 5, dtype=torch.float64)
    a = chain_bone_rotations(joints, skeleton, yaw)
    assert a.shape == (2, 5, J - 1, 3, 3)
    root = rotation_about_y(yaw)
    for chain in skeleton.chains:
        f = root
        for p, c in zip(chain[:-1], chain[1:]):
            f = f @ a[..., c - 1, :, :]
            bone = torch.nn.functional.normalize(joints[..., c, :] - joints[..., p, :], dim=-1)
            assert torch.allclose((f @ rest[c][:, None])[..., 0], bone, atol=1e-9)
