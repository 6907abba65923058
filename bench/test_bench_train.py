"""Training-step throughput per supervision mode and kernel setting, same model and batch.

The VideoMDM (2d) step adds decoding, the fused 2D losses and the alignment targets to
the MDM (3d) step; the target is a 2d step within 1.05x of the 3d step with fused kernels
on GPU. One step = denoiser forward, objective, backward, AdamW update.
"""

from __future__ import annotations

import pytest
import torch

from vmdm.data.dataset import MotionDataset, collate
from vmdm.data.build.prepare import ensure_default_data
from vmdm.model.diffusion import Diffusion
from vmdm.model.denoiser import MotionDenoiser
from vmdm.training.objectives import LossConfig, Objective

from .conftest import device_name


@pytest.fixture(scope="module")
def batches(device):
    paths = ensure_default_data(quick=True, progress=False)
    B, F = (64, 196) if device.type == "cuda" else (16, 120)
    out = {}
    for mode in ("2d", "3d"):
        ds = MotionDataset(paths.dataset_2d, "train", mode=mode, max_frames=F, seed=0, random_crop=False)
        batch = collate([ds[i] for i in range(B)])
        out[mode] = (ds, {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()})
    return out


@pytest.mark.parametrize("kernels", ["fused", "reference"])
@pytest.mark.parametrize("supervision", ["3d", "2d"])
def test_train_step(benchmark, device, batches, supervision, kernels):
    ds, batch = batches[supervision]
    preset = "base" if device.type == "cuda" else "tiny"
    torch.manual_seed(0)
    model = MotionDenoiser.from_preset(preset, feature_dim=ds.feature_dim, text_dim=384).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cfg = LossConfig(lambda_geo_vel=1.0) if supervision == "3d" else LossConfig()
    objective = Objective(supervision, cfg, ds.skeleton, ds.normalizer, kernels=kernels)
    diffusion = Diffusion(50)
    x0, mask = batch["motion"], batch["mask"]
    B = x0.shape[0]
    text = torch.randn(B, 384, device=device)
    amp = device.type == "cuda"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        t = diffusion.sample_timesteps(B, device)
        x_t = diffusion.q_sample(x0, t, torch.randn_like(x0)) * mask[..., None]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(x_t, t, text, mask)
        loss = objective(pred.float(), batch)["loss"].mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()

    step()
    benchmark.group = f"train-step-{device.type}"
    benchmark.extra_info.update(device=device_name(device), supervision=supervision, kernels=kernels, B=B,
                                frames=x0.shape[1], model=preset)
    benchmark.pedantic(step, rounds=5 if device.type == "cpu" else 20, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("project", [True, False])
def test_multistep_unrolled_step(benchmark, device, batches, project):
    """A multistep batch (--multistep: three unrolled model steps below t* = 12, a loss at
    each) against the plain 2d step above: the same model, batch and fused kernels."""
    from vmdm.training.multistep import unrolled_losses, unrolled_timesteps

    ds, batch = batches["2d"]
    preset = "base" if device.type == "cuda" else "tiny"
    torch.manual_seed(0)
    model = MotionDenoiser.from_preset(preset, feature_dim=ds.feature_dim, text_dim=384).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    objective = Objective("2d", LossConfig(), ds.skeleton, ds.normalizer, kernels="fused")
    diffusion = Diffusion(50)
    x0, mask = batch["motion"], batch["mask"]
    B = x0.shape[0]
    text = torch.randn(B, 384, device=device)
    amp = device.type == "cuda"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ts = unrolled_timesteps(diffusion, 12, 3)

    def predict(x_t, t):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return model(x_t, t, text, mask)

    def step():
        steps = unrolled_losses(predict, objective, diffusion, batch, torch.randn_like(x0), ts, project=project)
        loss = sum(terms["loss"].mean() for terms, _ in steps) / len(steps)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()

    step()
    benchmark.group = f"train-step-{device.type}"
    benchmark.extra_info.update(device=device_name(device), supervision="2d-multistep" + ("" if project else "-raw"),
                                kernels="fused", B=B, frames=x0.shape[1], model=preset, unrolled=len(ts))
    benchmark.pedantic(step, rounds=5 if device.type == "cpu" else 20, iterations=1, warmup_rounds=1)
