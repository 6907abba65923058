"""Lifting throughput: the prior as a lifter, clip by clip against several clips per call.

Eight clips of the quick 2D-only test split (their stored teacher lifts, the same length),
lifted from the teacher (t* = 2, VideoMDM's default) and from noise (10 DDIM steps), one
``lift_details`` call per clip or one ``lift_batch`` call for all, the batch also with the
guidance's kernels (ray targets, feature encoding, decoding) on the pure-PyTorch reference
instead of the compiled ones (``VMDM_BACKEND=reference``). The denoiser's weights
are random (speed does not depend on them); its size is the training default's. Seconds
per clip are in extra_info.
"""

from __future__ import annotations

import pytest
import torch

from vmdm.data.build.prepare import ensure_default_data
from vmdm.data.dataset import MotionDataset
from vmdm.eval.lifting_eval import split_cases
from vmdm.inference.lifting import lift_batch, lift_details
from vmdm.inference.loading import LoadedModel
from vmdm.model.denoiser import MotionDenoiser
from vmdm.model.diffusion import Diffusion
from vmdm.model.text import build_text_encoder

from .conftest import device_name

CLIPS, FRAMES = 8, 60


@pytest.fixture(scope="module")
def setup(device):
    paths = ensure_default_data(quick=True, progress=False)
    ds = MotionDataset(paths.dataset_2d, "train", mode="2d", max_frames=FRAMES, seed=0)
    cases = [c for c in split_cases(paths.dataset_2d, max_frames=FRAMES) if len(c.gt) == FRAMES][:CLIPS]
    if len(cases) < CLIPS:
        pytest.skip(f"the quick test split has fewer than {CLIPS} clips of {FRAMES} frames")
    enc = build_text_encoder("bow")
    torch.manual_seed(0)
    preset = "base" if device.type == "cuda" else "tiny"
    model = MotionDenoiser.from_preset(preset, feature_dim=ds.feature_dim, text_dim=enc.dim).to(device).eval()
    lm = LoadedModel(model, Diffusion(50), ds.normalizer, ds.skeleton, enc,
                     {"supervision": "2d", "max_frames": FRAMES}, device)
    return lm, cases, preset


@pytest.mark.parametrize("init", ["teacher", "noise"])
@pytest.mark.parametrize("mode", ["per-clip", "batched", "batched-reference"])
def test_lift_clips(benchmark, device, setup, mode, init, monkeypatch):
    lm, cases, preset = setup
    kw = dict(init="teacher", t_star=2) if init == "teacher" else dict(init="noise", sample_steps=10)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def per_clip():
        for i, c in enumerate(cases):
            lift_details(lm, c.keypoints, c.scores, c.camera, None, seed=i,
                         **({"teacher": c.teacher} if init == "teacher" else {}), **kw)
        sync()

    def batched():
        lift_batch(lm, [c.keypoints for c in cases], [c.scores for c in cases], [c.camera for c in cases],
                   teachers=[c.teacher for c in cases] if init == "teacher" else None, seed=0, **kw)
        sync()

    if mode == "batched-reference":
        monkeypatch.setenv("VMDM_BACKEND", "reference")
    fn = per_clip if mode == "per-clip" else batched
    benchmark.group = f"lift-{init}-{device.type}"
    benchmark.extra_info.update(device=device_name(device), mode=mode, init=init, clips=len(cases), frames=FRAMES,
                                model=preset, **{k: v for k, v in kw.items() if k != "init"})
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["seconds_per_clip"] = benchmark.stats.stats.min / len(cases)
