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


class _StepSetup:
    """What every timed step shares: the seeded denoiser and its optimiser, the objective,
    the diffusion, a fixed text embedding and how to run the model (bf16 on GPU)."""

    def __init__(self, device, ds, batch, supervision: str, loss: LossConfig, kernels: str):
        self.device, self.batch = device, batch
        self.preset = "base" if device.type == "cuda" else "tiny"
        torch.manual_seed(0)
        self.model = MotionDenoiser.from_preset(self.preset, feature_dim=ds.feature_dim, text_dim=384).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.objective = Objective(supervision, loss, ds.skeleton, ds.normalizer, kernels=kernels)
        self.diffusion = Diffusion(50)
        self.x0, self.mask = batch["motion"], batch["mask"]
        self.text = torch.randn(self.x0.shape[0], 384, device=device)
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def predict(self, x_t, t):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return self.model(x_t, t, self.text, self.mask)

    def update(self, loss):
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sync()

    def run(self, benchmark, step, **info):
        step()
        benchmark.group = f"train-step-{self.device.type}"
        benchmark.extra_info.update(device=device_name(self.device), B=self.x0.shape[0], frames=self.x0.shape[1],
                                    model=self.preset, **info)
        benchmark.pedantic(step, rounds=5 if self.device.type == "cpu" else 20, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("kernels", ["fused", "reference"])
@pytest.mark.parametrize("supervision", ["3d", "2d"])
def test_train_step(benchmark, device, batches, supervision, kernels):
    ds, batch = batches[supervision]
    cfg = LossConfig(lambda_geo_vel=1.0) if supervision == "3d" else LossConfig()
    st = _StepSetup(device, ds, batch, supervision, cfg, kernels)
    B = st.x0.shape[0]

    def step():
        t = st.diffusion.sample_timesteps(B, device)
        x_t = st.diffusion.q_sample(st.x0, t, torch.randn_like(st.x0)) * st.mask[..., None]
        st.update(st.objective(st.predict(x_t, t).float(), batch)["loss"].mean())

    st.run(benchmark, step, supervision=supervision, kernels=kernels)


@pytest.mark.parametrize("project", [True, False])
def test_multistep_unrolled_step(benchmark, device, batches, project):
    """A multistep batch (--multistep: three unrolled model steps below t* = 12, a loss at
    each) against the plain 2d step above: the same model, batch and fused kernels."""
    from vmdm.training.multistep import unrolled_losses, unrolled_timesteps

    ds, batch = batches["2d"]
    st = _StepSetup(device, ds, batch, "2d", LossConfig(), "fused")
    ts = unrolled_timesteps(st.diffusion, 12, 3)

    def step():
        steps = unrolled_losses(st.predict, st.objective, st.diffusion, batch, torch.randn_like(st.x0), ts,
                                project=project)
        st.update(sum(terms["loss"].mean() for terms, _ in steps) / len(steps))

    st.run(benchmark, step, supervision="2d-multistep" + ("" if project else "-raw"), kernels="fused",
           unrolled=len(ts))
