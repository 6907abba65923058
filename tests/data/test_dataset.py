import builtins

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vmdm.data.build.build_2d import Build2DConfig, build_2d
from vmdm.motion.cameras import CameraConfig, project
from vmdm.data.dataset import GroundTruthAccessError, MotionDataset, collate
from vmdm.motion.representation import decode
from vmdm.motion.skeleton import SMPL22
from vmdm.data.build.synth import generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("c") / "corpus", num_clips=60, seed=2, workers=1, progress=False)


@pytest.fixture(scope="module")
def root(corpus, tmp_path_factory):
    return build_2d(corpus, tmp_path_factory.mktemp("b") / "d2", Build2DConfig(teacher="noise"), progress=False)


def _reproj(batch, norm, b):
    """Median reprojection error of the decoded crop ``b`` through its camera (normalised units)."""
    L = int(batch["lengths"][b])
    joints = decode(norm.denormalize(batch["motion"][b, :L].double()), SMPL22)
    cam = batch["camera"][b]
    uv, _ = project(joints, cam.double() if cam.ndim == 2 else cam[:L].double())
    w = batch["weights"][b, :L] > 0
    return float((uv - batch["keypoints"][b, :L].double()).norm(dim=-1)[w].median())


@pytest.mark.parametrize("mode", ["2d", "teacher", "3d"])
def test_random_crops_keep_every_field_consistent(root, mode):
    ds = MotionDataset(root, "train", mode=mode, max_frames=48, seed=0)
    assert len(ds) > 10
    batch = collate([ds[i] for i in range(12)])
    B, F = batch["motion"].shape[:2]
    assert F <= 48 and batch["motion"].shape[2] == 263
    assert (batch["lengths"] % 4 == 0).all() and (batch["lengths"] <= 48).all()
    assert batch["mask"].shape == (B, F) and torch.equal(batch["mask"].sum(1), batch["lengths"])
    assert batch["keypoints"].shape == (B, F, 22, 2) and batch["weights"].shape == (B, F, 22)
    assert batch["camera"].shape == (B, 3, 4) and "intrinsics" not in batch and "gt_joints" not in batch
    assert (batch["weights"][~batch["mask"]] == 0).all() and (batch["motion"][~batch["mask"]] == 0).all()
    assert all(isinstance(t, str) and t for t in batch["text"])
    # The camera is in the frame of the decoded crop, whatever the crop's start.
    # (Several crops start late in clips that travel and turn: a camera left in the clip's
    # frame would miss them by 0.2-0.9 normalised units.)
    errs = [_reproj(batch, ds.normalizer, b) for b in range(B)]
    limit = 0.01 if mode == "3d" else 0.05
    assert max(errs) < limit, errs
    ref = "gt" if mode == "3d" else "teacher"
    assert np.allclose(ds.normalizer.mean, np.load(root / ref / "Mean.npy"))


def test_crop_matches_stored_arrays(root):
    ds = MotionDataset(root, "train", mode="teacher", max_frames=40, seed=1, return_gt=True)
    with np.load(root / "obs_train.npz") as z:
        obs = {k: z[k] for k in z.files}
    item = ds[3]
    i = list(obs["ids"]).index(item["id"])
    a = obs["feat_offsets"][i]
    feats = obs["teacher_features"][a : obs["feat_offsets"][i + 1]]
    raw = ds.normalizer.denormalize(item["motion"])
    # Find the crop start from the features, then check keypoints/scores use the same window.
    starts = [s for s in range(len(feats) - item["length"] + 1) if np.allclose(feats[s : s + item["length"]], raw, atol=1e-4)]
    assert len(starts) == 1
    s = starts[0]
    np.testing.assert_array_equal(item["keypoints"], obs["keypoints"][a + s : a + s + item["length"]])
    sc = obs["scores"][a + s : a + s + item["length"]]
    np.testing.assert_allclose(item["weights"], (sc > 0) * sc**2)
    # gt_joints are the decoded ground-truth crop.
    with np.load(root / "gt" / "train.npz") as z:
        gtf = z["gt_features"][a + s : a + s + item["length"]]
    np.testing.assert_allclose(item["gt_joints"], decode(gtf.astype(np.float64), SMPL22), atol=1e-3)


class _Forbidden:
    def load(self, split):
        raise AssertionError("mode '2d' read ground truth")

    def normalizer(self):
        raise AssertionError("mode '2d' read ground-truth statistics")


