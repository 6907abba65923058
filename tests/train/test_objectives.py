"""Loss terms of each supervision mode on real batches of the built-in 2D-only dataset."""

import pytest
import torch

import vmdm_kernels as vk
from vmdm.motion.representation import channel_groups, encode
from vmdm.data.dataset import MotionDataset, collate
from vmdm.training.objectives import LossConfig, Objective


@pytest.fixture(scope="module")
def batch_2d(quick_data):
    ds = MotionDataset(quick_data.dataset_2d, "train", mode="2d", max_frames=40, seed=0)
    return ds, collate([ds[i] for i in range(6)])


def test_2d_objective_refuses_ground_truth(batch_2d):
    ds, batch = batch_2d
    obj = Objective("2d", LossConfig(), ds.skeleton, ds.normalizer)
    leaked = dict(batch, gt_joints=torch.zeros(1))
    with pytest.raises(RuntimeError, match=r"2D supervision received 3D ground truth in the batch \(\['gt_joints'\]\)"):
        obj(batch["motion"], leaked)


def test_terms_are_per_sample_and_fused_matches_reference(batch_2d):
    ds, batch = batch_2d
    pred = batch["motion"] + 0.3 * torch.randn_like(batch["motion"])
    fused = Objective("2d", LossConfig(), ds.skeleton, ds.normalizer, kernels="fused")(pred, batch)
    ref = Objective("2d", LossConfig(), ds.skeleton, ds.normalizer, kernels="reference")(pred, batch)
    assert set(fused) == {"pos2d", "vel2d", "align", "loss"}
    for k in fused:
        assert fused[k].shape == (6,)
        torch.testing.assert_close(fused[k], ref[k], rtol=1e-4, atol=1e-6)


def test_a_consistent_motion_on_its_rays_has_near_zero_2d_and_alignment_loss(batch_2d):
    """If the keypoints are exactly the projection of the prediction, the 2D terms vanish and the
    alignment target (the re-encoded ray projection) reproduces the prediction's redundant channels.

    The window is re-encoded on its own: HumanML3D's facing smoothing reaches past a crop's
    edges, so a crop of a clip's features is not the encoding of the crop. The prediction's
    redundant channels are therefore those of its own joints, encoded as a window."""
    ds, batch = batch_2d
    obj = Objective("2d", LossConfig(), ds.skeleton, ds.normalizer)
    red = channel_groups(ds.skeleton)["redundant"]
    with torch.no_grad():
        own = ds.normalizer.normalize(encode(obj.joints(batch["motion"]).double(), ds.skeleton, batch["lengths"],
                                             backend="reference")).float()
    pred = batch["motion"].clone()
    pred[:, :own.shape[1], red] = own[..., red]
    joints = obj.joints(pred)
    exact = dict(batch, keypoints=vk.project(joints, batch["camera"], batch.get("intrinsics"))[0])
    terms = obj(pred, exact)
    assert terms["pos2d"].max() < 1e-8 and terms["vel2d"].max() < 1e-8
    noisy = obj(pred + 0.5 * torch.randn_like(pred), batch)
    assert terms["align"].max() < 1e-2 * noisy["align"].min()


def test_3d_objective_with_geometric_terms(quick_data):
    ds = MotionDataset(quick_data.dataset_2d, "train", mode="3d", max_frames=40, seed=0)
    batch = collate([ds[i] for i in range(4)])
    cfg = LossConfig(lambda_geo_pos=1.0, lambda_geo_vel=1.0, lambda_geo_foot=1.0)
    obj = Objective("3d", cfg, ds.skeleton, ds.normalizer)
    exact = obj(batch["motion"], batch)
    assert exact["feature"].max() == 0 and exact["geo_pos"].max() < 1e-10 and exact["geo_vel"].max() < 1e-10
    noisy = obj(batch["motion"] + 0.2 * torch.randn_like(batch["motion"]), batch)
    for k in ("feature", "geo_pos", "geo_vel", "geo_foot"):
        assert noisy[k].shape == (4,) and (noisy[k] > 0).all(), k
    torch.testing.assert_close(noisy["loss"], sum(noisy[k] for k in ("feature", "geo_pos", "geo_vel", "geo_foot")))


def _scaled_body(ds, x_norm, s):
    """Normalised features of the same motion with every length scaled by ``s`` about the origin."""
    from vmdm.motion.representation import channel_groups

    g = channel_groups(ds.skeleton)
    mean, std = (torch.as_tensor(v, dtype=torch.float32) for v in (ds.normalizer.mean, ds.normalizer.std))
    x = x_norm * std + mean
    for k in ("root_lin_vel", "root_y", "ric", "local_vel"):
        x[..., g[k]] *= s
    return (x - mean) / std


def test_bone_term_is_the_relative_size_error_against_the_teacher(batch_2d):
    ds, batch = batch_2d
    obj = Objective("2d", LossConfig(lambda_bone=3.0), ds.skeleton, ds.normalizer)
    same = obj(batch["motion"], batch)
    assert same["bone"].max() < 1e-10
    for s in (0.9, 1.05):
        terms = obj(_scaled_body(ds, batch["motion"], s), batch)
        torch.testing.assert_close(terms["bone"], torch.full((6,), (s - 1) ** 2), rtol=1e-3, atol=1e-7)
        torch.testing.assert_close(terms["loss"], 7 * terms["pos2d"] + 50 * terms["vel2d"] + 10 * terms["align"]
                                   + 3 * terms["bone"])
    # Its gradient grows a body that is too small.
    s = torch.tensor(0.9, requires_grad=True)
    (grad,) = torch.autograd.grad(obj(_scaled_body(ds, batch["motion"], s), batch)["bone"].sum(), s)
    assert grad < 0


def test_bone_term_ignores_padding_frames(batch_2d):
    ds, batch = batch_2d
    obj = Objective("2d", LossConfig(lambda_bone=1.0), ds.skeleton, ds.normalizer)
    short = dict(batch, mask=batch["mask"].clone())
    short["mask"][:, 20:] = False
    pred = batch["motion"] + 0.2 * torch.randn_like(batch["motion"])
    junk = pred.clone()
    junk[:, 20:] += 5 * torch.randn_like(junk[:, 20:])
    torch.testing.assert_close(obj(pred, short)["bone"], obj(junk, short)["bone"])
