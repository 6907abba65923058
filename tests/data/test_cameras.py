import math

import pytest
import torch

from vmdm.motion.cameras import (
    CameraConfig,
    DetectorNoiseConfig,
    camera_center,
    compose_rigid,
    detector_noise,
    invert_extrinsic,
    look_at,
    make_intrinsics,
    pixels_to_normalized,
    project,
    sample_camera,
    transform_points,
)
from vmdm.motion.skeleton import SMPL22


def _clip(T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    rest = SMPL22.offsets_tensor()
    # Rest-pose-ish body standing with the pelvis at 0.9 m, walking along +x.
    pos = torch.zeros(22, 3)
    for j in range(1, 22):
        pos[j] = pos[SMPL22.parents[j]] + rest[j]
    pos[:, 1] += 0.95
    t = torch.arange(T, dtype=torch.float32)[:, None, None]
    walk = torch.tensor([0.05, 0.0, 0.0]) * t
    return pos[None] + walk + 0.01 * torch.randn(T, 22, 3, generator=g)


def test_look_at_axes_follow_opencv_convention():
    # Camera on -z looking along +z, y up in the world: image right is world -x, image down is world -y.
    E = look_at(torch.tensor([0.0, 1.0, -3.0]), torch.tensor([0.0, 0.0, 1.0]))
    R = E[:, :3]
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    assert torch.linalg.det(R) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(R[2], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(R[1], torch.tensor([0.0, -1.0, 0.0]))
    assert torch.allclose(R[0], torch.tensor([-1.0, 0.0, 0.0]))
    # A point above the camera's axis appears in the upper half of the image (v < cy).
    K = make_intrinsics((640, 480), focal_px=500.0)
    uv, depth = project(torch.tensor([[0.0, 2.0, 0.0]]), E, K)
    assert depth.item() == pytest.approx(3.0)
    assert uv[0, 1] < 240 and uv[0, 0] == pytest.approx(320.0)
    assert torch.allclose(camera_center(E), torch.tensor([0.0, 1.0, -3.0]), atol=1e-6)


def test_sample_camera_distance_elevation_and_aim():
    joints = _clip()
    g = torch.Generator().manual_seed(3)
    cfg = CameraConfig(distance=2.5)
    for _ in range(20):
        E, K = sample_camera(joints, cfg, generator=g)
        assert E.shape == (3, 4) and K.shape == (4,)
        _, depth = project(joints, E)
        assert depth.min().item() == pytest.approx(2.5, abs=1e-4)
        d = E[2, :3]  # optical axis in world coordinates
        el = math.degrees(math.asin(d[1].item()))
        assert -22.5 - 1e-4 <= el <= 7.5 + 1e-4
        # The axis passes through the clip centre at the mean height.
        centre = joints.reshape(-1, 3).mean(0)
        cam_centre = transform_points(centre[None], E)[0]
        assert cam_centre[:2].abs().max().item() < 1e-4


def test_sample_camera_azimuth_covers_full_circle():
    joints = _clip()
    g = torch.Generator().manual_seed(0)
    az = []
    for _ in range(200):
        E, _ = sample_camera(joints, generator=g)
        d = E[2, :3]
        az.append(math.atan2(d[0].item(), d[2].item()) % (2 * math.pi))
    hist = torch.histc(torch.tensor(az), bins=4, min=0, max=2 * math.pi)
    assert (hist > 25).all(), hist


def test_per_frame_cameras_pan_slowly_and_keep_distance():
    joints = _clip(T=60)
    cfg = CameraConfig(per_frame=True, pan_deg_per_s=10.0, fps=20.0)
    E, _ = sample_camera(joints, cfg, generator=torch.Generator().manual_seed(1))
    assert E.shape == (60, 3, 4)
    axes = E[:, 2, :3]
    step = torch.rad2deg(torch.acos((axes[1:] * axes[:-1]).sum(-1).clamp(-1, 1)))
    # Horizontal rate 10 deg/s at 20 fps, reduced by cos(elevation).
    assert step.max().item() <= 0.5 + 1e-3 and step.min().item() > 0.4
    _, depth = project(joints, E)  # per-frame [T, 3, 4] against [T, J, 3]
    assert depth.min(dim=-1).values.min().item() == pytest.approx(2.5, abs=1e-3)


def test_project_broadcasts_static_and_per_frame_cameras():
    joints = torch.stack([_clip(seed=0), _clip(seed=1)])  # [2, T, J, 3]
    g = torch.Generator().manual_seed(0)
    E = torch.stack([sample_camera(j, generator=g)[0] for j in joints])  # [2, 3, 4]
    K = make_intrinsics((1000, 1000), focal_px=1000.0).expand(2, 4)
    uv, depth = project(joints, E, K)
    uv_frames, _ = project(joints, E[:, None].expand(-1, joints.shape[1], -1, -1), K)
    assert uv.shape == (2, 40, 22, 2) and depth.shape == (2, 40, 22)
    assert torch.allclose(uv, uv_frames)
    for b in range(2):
        Xc = joints[b] @ E[b, :, :3].T + E[b, :, 3]
        ref = Xc[..., :2] / Xc[..., 2:] * 1000.0 + 500.0
        assert torch.allclose(uv[b], ref, atol=1e-3)
    assert torch.allclose(pixels_to_normalized(uv, K), project(joints, E)[0], atol=1e-6)
    with pytest.raises(ValueError, match="extrinsic"):
        project(joints, torch.zeros(2, 3, 3))


def test_rigid_helpers_are_consistent():
    E = look_at(torch.tensor([1.0, 2.0, -3.0]), torch.tensor([0.3, -0.2, 1.0]))
    X = torch.randn(5, 3)
    back = transform_points(transform_points(X, E), invert_extrinsic(E))
    assert torch.allclose(back, X, atol=1e-5)
    ident = compose_rigid(E, invert_extrinsic(E))
    assert torch.allclose(ident, torch.cat([torch.eye(3), torch.zeros(3, 1)], 1), atol=1e-5)


def test_project_is_differentiable():
    joints = _clip().requires_grad_(True)
    E, K = sample_camera(joints.detach(), generator=torch.Generator().manual_seed(0))
    uv, _ = project(joints, E, K)
    uv.sum().backward()
    assert torch.isfinite(joints.grad).all() and joints.grad.abs().sum() > 0


def test_detector_noise_statistics():
    joints = _clip(T=200)
    E, K = sample_camera(joints, generator=torch.Generator().manual_seed(0))
    uv, depth = project(joints, E, K)
    cfg = DetectorNoiseConfig(sigma_px=3.0, outlier_prob=0.01, drop_prob=0.005)
    noisy, scores = detector_noise(uv, depth, cfg, generator=torch.Generator().manual_seed(1))
    assert noisy.shape == uv.shape and scores.shape == uv.shape[:2]
    assert torch.isfinite(noisy).all()
    assert (scores >= 0).all() and (scores <= 1).all()
    err = (noisy - uv).norm(dim=-1)
    valid = scores > 0.6
    # Typical error is a few pixels; outliers exist but are rare.
    assert 2.0 < err[valid].median().item() < 8.0
    assert 0.002 < (err > 30).float().mean().item() < 0.05
    dropped = (scores == 0).float().mean().item()
    assert 0.005 < dropped < 0.15
    # Low-confidence joints are noisier than high-confidence ones.
    lo = (scores > 0) & (scores < 0.6)
    non_out = err < 30
    assert err[lo & non_out].mean() > err[valid & non_out].mean()
    # Deterministic given the generator.
    again, s2 = detector_noise(uv, depth, cfg, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, noisy) and torch.equal(s2, scores)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="joints must be"):
        sample_camera(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="distance"):
        CameraConfig(distance=-1)
    with pytest.raises(ValueError, match="exactly one"):
        make_intrinsics((10, 10))
    with pytest.raises(ValueError, match="depth"):
        detector_noise(torch.zeros(3, 22, 2), torch.zeros(3, 21))