def test_mode_2d_never_opens_ground_truth(root, monkeypatch):
    opened = []
    real_open, real_load = builtins.open, np.load

    def spy_open(file, *a, **k):
        opened.append(str(file))
        return real_open(file, *a, **k)

    def spy_load(file, *a, **k):
        opened.append(str(file))
        return real_load(file, *a, **k)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(np, "load", spy_load)
    ds = MotionDataset(root, "train", mode="2d", gt_store=_Forbidden(), seed=0)
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["motion"].shape[0] == len(ds)
    assert opened and not [p for p in opened if "/gt/" in p or p.endswith("/gt")]
    with pytest.raises(GroundTruthAccessError):
        MotionDataset(root, "train", mode="2d", return_gt=True)
    # The same store is consulted in the modes that may read ground truth.
    with pytest.raises(AssertionError, match="read ground truth"):
        MotionDataset(root, "train", mode="3d", gt_store=_Forbidden())


def test_pixel_keypoints_and_dataloader(root):
    ds = MotionDataset(root, "train", mode="2d", pixel_keypoints=True, seed=0)
    loader = DataLoader(ds, batch_size=4, collate_fn=collate, shuffle=True, num_workers=0)
    batch = next(iter(loader))
    assert batch["intrinsics"].shape == (4, 4)
    L = int(batch["lengths"][0])
    joints = decode(ds.normalizer.denormalize(batch["motion"][0, :L].double()), SMPL22)
    uv, _ = project(joints, batch["camera"][0].double(), batch["intrinsics"][0].double())
    w = batch["weights"][0, :L] > 0
    assert (uv - batch["keypoints"][0, :L].double()).norm(dim=-1)[w].median() < 30  # pixels


def test_seed_makes_items_reproducible(root):
    a = MotionDataset(root, "train", mode="2d", seed=5)
    b = MotionDataset(root, "train", mode="2d", seed=5)
    for i in range(5):
        x, y = a[i], b[i]
        assert x["text"] == y["text"] and np.array_equal(x["motion"], y["motion"])
    c = MotionDataset(root, "train", mode="2d", random_crop=False, max_frames=400)
    item = c[0]
    assert item["length"] == (c._nframes(c._index[0]) // 4) * 4


def test_limit_clips_keeps_the_first_n(root):
    full = MotionDataset(root, "train", mode="2d", seed=0)
    part = MotionDataset(root, "train", mode="2d", seed=0).limit_clips(3)
    assert len(part) == 3 and part.ids == full.ids[:3]
    assert len(MotionDataset(root, "train", mode="2d").limit_clips(None)) == len(full)
    with pytest.raises(ValueError, match="limit_clips: expected >= 1, got 0"):
        full.limit_clips(0)


def test_per_frame_cameras_collate(corpus, tmp_path):
    out = build_2d(corpus, tmp_path / "pf", Build2DConfig(teacher="noise", camera=CameraConfig(per_frame=True)),
                   progress=False)
    ds = MotionDataset(out, "train", mode="2d", max_frames=40, seed=0)
    batch = collate([ds[i] for i in range(6)])
    B, F = batch["mask"].shape
    assert batch["camera"].shape == (B, F, 3, 4)
    assert max(_reproj(batch, ds.normalizer, b) for b in range(B)) < 0.05
    # Padding repeats the last camera (finite projections on padded frames).
    b = int(torch.argmin(batch["lengths"]))
    L = int(batch["lengths"][b])
    if L < F:
        assert torch.equal(batch["camera"][b, L], batch["camera"][b, L - 1])


def test_humanml3d_folder_in_mode_3d(corpus):
    ds = MotionDataset(corpus, "train", mode="3d", seed=0, return_gt=True, max_frames=64)
    batch = collate([ds[i] for i in range(4)])
    assert batch["motion"].shape[-1] == 263 and "keypoints" not in batch
    L = int(batch["lengths"][0])
    joints = decode(ds.normalizer.denormalize(batch["motion"][0, :L].double()), SMPL22)
    assert torch.allclose(joints.float(), batch["gt_joints"][0, :L], atol=2e-3)
    with pytest.raises(ValueError, match="mode '3d'"):
        MotionDataset(corpus, "train", mode="2d")


def test_bad_arguments(root, tmp_path):
    with pytest.raises(ValueError, match="mode"):
        MotionDataset(root, "train", mode="4d")
    with pytest.raises(FileNotFoundError, match="not a dataset folder"):
        MotionDataset(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="obs_nosplit.npz"):
        MotionDataset(root, "nosplit")
    with pytest.raises(ValueError, match="empty batch"):
        collate([])
