"""How much a trained denoiser shrinks the bodies it is given, measured on its own training data.

A denoiser trained with 2D supervision predicts bodies a few per cent smaller than its
input even from an almost clean input: reprojection fixes a bone only across the line of
sight, and along it the prediction averages over the depths the input leaves open
(measured: docs/training.md, results/README.md). A lifter that takes its depth from the prior's body
size inherits that shrinkage as a depth error. The correction is the ratio of the input's
bone lengths to the prediction's on training windows at the last denoising step: it needs
only the training inputs (the teacher lifts in 2D mode), no 3D ground truth.

``python -m vmdm.training.body_scale --checkpoint C`` measures it and stores it in the checkpoint
(training does so at every checkpoint); :func:`vmdm.inference.lifting.lift` reads it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vmdm.cli import REQUIRED, ConfigError, field, run_main
from vmdm.data.dataset import MotionDataset, collate
from vmdm.motion.bones import bone_length_sum
from vmdm.motion.representation import decode

__all__ = ["BodyScaleConfig", "measure_body_scale", "update_body_scale", "main"]


@torch.no_grad()
def measure_body_scale(model, diffusion, normalizer, skeleton, text_encoder, dataset: MotionDataset, *,
                       num_windows: int = 256, batch_size: int = 32, seed: int = 0) -> float:
    """Input-to-prediction ratio of the summed bone lengths over ``num_windows`` training
    windows (spread evenly over ``dataset``), each noised to diffusion step 0 and denoised
    with its text.

    Step 0 still carries a little noise, as the sampler's last input does, and that is what
    the prediction hedges against (from a noise-free input it copies the size). ``model`` is
    a :class:`vmdm.model.denoiser.MotionDenoiser` (its training mode is restored); ``dataset`` serves
    the windows the model was trained on, normalised with ``normalizer``.
    """
    if num_windows < 1:
        raise ValueError(f"num_windows: expected >= 1, got {num_windows}")
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset: expected at least one window, got an empty dataset")
    device = next(model.parameters()).device
    mean = torch.as_tensor(normalizer.mean, dtype=torch.float32)
    std = torch.as_tensor(normalizer.std, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    picks = np.unique(np.linspace(0, n - 1, min(num_windows, n)).round().astype(int))
    was_training = model.training
    model.eval()
    given = predicted = 0.0
    try:
        for s in range(0, len(picks), batch_size):
            batch = collate([dataset[int(i)] for i in picks[s:s + batch_size]])
            x0, mask = batch["motion"].to(device), batch["mask"].to(device)
            text = text_encoder(batch["text"], device)
            t = torch.zeros(x0.shape[0], dtype=torch.long, device=device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            x_t = diffusion.q_sample(x0, t, noise) * mask[..., None]
            pred = model.guided(x_t, t, text, mask, 1.0).float().cpu()
            m = batch["mask"].float()

            def size(x, m=m):
                return (bone_length_sum(decode(x * std + mean, skeleton), skeleton.parents) * m).sum().item()

            given += size(batch["motion"])
            predicted += size(pred)
    finally:
        model.train(was_training)
    if predicted <= 0:
        raise RuntimeError("measure_body_scale: the predicted bodies have no size")
    return given / predicted


@dataclass
class BodyScaleConfig:
    """The options of ``python -m vmdm.training.body_scale``."""

    checkpoint: str = field(REQUIRED, "checkpoint to measure and update in place")
    data: str | None = field(None, "training data folder (default: the one recorded in the checkpoint)")
    windows: int = field(256, "training windows to measure on")
    dry_run: bool = field(False, "print the value, leave the checkpoint as it is")


def update_body_scale(cfg: BodyScaleConfig) -> float:
    """Measure the checkpoint's body scale on its training data and (unless ``dry_run``) store it."""
    from vmdm.inference.loading import load_model
    from vmdm.training.checkpoint import DenoiserCheckpoint

    ck = DenoiserCheckpoint.load(cfg.checkpoint)
    root = cfg.data or ck.data_root
    if not root:
        raise ConfigError(f"--data: {cfg.checkpoint} records no data folder; pass --data")
    saved = ck.config
    lm = load_model(cfg.checkpoint, "cpu")
    # The clips the model was trained on (a --limit-clips run saw only the first N).
    ds = MotionDataset(root, "train", mode=saved["supervision"], max_frames=saved["max_frames"], seed=0,
                       random_crop=False).limit_clips(saved.get("limit_clips"))
    scale = measure_body_scale(lm.model, lm.diffusion, lm.normalizer, lm.skeleton, lm.text_encoder, ds,
                               num_windows=cfg.windows)
    print(f"body scale {scale:.4f} (input / prediction bone lengths, {min(cfg.windows, len(ds))} windows)")
    if not cfg.dry_run:
        ck.body_scale = scale
        ck.save(cfg.checkpoint)
        print(f"stored in {cfg.checkpoint}")
    return scale


def main(argv=None) -> int:
    def run(cfg: BodyScaleConfig) -> None:
        update_body_scale(cfg)

    return run_main(BodyScaleConfig, "python -m vmdm.training.body_scale", __doc__.split("\n\n")[0], run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
