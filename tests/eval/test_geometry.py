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
