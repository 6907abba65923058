"""The frame-0 root-depth offset of the 2D loss (LossConfig.depth_offset): a clip displaced
along its frame-0 root ray is brought back, its 2D loss returns to the true position's, and
no gradient flows through the solve."""

import numpy as np
import pytest
import torch

import vmdm_kernels as vk
from vmdm.data.build.synth import generate_clip
from vmdm.motion.cameras import project, sample_camera
from vmdm.motion.representation import Normalizer, canonicalize, encode, feature_dim
from vmdm.motion.skeleton import SMPL22
from vmdm.training.config import LossConfig
from vmdm.training.depth_offset import root_ray, shift_along_ray, solve_root_ray_offset
from vmdm.training.objectives import Objective


@pytest.fixture(scope="module", params=["static", "moving"])
def filmed(request):
    """A synthetic walk (40 frames) filmed in pixels: joints [1, F, J, 3], camera [1, 3, 4] or
    [1, F, 3, 4], intrinsics [1, 4], exact keypoints [1, F, J, 2]."""
    joints, _, _ = generate_clip("walk", np.random.default_rng(2))
    x = torch.from_numpy(joints[:40]).double()
    E, K = sample_camera(x.float(), generator=torch.Generator().manual_seed(4))
    E, K = E.double(), K.double()
    if request.param == "moving":
        E = E.expand(40, 3, 4).clone()
        E[:, 0, 3] += torch.linspace(0, 0.4, 40, dtype=torch.float64)
    kp, _ = project(x, E, K)
    return x[None], E[None], K[None], kp[None]


@pytest.mark.parametrize("delta", [0.35, -0.25])
def test_a_clip_displaced_along_its_root_ray_is_brought_back(filmed, delta):
    X, cam, K, kp = filmed
    w = torch.ones(kp.shape[:3], dtype=torch.float64)
    u, _ = root_ray(X, cam)
    moved = shift_along_ray(X, torch.tensor([delta], dtype=torch.float64), u)
    d, u2 = solve_root_ray_offset(moved, kp, cam, w, K)
    assert abs(float(d[0]) + delta) < 1e-3  # within 1 mm
    torch.testing.assert_close(u2, u)  # the frame-0 root stays on its ray
    back = shift_along_ray(moved, d, u2)
    loss = lambda x: float(vk.reprojection_velocity_loss(x.float(), kp.float(), cam.float(), w.float(),  # noqa: E731
                                                         K.float(), reduction="none")[0][0])
    assert loss(moved) > 1e3 * max(loss(back), 1e-9)
    assert loss(back) < 1e-6


def test_with_noisy_keypoints_the_2d_loss_returns_to_the_true_positions(filmed):
    X, cam, K, kp = filmed
    g = torch.Generator().manual_seed(0)
    noisy = kp + 3.0 * torch.randn(kp.shape, generator=g, dtype=torch.float64)
    w = torch.ones(kp.shape[:3], dtype=torch.float64)
    u, _ = root_ray(X, cam)
    moved = shift_along_ray(X, torch.tensor([0.3], dtype=torch.float64), u)
    d, u = solve_root_ray_offset(moved, noisy, cam, w, K)
    loss = lambda x: float(vk.reprojection_velocity_loss(x.float(), noisy.float(), cam.float(), w.float(),  # noqa: E731
                                                         K.float(), reduction="none")[0][0])
    true, back, off = loss(X), loss(shift_along_ray(moved, d, u)), loss(moved)
    assert abs(float(d[0]) + 0.3) < 0.02
    assert back < 1.05 * true and off > 5 * true, (true, back, off)


