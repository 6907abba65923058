"""BVH export: round trips through the writer and the reader, Euler conventions, and
the reader checked against a hand-written file (so the two cannot share a mistake)."""

import math

import numpy as np
import pytest
import torch

from vmdm.motion.kinematics import axis_angle_to_matrix, offsets_from_lengths
from vmdm.motion.skeleton import SMPL22, forward_kinematics
from vmdm.export.bvh import (
    EULER_ORDERS,
    BVHFormatError,
    bvh_reconstruction_error,
    euler_to_matrix,
    matrix_to_euler,
    motion_to_bvh,
    read_bvh,
    write_bvh,
)


def _rigid_motion(frames=25, seed=0, rotation_scale=0.7, root_step=0.05):
    """Random local rotations on a skeleton with non-default bone lengths, through the
    project's FK: a motion a rigid BVH skeleton can represent exactly."""
    g = torch.Generator().manual_seed(seed)
    R = axis_angle_to_matrix(torch.randn(frames, 22, 3, generator=g, dtype=torch.float64) * rotation_scale)
    lengths = SMPL22.bone_lengths().double() * (0.9 + 0.3 * torch.rand(22, generator=g, dtype=torch.float64))
    root = torch.cumsum(torch.randn(frames, 3, generator=g, dtype=torch.float64) * root_step, 0) + torch.tensor(
        [0.0, 0.9, 0.0], dtype=torch.float64)
    return forward_kinematics(R, root, SMPL22, offsets_from_lengths(lengths, SMPL22)).numpy()


@pytest.mark.parametrize("order", EULER_ORDERS)
def test_round_trip_reproduces_the_joints(tmp_path, order):
    joints = _rigid_motion()
    path = write_bvh(tmp_path / "m.bvh", joints, order=order)
    bvh = read_bvh(path)
    assert bvh.num_joints == 22 and bvh.num_frames == 25
    assert bvh.frame_time == pytest.approx(0.05)
    assert sorted(bvh.names) == sorted(SMPL22.joint_names)
    assert bvh.channels[0] == ["Xposition", "Yposition", "Zposition"] + [f"{a}rotation" for a in order]
    # Parents survive the depth-first reordering.
    for j, name in enumerate(bvh.names):
        p = bvh.parents[j]
        expected = SMPL22.parents[SMPL22.joint_names.index(name)]
        assert (p < 0 and expected < 0) or bvh.names[p] == SMPL22.joint_names[expected]
    err = bvh_reconstruction_error(bvh, joints)
    # Six decimals in the file: well under the 1 cm requirement.
    assert err.max() < 1e-4


def test_round_trip_of_a_corpus_motion(tmp_path):
    from vmdm.data.build.synth import generate_clip

    joints, _, _ = generate_clip("jump", np.random.default_rng(1))
    bvh = read_bvh(write_bvh(tmp_path / "j.bvh", joints, fps=30.0))
    assert bvh.num_frames == joints.shape[0]
    assert bvh.frame_time == pytest.approx(1 / 30, abs=1e-6)
    assert bvh_reconstruction_error(bvh, joints).max() < 0.01


def test_non_rigid_motion_is_approximated_with_mean_bone_lengths(tmp_path):
    # Generated motions stretch bones a little; the BVH keeps one length per bone (the
    # mean), so the error is about the stretch, not zero and not large.
    joints = _rigid_motion(frames=30, seed=2)
    g = np.random.default_rng(0)
    stretched = joints + g.normal(0, 0.005, joints.shape)
    err = bvh_reconstruction_error(read_bvh(write_bvh(tmp_path / "s.bvh", stretched)), stretched)
    assert 1e-3 < err.mean() < 0.03


@pytest.mark.parametrize("order", EULER_ORDERS)
def test_euler_round_trip_including_gimbal_lock(order):
    g = np.random.default_rng(0)
    angles = g.uniform(-math.pi, math.pi, (200, 3))
    angles[:, 1] = g.uniform(-math.pi / 2, math.pi / 2, 200)
    angles[:4, 1] = [math.pi / 2, -math.pi / 2, math.pi / 2, -math.pi / 2]  # locked
    R = euler_to_matrix(angles, order)
    back = matrix_to_euler(R, order)
    assert np.abs(euler_to_matrix(back, order) - R).max() < 1e-9
    # Away from the lock the angles themselves come back.
    assert np.abs(back[4:] - angles[4:]).max() < 1e-9


