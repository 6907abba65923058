"""Temporal smoothing of the alignment targets' ray corrections."""

import pytest
import torch

import vmdm_kernels as vk
from vmdm.data.dataset import MotionDataset, collate
from vmdm.training.objectives import LossConfig, Objective
from vmdm.motion.smoothing import masked_gaussian_smooth, smooth_corrections


def test_smoothing_keeps_constants_and_ramps_and_fills_gaps():
    B, T, J = 2, 30, 3
    t = torch.arange(T, dtype=torch.float64)
    ramp = (0.1 * t)[None, :, None, None].expand(B, T, J, 2).clone()
    const = torch.full((B, T, J, 1), 0.7, dtype=torch.float64)
    x = torch.cat([const, ramp], dim=-1)
    valid = torch.ones(B, T, J, dtype=torch.bool)
    valid[0, 10:13, 1] = False  # a gap: filled from its neighbours, not pulled to zero
    valid[1, 25:] = False  # padding at the end
    x_holes = torch.where(valid[..., None], x, torch.full_like(x, 123.0))
    y = masked_gaussian_smooth(x_holes, valid, sigma=2.0)
    torch.testing.assert_close(y[..., 0], torch.full_like(y[..., 0], 0.7))
    # A linear ramp is preserved where the symmetric window is complete (and valid).
    torch.testing.assert_close(y[0, 6:24, 0, 1:], x[0, 6:24, 0, 1:])
    torch.testing.assert_close(y[0, 11, 1, 1:], x[0, 11, 1, 1:])
    assert torch.isfinite(y).all()


def test_smoothing_argument_checks():
    x = torch.zeros(1, 5, 2, 3)
    with pytest.raises(ValueError, match="sigma: expected > 0"):
        masked_gaussian_smooth(x, torch.ones(1, 5, 2, dtype=torch.bool), 0.0)
    with pytest.raises(ValueError, match=r"valid: expected shape \[1, 5, 2\], got \[1, 5\]"):
        masked_gaussian_smooth(x, torch.ones(1, 5, dtype=torch.bool), 1.0)
    with pytest.raises(ValueError, match="joints, targets: expected equal shapes"):
        smooth_corrections(x, torch.zeros(1, 5, 2, 2), torch.ones(1, 5, 2, dtype=torch.bool), 1.0)
    with pytest.raises(ValueError, match=r"sigma, outlier: expected >= 0, got 1.0 and -1.0"):
        smooth_corrections(x, x, torch.ones(1, 5, 2, dtype=torch.bool), 1.0, outlier=-1.0)
    with pytest.raises(ValueError, match=r"sigma, outlier: expected >= 0, got -2.0 and 0.0"):
        smooth_corrections(x, x, torch.ones(1, 5, 2, dtype=torch.bool), -2.0)


def test_corrections_lose_white_noise_and_outliers_but_keep_a_slow_offset():
    g = torch.Generator().manual_seed(0)
    B, T, J = 4, 120, 5
    joints = torch.randn(B, T, J, 3, generator=g, dtype=torch.float64)
    offset = 0.05 * torch.sin(torch.arange(T, dtype=torch.float64) / 15.0)[None, :, None, None]
    noise = 0.01 * torch.randn(B, T, J, 3, generator=g, dtype=torch.float64)
    targets = joints + offset + noise
    valid = torch.ones(B, T, J, dtype=torch.bool)
    # sigma = 0: the targets where valid, the joints elsewhere, exactly.
    valid0 = valid.clone()
    valid0[:, ::7] = False
    torch.testing.assert_close(smooth_corrections(joints, targets, valid0, 0.0),
                               torch.where(valid0[..., None], targets, joints), rtol=0, atol=0)
    err = lambda out: (out - joints - offset).pow(2).mean().sqrt()  # noqa: E731
    assert err(smooth_corrections(joints, targets, valid, 2.0)) < 0.4 * err(targets)
    spiked = targets.clone()
    spiked[:, 60, 2] += 0.3  # a gross detector outlier
    plain = smooth_corrections(joints, spiked, valid, 2.0)
    gated = smooth_corrections(joints, spiked, valid, 2.0, outlier=0.05)
    near = slice(55, 66)
    assert (gated - joints - offset)[:, near, 2].abs().max() < 0.02
    assert (plain - joints - offset)[:, near, 2].abs().max() > 0.05


def test_smoothed_alignment_targets_are_closer_to_the_truth(quick_data):
    """Keypoints = the motion's own projection + white noise + a few gross outliers: the targets'
    redundant channels land far closer to the motion's own with the default smoothing than per frame."""
    ds = MotionDataset(quick_data.dataset_2d, "train", mode="2d", max_frames=80, seed=0, random_crop=False)
    batch = collate([ds[i] for i in range(8)])
    g = torch.Generator().manual_seed(1)
    plain = Objective("2d", LossConfig(align_smooth=0.0, align_outlier=0.0), ds.skeleton, ds.normalizer)
    smooth = Objective("2d", LossConfig(), ds.skeleton, ds.normalizer)  # the defaults smooth
    x = batch["motion"]
    joints = plain.joints(x)
    uv = vk.project(joints, batch["camera"], batch.get("intrinsics"))[0]
    uv = uv + 0.003 * torch.randn(uv.shape, generator=g)
    outliers = torch.rand(uv.shape[:-1], generator=g) < 0.005
    uv = uv + 0.06 * outliers[..., None] * torch.randn(uv.shape, generator=g)
    noisy = dict(batch, keypoints=uv)
    weights = batch["weights"] * batch["mask"][..., None].to(batch["weights"].dtype)
    red = plain.groups["redundant"]

    def miss(obj):
        target = obj.alignment_targets(joints, noisy, weights)
        F = target.shape[1]
        valid = (torch.arange(F)[None] < batch["lengths"][:, None] - 1)[..., None].float()
        return float(((target[..., red] - x[:, :F, red]) ** 2 * valid).sum() / (valid.sum() * (red.stop - red.start)))

    m_smooth, m_plain = miss(smooth), miss(plain)
    assert m_smooth < m_plain / 3, (m_smooth, m_plain)