def _batch(X, cam, K, kp):
    """A one-clip 2D training batch whose prediction is ``X``'s features: the camera moved into
    the clip's canonical frame, as the 2D-only dataset stores it."""
    canon, tf = canonicalize(X, SMPL22)
    R, t = tf.apply_camera(cam[..., :3], cam[..., 3])
    ext = torch.cat((canon, 2 * canon[:, -1:] - canon[:, -2:-1]), dim=1)
    feats = encode(ext, SMPL22).float()
    F = feats.shape[1]
    batch = {"keypoints": kp.float(), "camera": torch.cat((R, t[..., None]), -1).float(), "intrinsics": K.float(),
             "weights": torch.ones(kp.shape[:3]), "mask": torch.ones(1, F, dtype=torch.bool),
             "lengths": torch.tensor([F]), "motion": feats}
    return feats, batch


def test_the_objective_solves_the_offset_without_gradient_through_it(filmed):
    X, cam, K, kp = filmed
    u, _ = root_ray(X, cam)
    moved = shift_along_ray(X, torch.tensor([0.3], dtype=torch.float64), u)
    feats, batch = _batch(moved, cam, K, kp)
    D = feature_dim(SMPL22)
    norm = Normalizer(np.zeros(D, dtype=np.float32), np.ones(D, dtype=np.float32))
    plain = Objective("2d", LossConfig(lambda_align=0.0, depth_offset=0), SMPL22, norm)
    freed = Objective("2d", LossConfig(lambda_align=0.0, depth_offset=5), SMPL22, norm)
    pred = feats.clone().requires_grad_(True)
    terms = freed(pred, batch)
    assert abs(float(terms["root_offset"][0]) + 0.3) < 2e-3
    assert float(terms["pos2d"][0].detach()) < 1e-3 * float(plain(feats, batch)["pos2d"][0])
    assert "root_offset" not in plain(feats, batch)
    terms["loss"].sum().backward()
    # The same loss with the solved offset held constant has the same gradient: nothing
    # flows through the solve.
    ref = feats.clone().requires_grad_(True)
    joints = freed.joints(ref)
    d, ray = solve_root_ray_offset(joints, batch["keypoints"], batch["camera"], batch["weights"],
                                   batch["intrinsics"], iterations=5, z_min=0.5)
    c = freed.cfg
    pos, vel = vk.reprojection_velocity_loss(shift_along_ray(joints, d, ray), batch["keypoints"], batch["camera"],
                                             batch["weights"], batch["intrinsics"], depth_weight=c.depth_weight,
                                             depth_power=c.depth_power, z_min=c.z_min, reduction="none")
    (c.lambda_pos * pos + c.lambda_vel * vel).sum().backward()
    torch.testing.assert_close(pred.grad, ref.grad, rtol=1e-4, atol=1e-7)
    assert pred.grad.abs().sum() > 0


def test_the_offset_is_bounded_and_ignores_points_behind_the_near_plane(filmed):
    X, cam, K, kp = filmed
    w = torch.ones(kp.shape[:3], dtype=torch.float64)
    u, dist = root_ray(X, cam)
    far = shift_along_ray(X, 5 * dist, u)  # six times as far: the fit wants -5/6 of the distance
    _, far_dist = root_ray(far, cam)
    d, _ = solve_root_ray_offset(far, kp, cam, w, K, iterations=20)
    assert float(d[0]) == pytest.approx(-0.5 * float(far_dist[0]), rel=1e-6)  # the bound: half of it
    zero = solve_root_ray_offset(X, kp, cam, torch.zeros_like(w), K)[0]
    assert float(zero[0]) == 0.0  # nothing observed: no shift


def test_training_with_the_offset_logs_it(quick_data, tmp_path):
    import csv

    from vmdm.training.trainer import TrainConfig, train

    cfg = TrainConfig.of(supervision="2d", data=str(quick_data.dataset_2d), out=str(tmp_path), text_encoder="bow",
                         model="tiny", steps=3, batch_size=4, max_frames=40, warmup=1, log_every=1, ckpt_every=3,
                         progress=False, samples=0, body_scale_windows=0, depth_offset=3)
    train(cfg)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    offsets = [float(r["root_offset"]) for r in rows]
    assert all(np.isfinite(offsets)) and any(o != 0 for o in offsets)
