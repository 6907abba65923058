"""The t* multistep training scheme (--multistep): which batches unroll, the unrolled chain
(detached between steps, ray-projected), and training with it: no 3D ground truth read,
deterministic, bit-for-bit resume."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from vmdm.data.dataset import MotionDataset, collate
from vmdm.model.diffusion import Diffusion
from vmdm.training.config import LossConfig, TrainConfig
from vmdm.training.multistep import unrolled_losses, unrolled_timesteps, unrolls
from vmdm.training.objectives import Objective
from vmdm.training.trainer import train


def _cfg(quick_data, out, **kw):
    base = dict(supervision="2d", data=str(quick_data.dataset_2d), out=str(out), text_encoder="bow", model="tiny",
                steps=6, batch_size=4, max_frames=40, lr=1e-3, warmup=1, log_every=1, ckpt_every=3, progress=False,
                samples=0, body_scale_windows=0, multistep=True, multistep_t_star=25, multistep_steps=3)
    base.update(kw)
    return TrainConfig.of(**base)


def _rows(out):
    with open(Path(out) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def batch_2d(quick_data):
    ds = MotionDataset(quick_data.dataset_2d, "train", mode="2d", max_frames=40, seed=0, random_crop=False)
    batch = collate([ds[i] for i in range(4)])
    batch["lengths"][1] = 30  # a shorter clip: padded frames must not leak into the next input
    batch["mask"][1, 30:] = False
    return ds, batch


def test_unrolled_timesteps_and_their_errors():
    d = Diffusion(50)
    assert unrolled_timesteps(d, 12, 3) == [11, 6, 0]
    assert unrolled_timesteps(d, 12, 1) == [11]
    assert unrolled_timesteps(d, 2, 5) == [1, 0]
    for t_star, steps, match in ((0, 3, "t_star"), (51, 3, "t_star"), (12, 0, "steps")):
        with pytest.raises(ValueError, match=match):
            unrolled_timesteps(d, t_star, steps)


def test_unrolling_rate_is_t_star_over_T_and_independent_of_the_global_rng():
    picks = [unrolls(0, s, 12, 50) for s in range(4000)]
    assert abs(np.mean(picks) - 12 / 50) < 0.02
    torch.manual_seed(123)
    assert [unrolls(0, s, 12, 50) for s in range(200)] == picks[:200]
    assert picks[:200] != [unrolls(1, s, 12, 50) for s in range(200)]
    assert all(unrolls(3, s, 50, 50) for s in range(100))


def test_unrolled_chain_is_detached_between_steps_and_uses_the_projection(batch_2d):
    ds, batch = batch_2d
    objective = Objective("2d", LossConfig(align_smooth=0.0), ds.skeleton, ds.normalizer)
    d = Diffusion(50)
    lin = torch.nn.Linear(ds.feature_dim, ds.feature_dim)
    seen = []

    def predict(x_t, t):
        seen.append(x_t)
        return batch["motion"] + 0.1 * lin(x_t)

    noise = torch.randn_like(batch["motion"], generator=None)
    out = unrolled_losses(predict, objective, d, batch, noise, [11, 6, 0], project=True)
    assert [int(t[0]) for _, t in out] == [11, 6, 0] and len(seen) == 3
    assert all(not x.requires_grad for x in seen)  # nothing flows from a step to the one before
    assert all(terms["loss"].requires_grad and torch.isfinite(terms["loss"]).all() for terms, _ in out)
    # Padded frames of every input are zero.
    assert all(float(x[1, 30:].abs().max()) == 0 for x in seen)
    # Each step's loss has its own graph: the last one's gradient reaches the weights alone.
    out[-1][0]["loss"].sum().backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    # Projection changes what the next input is.
    seen_raw = []
    unrolled_losses(lambda x, t: (seen_raw.append(x), predict(x, t))[1], objective, d, batch, noise, [11, 6, 0],
                    project=False)
    assert torch.equal(seen[0], seen_raw[0]) and not torch.allclose(seen[1], seen_raw[1])


def test_projected_features_put_the_joints_on_the_rays(batch_2d):
    import vmdm_kernels as vk

    ds, batch = batch_2d
    objective = Objective("2d", LossConfig(align_smooth=0.0), ds.skeleton, ds.normalizer)
    x0 = batch["motion"]
    proj, cam = objective.projected_features(x0, batch)
    assert proj.shape == x0.shape and torch.isfinite(proj[batch["mask"]]).all()
    assert cam.shape == batch["camera"].shape
    w = batch["weights"] * batch["mask"][..., None]
    # Decoded (in their new canonical frame) and seen by the moved camera, the projected
    # joints lie on the rays: their 2D loss all but vanishes. With the old camera it would not.
    loss = lambda x, c: vk.reprojection_velocity_loss(objective.joints(x), batch["keypoints"], c, w,  # noqa: E731
                                                      batch.get("intrinsics"), reduction="none")[0]
    before, after, stale = loss(x0, batch["camera"]), loss(proj, cam), loss(proj, batch["camera"])
    assert (after < 0.05 * before).all(), (before, after)
    assert (stale > 10 * after).all(), (stale, after)


def test_multistep_training_never_reads_3d_ground_truth(quick_data, tmp_path, forbid_3d_ground_truth):
    train(_cfg(quick_data, tmp_path / "ms", multistep_t_star=50, steps=3))  # every batch unrolls
    rows = _rows(tmp_path / "ms")
    assert len(rows) == 3 and all(np.isfinite(float(r["loss"])) for r in rows)


def test_multistep_is_deterministic_and_resumes_bit_for_bit(quick_data, tmp_path):
    full, again, part = tmp_path / "full", tmp_path / "again", tmp_path / "part"
    train(_cfg(quick_data, full, steps=8, ckpt_every=4))
    train(_cfg(quick_data, again, steps=8, ckpt_every=4))
    train(_cfg(quick_data, part, steps=4, ckpt_every=4))
    train(_cfg(quick_data, part, steps=8, ckpt_every=4, resume=True))
    a, b, c = _rows(full), _rows(again), _rows(part)
    assert len(a) == len(b) == len(c) == 8
    for ra, rb, rc in zip(a, b, c):
        for k in ("loss", "pos2d", "vel2d", "align"):
            assert ra[k] == rb[k] == rc[k], f"step {ra['step']}: {k}"
    # Plain training on the same seed follows another curve (t* changes the timesteps).
    plain = tmp_path / "plain"
    train(_cfg(quick_data, plain, steps=8, ckpt_every=4, multistep=False))
    assert [r["loss"] for r in _rows(plain)] != [r["loss"] for r in a]


def test_multistep_options_are_checked_and_recorded(quick_data, tmp_path):
    with pytest.raises(ValueError, match="multistep_t_star"):
        _cfg(quick_data, tmp_path, multistep_t_star=0).resolved()
    with pytest.raises(ValueError, match="multistep_steps"):
        _cfg(quick_data, tmp_path, multistep_steps=0).resolved()
    with pytest.raises(ValueError, match="multistep_project: needs the keypoints"):
        _cfg(quick_data, tmp_path, supervision="3d", multistep_project=True).resolved()
    assert _cfg(quick_data, tmp_path).resolved().multistep_project is True
    assert _cfg(quick_data, tmp_path, supervision="teacher").resolved().multistep_project is False
    ck = train(_cfg(quick_data, tmp_path / "t", supervision="teacher", steps=2, multistep_t_star=50))
    from vmdm.training.checkpoint import load_checkpoint

    cfg = load_checkpoint(ck)["config"]
    assert cfg["multistep"] is True and cfg["multistep_project"] is False and cfg["multistep_t_star"] == 50
