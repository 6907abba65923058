"""Geometric metrics on hand-made motions with known answers."""

import numpy as np
import pytest
import torch

from vmdm.motion.cameras import project
from vmdm.motion.kinematics import axis_angle_to_matrix
from vmdm.motion.skeleton import SMPL22
from vmdm.eval.geometry import (
    accel_error_per_frame,
    floor_penetration,
    foot_skating_ratio,
    geometric_metrics,
    jitter,
    mpjpe_per_frame,
    pa_mpjpe_per_frame,
    reprojection_error_per_frame,
)

TOES = (SMPL22.feet_left[-1], SMPL22.feet_right[-1])


def _standing(T: int, height: float = 1.0) -> np.ndarray:
    """Joints spread in the air, toes at y = 0.01 under the body."""
    rng = np.random.default_rng(0)
    pose = rng.uniform(-0.3, 0.3, size=(22, 3))
    pose[:, 1] = rng.uniform(0.3, height, size=22)
    pose[list(TOES), 1] = 0.01
    return np.repeat(pose[None], T, axis=0)


def test_foot_skating_sliding_foot():
    j = _standing(21)
    j[:, TOES[0], 0] += 0.05 * np.arange(21)  # left toe slides 5 cm per frame on the floor
    assert foot_skating_ratio(j)[0] == pytest.approx(1.0)


def test_foot_skating_half_clip():
    # Slides for the first 10 transitions only: the 5-frame average stays above 2.5 cm/frame
    # through transition 9 and the instantaneous speed is 0 from transition 10 on.
    j = _standing(21)
    x = np.concatenate([0.05 * np.arange(11), np.full(10, 0.5)])
    j[:, TOES[1], 2] += x
    assert foot_skating_ratio(j)[0] == pytest.approx(10 / 20)


def test_foot_skating_needs_contact_and_speed():
    still = _standing(21)
    assert foot_skating_ratio(still)[0] == 0.0
    slow = _standing(21)
    slow[:, TOES[0], 0] += 0.02 * np.arange(21)  # 2 cm/frame: under the 2.5 cm threshold
    assert foot_skating_ratio(slow)[0] == 0.0
    lifted = _standing(21)
    lifted[:, TOES[0], 1] = 0.2  # swinging foot: fast but not in contact
    lifted[:, TOES[0], 0] += 0.05 * np.arange(21)
    assert foot_skating_ratio(lifted)[0] == 0.0


def test_foot_skating_respects_lengths():
    j = np.stack([_standing(21), _standing(21)])
    j[1, :, TOES[0], 0] += 0.05 * np.arange(21)
    j[0, 10:, TOES[0], 0] += 0.05 * np.arange(11)  # past the length: must not count
    np.testing.assert_allclose(foot_skating_ratio(j, [10, 21]), [0.0, 1.0])


def test_floor_penetration_and_jitter_by_hand():
    j = _standing(10)
    assert floor_penetration(j)[0] == 0.0
    sunk = j.copy()
    sunk[..., 1] -= 0.03  # toes at -2 cm
    assert floor_penetration(sunk)[0] == pytest.approx(0.02)
    # x = c t^2 (t in frames): second difference 2c per frame^2 = 2c fps^2 m/s^2.
    acc = _standing(10)
    acc[..., 0] += 0.001 * np.arange(10)[:, None] ** 2
    assert jitter(acc, fps=20)[0] == pytest.approx(2 * 0.001 * 400)
    g = geometric_metrics(sunk)
    assert g["penetration_cm"] == pytest.approx(2.0)
    assert g["jitter"] == pytest.approx(0.0, abs=1e-9)


def test_mpjpe_known_offset():
    gt = np.random.default_rng(1).normal(size=(5, 22, 3))
    np.testing.assert_allclose(mpjpe_per_frame(gt + [0.03, 0.04, 0.0], gt), 0.05)


def test_pa_mpjpe_removes_similarity_transforms():
    rng = np.random.default_rng(2)
    gt = rng.normal(size=(4, 22, 3))
    R = axis_angle_to_matrix(torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)).numpy()
    pred = 1.7 * gt @ R.T + np.array([2.0, -1.0, 0.5])
    assert mpjpe_per_frame(pred, gt).min() > 0.5
    np.testing.assert_allclose(pa_mpjpe_per_frame(pred, gt), 0.0, atol=1e-9)
    # A mirror image is not a rotation: Procrustes must not undo it.
    mirrored = gt * [-1.0, 1.0, 1.0]
    assert pa_mpjpe_per_frame(mirrored, gt).min() > 1e-3