def test_euler_matrix_follows_the_channel_order():
    # ZYX means Rz @ Ry @ Rx: check against explicit axis rotations.
    a, b, c = 0.3, -0.4, 1.1

    def rx(t):
        return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])

    def ry(t):
        return np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])

    def rz(t):
        return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])

    assert np.allclose(euler_to_matrix(np.array([a, b, c]), "ZYX"), rz(a) @ ry(b) @ rx(c))
    assert np.allclose(euler_to_matrix(np.array([a, b, c]), "XYZ"), rx(a) @ ry(b) @ rz(c))


def test_angles_stay_continuous_through_a_full_spin():
    # The root spins 2.5 turns about y while tilted: wrapped angles would jump by 360 deg.
    F = 100
    yaw = torch.linspace(0, 5 * math.pi, F, dtype=torch.float64)
    R = torch.eye(3, dtype=torch.float64).repeat(F, 22, 1, 1)
    tilt = axis_angle_to_matrix(torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64))
    R[:, 0] = axis_angle_to_matrix(torch.stack((0 * yaw, yaw, 0 * yaw), -1)) @ tilt
    joints = forward_kinematics(R, torch.zeros(F, 3, dtype=torch.float64), SMPL22)
    _, _, euler = motion_to_bvh(joints.numpy(), order="ZYX")
    assert np.abs(np.diff(euler, axis=0)).max() < 20.0  # degrees per frame; the spin is 9 deg/frame
    assert np.ptp(euler, axis=0).max() > 720  # the spin accumulates instead of wrapping


HAND_WRITTEN = """HIERARCHY
ROOT hip
{
  OFFSET 5.0 0.0 0.0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT knee
  {
    OFFSET 0.0 -1.0 0.0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0.0 -1.0 0.0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.05
0 1 0 0 0 0 0 0 0
2 1 0 90 0 0 0 0 90
"""


def test_reader_forward_kinematics_on_a_hand_written_file(tmp_path):
    path = tmp_path / "hand.bvh"
    path.write_text(HAND_WRITTEN)
    bvh = read_bvh(path)
    assert bvh.names == ["hip", "knee"] and bvh.parents == [-1, 0]
    pos = bvh.positions()
    # Frame 0: rest pose, the root's position channels replace its offset.
    assert np.allclose(pos[0], [[0, 1, 0], [0, 0, 0]])
    # Frame 1: root at (2, 1, 0) turned 90 deg about z: the knee bone (0, -1, 0) -> (1, 0, 0).
    assert np.allclose(pos[1], [[2, 1, 0], [3, 1, 0]])


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.replace("HIERARCHY", "HIERARCHIES"), "HIERARCHY"),
    (lambda s: s.replace("Frames: 2", "Frames: 3"), "header says 3 frames"),
    (lambda s: s.replace("2 1 0 90 0 0 0 0 90", "2 1 0 90 0 0 0 0"), "expected 9 channel values"),
    (lambda s: s.replace("CHANNELS 3 Zrotation", "CHANNELS 3 Wrotation"), "bad channel list"),
    (lambda s: s.replace("  }\n}\nMOTION", "  }\nMOTION"), "hierarchy"),
])
def test_reader_rejects_malformed_files_with_the_line(tmp_path, mutate, message):
    path = tmp_path / "bad.bvh"
    path.write_text(mutate(HAND_WRITTEN))
    with pytest.raises(BVHFormatError, match=message) as e:
        read_bvh(path)
    assert "bad.bvh:" in str(e.value)


def test_writer_rejects_bad_motions(tmp_path):
    with pytest.raises(ValueError, match="joints"):
        write_bvh(tmp_path / "x.bvh", np.zeros((5, 21, 3)))
    bad = _rigid_motion(frames=3)
    bad[1, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_bvh(tmp_path / "x.bvh", bad)
    with pytest.raises(ValueError, match="order"):
        write_bvh(tmp_path / "x.bvh", _rigid_motion(frames=3), order="YXZ")
