"""The paper's claim behind the depth weights: for small 3D errors, the
``point``-mode depth-weighted 2D reprojection loss (p = 2) equals the lateral
3D squared error in expectation; unweighted pixel errors do not."""

import math

import pytest
import torch

import vmdm_kernels as vk

from .problems import look_at

BACKENDS = ["reference"] + (["cpp"] if vk.backends()["cpp"].available else [])


def _scene(n_views=4096, T=4, J=22, sigma=(0.01, 0.02, 0.015), distance=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    body = torch.randn(1, 1, J, 3, generator=g, dtype=f64) * torch.tensor([0.2, 0.45, 0.15], dtype=f64)
    body[..., 1] += 0.9
    joints = body.expand(n_views, T, J, 3)
    az = torch.rand(n_views, generator=g, dtype=f64) * 2 * math.pi  # uniform azimuth around the person
    eye = torch.stack((distance * torch.sin(az), torch.full_like(az, 0.9), distance * torch.cos(az)), -1)
    camera = look_at(eye, torch.tensor([0.0, 0.9, 0.0], dtype=f64).expand(n_views, 3))
    intrinsics = torch.tensor([[1000.0, 1000.0, 500.0, 500.0]], dtype=f64).expand(n_views, 4)
    # Anisotropic world-frame errors: averaging over azimuth is what makes the claim hold.
    err = torch.randn(n_views, T, J, 3, generator=g, dtype=f64) * torch.tensor(sigma, dtype=f64)
    keypoints = vk.project(joints, camera, intrinsics)[0]
    return joints + err, keypoints, camera, intrinsics, err


@pytest.mark.parametrize("backend", BACKENDS)
def test_point_weighted_2d_loss_matches_lateral_3d_error(backend):
    pred, keypoints, camera, intrinsics, err = _scene()
    loss_2d = vk.reprojection_loss(pred, keypoints, camera, None, intrinsics, depth_weight="point", depth_power=2.0,
                                   z_min=0.1, reduction="mean", backend=backend)
    err_cam = (camera[:, None, None, :, :3] @ err[..., None])[..., 0]
    lateral = (err_cam[..., :2] ** 2).sum(-1).mean()
    ratio = (loss_2d / lateral).item()
    assert abs(ratio - 1) < 0.02, f"E[point-weighted 2D loss] / E[lateral 3D error] = {ratio:.4f}"

    # Without depth weighting the 2D loss is in pixels^2: off by about f^2 / z^2.
    loss_px = vk.reprojection_loss(pred, keypoints, camera, None, intrinsics, depth_weight="none", z_min=0.1,
                                   backend=backend)
    assert abs((loss_px / lateral).item() - 1) > 100


@pytest.mark.parametrize("backend", BACKENDS)
def test_isotropic_errors_relate_to_full_3d_mse(backend):
    """With isotropic errors the lateral part is 2/3 of the full 3D squared error."""
    pred, keypoints, camera, intrinsics, err = _scene(sigma=(0.02, 0.02, 0.02), seed=1)
    loss_2d = vk.reprojection_loss(pred, keypoints, camera, None, intrinsics, depth_weight="point", z_min=0.1,
                                   backend=backend)
    mse_3d = (err**2).sum(-1).mean()
    ratio = (1.5 * loss_2d / mse_3d).item()
    assert abs(ratio - 1) < 0.02, f"1.5 x E[2D loss] / E[3D squared error] = {ratio:.4f}"