def test_pa_mpjpe_noise_is_at_most_mpjpe():
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(6, 22, 3))
    pred = gt + 0.05 * rng.normal(size=gt.shape)
    assert np.all(pa_mpjpe_per_frame(pred, gt) <= mpjpe_per_frame(pred, gt) + 1e-12)


def test_accel_error_by_hand():
    T = 12
    gt = np.zeros((T, 22, 3))
    gt[..., 0] = 0.1 * np.arange(T)[:, None]  # constant velocity: zero acceleration
    pred = gt.copy()
    pred[..., 1] += 0.5 * 0.004 * np.arange(T)[:, None] ** 2  # constant 4 mm/frame^2 upwards
    np.testing.assert_allclose(accel_error_per_frame(pred, gt), 0.004)
    assert accel_error_per_frame(pred, gt).shape == (T - 2,)


def test_reprojection_error_pixels():
    j = torch.tensor(_standing(3))
    cam = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 1.0], [0, 0, 1, 4.0]], dtype=torch.float64)
    K = torch.tensor([1000.0, 1000.0, 500.0, 500.0], dtype=torch.float64)
    uv, _ = project(j, cam, K)
    scores = np.ones((3, 22))
    np.testing.assert_allclose(reprojection_error_per_frame(j, uv, cam, scores, K), 0.0, atol=1e-9)
    shifted = uv.numpy() + [3.0, 4.0]
    scores[:, 0] = 0.0  # an undetected joint is ignored even when far off
    shifted[:, 0] += 500.0
    np.testing.assert_allclose(reprojection_error_per_frame(j, shifted, cam, scores, K), 5.0)


# --------------------------------------------------------------------------- lifting-protocol metrics


@pytest.fixture(scope="module")
def walk():
    from vmdm.data.build.synth import generate_clip

    joints, _, _ = generate_clip("walk", np.random.default_rng(7))
    return np.asarray(joints[:40], dtype=np.float64)


def _yaw(a: float) -> np.ndarray:
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_canonical_mpjpe_ignores_the_placement_and_heading_at_frame_0(walk):
    from vmdm.eval.geometry import canonical_mpjpe_per_frame

    moved = walk @ _yaw(1.1).T + np.array([2.0, 0.0, -3.0])
    assert mpjpe_per_frame(moved, walk).mean() > 1.0
    assert canonical_mpjpe_per_frame(moved, walk).max() < 1e-9
    # ...but not to what happens after frame 0: a drift that grows over the clip is counted.
    drift = moved + np.linspace(0, 0.3, len(walk))[:, None, None] * np.array([1.0, 0.0, 0.0])
    err = canonical_mpjpe_per_frame(drift, walk)
    assert err[0] < 1e-9 and err[-1] == pytest.approx(0.3, abs=1e-6)


def test_root_relative_mpjpe_ignores_translation_and_root_error_sees_only_it(walk):
    from vmdm.eval.geometry import root_error_per_frame, root_relative_mpjpe_per_frame

    shift = np.random.default_rng(0).normal(size=(len(walk), 1, 3))  # a different offset every frame
    assert root_relative_mpjpe_per_frame(walk + shift, walk).max() < 1e-12
    np.testing.assert_allclose(root_error_per_frame(walk + shift, walk), np.linalg.norm(shift[:, 0], axis=-1))
    bent = walk.copy()
    bent[:, 20] += np.array([0.0, 0.1, 0.0])  # the left wrist 10 cm up, the root untouched
    np.testing.assert_allclose(root_relative_mpjpe_per_frame(bent, walk), 0.1 / 22)
    assert root_error_per_frame(bent, walk).max() == 0.0


def test_body_size_of_a_scaled_clip_is_the_scale(walk):
    from vmdm.eval.geometry import body_size_ratio

    pelvis = walk[:, :1]
    for s in (0.8, 1.0, 1.25):
        scaled = pelvis + s * (walk - pelvis) + np.array([0.5, 0.0, 0.0])  # moving it changes nothing
        assert body_size_ratio(scaled, walk) == pytest.approx(s, rel=1e-12)


def test_root_depth_error_is_the_depth_along_the_camera_axis(walk):
    from vmdm.eval.lifting_eval import root_depth_error_per_frame
    from vmdm.motion.cameras import sample_camera

    E, _ = sample_camera(torch.from_numpy(walk), generator=torch.Generator().manual_seed(2))
    E = E.double().numpy()
    axis = E[2, :3]  # the camera's viewing direction in world coordinates
    np.testing.assert_allclose(root_depth_error_per_frame(walk + 0.2 * axis, walk, E), 0.2, atol=1e-9)
    sideways = np.cross(axis, [0.0, 1.0, 0.0])
    sideways /= np.linalg.norm(sideways)
    assert root_depth_error_per_frame(walk + 0.2 * sideways, walk, E).max() < 1e-9
