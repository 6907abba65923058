"""Inputs at the edges of the domain: each has a defined result on every backend."""

import math

import pytest
import torch

import vmdm_kernels as vk

from .problems import make_problem
from .runners import assert_all_close, run_ray_targets, run_reproj_vel, run_velocity3d

BACKENDS = ["reference"] + (["cpp"] if vk.backends()["cpp"].available else [])
MODES = ["none", "sample", "point"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("depth_weight", MODES)
def test_all_zero_weights_give_zero_loss_and_gradient(backend, depth_weight):
    p = make_problem(2, 5, 4, seed=1)
    p["weights"] = torch.zeros_like(p["weights"])
    outs = run_reproj_vel(backend, p, depth_weight)
    for t in outs:
        assert torch.isfinite(t).all() and (t == 0).all()
    v3 = run_velocity3d(backend, p)
    for t in v3:
        assert torch.isfinite(t).all() and (t == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_sample_without_weight_does_not_affect_the_others(backend):
    p = make_problem(3, 5, 4, seed=2)
    p["weights"][1] = 0
    pos, vel, gj, *_ = run_reproj_vel(backend, p, "sample")
    assert pos[1] == 0 and vel[1] == 0 and (gj[1] == 0).all()
    assert (pos[[0, 2]] > 0).all() and (gj[0] != 0).any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("depth_weight", MODES)
@pytest.mark.parametrize("depth", [0.0, 0.5, -2.0, 0.2])
def test_points_at_or_behind_the_camera_get_no_gradient(backend, depth_weight, depth):
    p = make_problem(2, 6, 5, seed=3)
    p["weights"] = p["weights"].clamp_min(0.1)
    # Move joint 2 of sample 0, frame 3 to the requested camera depth along the optical axis.
    R, t = p["camera"][0, :, :3], p["camera"][0, :, 3]
    p["joints"][0, 3, 2] = R.T @ (torch.tensor([0.1, 0.0, depth], dtype=torch.float64) - t)
    pos, vel, gj, gk, gc, gi = run_reproj_vel(backend, p, depth_weight)
    for x in (pos, vel, gj, gk, gc, gi):
        assert torch.isfinite(x).all()
    assert (gj[0, 3, 2] == 0).all() and (gk[0, 3, 2] == 0).all()
    assert (gj[0, 2, 2] != 0).any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("depth_weight", MODES)
def test_nan_at_ignored_points_is_ignored(backend, depth_weight):
    p = make_problem(2, 6, 5, seed=4)
    p["weights"][0, 2, 1] = 0
    p["weights"][1, 0, :] = 0
    clean = run_reproj_vel(backend, p, depth_weight)
    p["keypoints"][0, 2, 1] = float("nan")
    p["joints"][1, 0, :] = float("nan")
    dirty = run_reproj_vel(backend, p, depth_weight)
    assert_all_close(dirty, clean, 0.0, floor=0.0)
    for x in dirty:
        assert torch.isfinite(x).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_at_weighted_points_propagates(backend):
    p = make_problem(2, 6, 5, seed=5)
    p["weights"][0, 2, 1] = 1.0
    p["joints"][0, 2, 1, 0] = float("nan")
    pos, vel = vk.reprojection_velocity_loss(p["joints"], p["keypoints"], p["camera"], p["weights"],
                                             p["intrinsics"], reduction="none", backend=backend)
    assert math.isnan(pos[0].item()) and math.isfinite(pos[1].item())
    p["joints"][0, 2, 1, 0] = 0.0
    p["keypoints"][0, 2, 1, 1] = float("inf")
    pos = vk.reprojection_loss(p["joints"], p["keypoints"], p["camera"], p["weights"], p["intrinsics"],
                               reduction="none", backend=backend)
    assert not math.isfinite(pos[0].item()) and math.isfinite(pos[1].item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_frame_velocity_is_zero(backend):
    p = make_problem(2, 1, 4, seed=6)
    pos, vel, gj, *_ = run_reproj_vel(backend, p, "sample", which="both")
    assert (vel == 0).all() and (pos > 0).all()
    vel_only = run_reproj_vel(backend, p, "sample", which="vel")
    assert all((x == 0).all() for x in vel_only)
    assert all((x == 0).all() for x in run_velocity3d(backend, p))


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_keypoints_give_zero_loss(backend):
    p = make_problem(2, 5, 4, seed=7)
    p["keypoints"] = vk.project(p["joints"], p["camera"], p["intrinsics"])[0]
    for x in run_reproj_vel(backend, p, "sample"):
        assert x.abs().max() < 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
def test_ray_targets_lie_on_the_ray_and_project_to_the_keypoints(backend):
    p = make_problem(2, 4, 6, seed=8)
    P = run_ray_targets(backend, p)[0]
    uv = vk.project(P, p["camera"], p["intrinsics"])[0]
    torch.testing.assert_close(uv, p["keypoints"], rtol=0, atol=1e-8)
    # Closest point: the offset from the joint is perpendicular to the ray.
    on_ray_again = vk.ray_targets(P, p["keypoints"], p["camera"], p["intrinsics"], backend=backend)
    torch.testing.assert_close(on_ray_again, P, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    p = make_problem(1, 3, 2, seed=9)
    e = {k: (v[:0] if v is not None else None) for k, v in p.items()}
    pos, vel = vk.reprojection_velocity_loss(e["joints"], e["keypoints"], e["camera"], e["weights"], e["intrinsics"],
                                             reduction="none", backend=backend)
    assert pos.shape == (0,) and vel.shape == (0,)
    assert vk.ray_targets(e["joints"], e["keypoints"], e["camera"], e["intrinsics"], backend=backend).shape == (0, 3, 2, 3)
