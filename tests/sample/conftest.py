"""Fixtures for the sampling, export and lifting tests.

``tiny_checkpoint`` trains the tiny denoiser for a few steps on the shared quick dataset
(built once per session by the root ``quick_data`` fixture): its motions are poor, but
it has every part a real checkpoint has (EMA weights, normaliser, text encoder name,
diffusion schedule), which is what the command line and the lifting code consume.
"""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_checkpoint(quick_data, tmp_path_factory):
    from vmdm.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("sample_ckpt")
    cfg = TrainConfig.of(supervision="2d", data=str(quick_data.dataset_2d), out=str(out), text_encoder="bow",
                      model="tiny", steps=20, batch_size=8, max_frames=40, lr=1e-3, warmup=1, ckpt_every=20,
                      log_every=20, progress=False,
                      # 20 steps learn no body size; a measured scale would only perturb the mechanics.
                      body_scale_windows=0)
    return train(cfg)


@pytest.fixture(scope="session")
def loaded_tiny(tiny_checkpoint):
    from vmdm.inference.loading import load_model

    return load_model(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def known_clip():
    """A rigid synthetic walk (40 frames, world frame, y up) seen by a random camera:
    ``(joints [F, 22, 3], extrinsic [3, 4], intrinsics [4] pixels, keypoints [F, 22, 2] pixels)``."""
    from vmdm.motion.cameras import sample_camera, project
    from vmdm.data.build.synth import generate_clip

    joints, _, _ = generate_clip("walk", np.random.default_rng(3))
    # Move and turn the walk so that the world frame is not the canonical one.
    x = torch.from_numpy(joints[:40]).double()
    a = 0.7
    rot = torch.tensor([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], dtype=torch.float64)
    x = x @ rot.T + torch.tensor([1.5, 0.0, -2.0], dtype=torch.float64)
    E, K = sample_camera(x, generator=torch.Generator().manual_seed(5))
    kp, _ = project(x, E.double(), K.double())
    return x, E.double(), K.double(), kp
