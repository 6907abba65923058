"""Load a trained checkpoint and generate motion from text.

``load_model(path)`` restores the denoiser (EMA weights by default), the diffusion
schedule, the feature normaliser, the skeleton and the text encoder recorded in the
checkpoint; ``LoadedModel.generate(texts, lengths)`` samples motions with
classifier-free guidance and returns denormalised features and decoded joints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vmdm.motion.representation import Normalizer, decode
from vmdm.training.checkpoint import DenoiserCheckpoint
from vmdm.motion.skeleton import Skeleton, get_skeleton
from vmdm.model.diffusion import Diffusion
from vmdm.model.denoiser import DenoiserConfig, MotionDenoiser
from vmdm.model.text import TextEncoder, build_text_encoder

__all__ = ["LoadedModel", "load_model", "read_lift_settings", "LIFT_SETTINGS"]


@dataclass
class LoadedModel:
    model: MotionDenoiser
    diffusion: Diffusion
    normalizer: Normalizer
    skeleton: Skeleton
    text_encoder: TextEncoder
    config: dict
    device: torch.device
    # How much larger the training inputs' bodies are than the denoiser's predictions of
    # them (vmdm.training.body_scale); 1 for checkpoints that do not record it.
    body_scale: float = 1.0
    # Content hash of the dataset it was trained on (vmdm.data.build.fingerprint); None if unrecorded.
    data_hash: str | None = None
    # Lifting settings chosen for this checkpoint on the val split (LIFT_SETTINGS beside it,
    # written by python -m vmdm.eval --lift-benchmark --tune); None when there is none.
    lift_settings: dict | None = None

    @property
    def train_frames(self) -> int:
        """The longest window it was trained on (``max_frames`` of its training config):
        generation and lifting default to at most this many frames, positions beyond it the
        denoiser never saw (the model's own capacity, ``model.cfg.max_frames``, can be larger)."""
        return min(int(self.config.get("max_frames") or self.model.cfg.max_frames), self.model.cfg.max_frames)

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.normalizer.mean, dtype=features.dtype, device=features.device)
        std = torch.as_tensor(self.normalizer.std, dtype=features.dtype, device=features.device)
        return (features - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.normalizer.mean, dtype=x.dtype, device=x.device)
        std = torch.as_tensor(self.normalizer.std, dtype=x.dtype, device=x.device)
        return x * std + mean

    @torch.no_grad()
    def generate(self, texts: list[str], lengths, *, guidance: float = 2.5, sampler: str = "ddim",
                 sample_steps: int | None = None, seed: int | None = None, batch_size: int = 64,
                 guide=None, progress: bool = False, init: torch.Tensor | None = None,
                 start: int | None = None) -> dict:
        """Sample one motion per text.

        ``lengths``: frames per motion (int or list). ``guide(x0_norm, t, index) -> x0_norm`` may
        correct each denoising prediction of the batch given by ``index`` (used for lifting).
        ``init [N, F, D]`` (normalised features) and ``start``: begin each chain from ``init``
        diffused to diffusion step ``start`` instead of from noise (:meth:`Diffusion.sample`).
        Returns ``{"features": [N, F, D] denormalised, "joints": [N, F, J, 3], "lengths": [N]}``
        (frames past each length are zero).
        """
        n = len(texts)
        lengths = torch.as_tensor([lengths] * n if isinstance(lengths, int) else list(lengths), dtype=torch.long)
        if lengths.shape != (n,):
            raise ValueError(f"lengths: expected {n} values (one per text), got {tuple(lengths.shape)}")
        max_f = self.model.cfg.max_frames
        if int(lengths.max()) > max_f or int(lengths.min()) < 1:
            raise ValueError(f"lengths: expected 1..{max_f} frames, got {lengths.tolist()}")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**31))
        F = int(lengths.max())
        D = self.model.cfg.feature_dim
        feats = torch.zeros(n, F, D)
        if init is not None and tuple(init.shape) != (n, F, D):
            raise ValueError(f"init: expected shape {(n, F, D)} (normalised features), got {tuple(init.shape)}")
        for s in range(0, n, batch_size):
            idx = slice(s, min(n, s + batch_size))
            L = lengths[idx].to(self.device)
            mask = torch.arange(F, device=self.device)[None] < L[:, None]
            text = self.text_encoder(texts[idx], self.device)

            def predict(x_t, t, text=text, mask=mask):
                return self.model.guided(x_t, t, text, mask, guidance)

            g = None if guide is None else (lambda x0, t, idx=idx: guide(x0, t, idx))
            x = self.diffusion.sample(predict, (L.shape[0], F, D), self.device, sampler=sampler,
                                      sample_steps=sample_steps, generator=gen, mask=mask, guide=g,
                                      progress=progress, init=None if init is None else init[idx],
                                      start=start)
            feats[idx] = self.denormalize(x).cpu() * mask[..., None].cpu()
        joints = decode(feats, self.skeleton)
        valid = torch.arange(F)[None] < lengths[:, None]
        joints = joints * valid[..., None, None]
        return {"features": feats, "joints": joints, "lengths": lengths}


def load_model(path: str | Path, device: str | torch.device | None = None, *, use_ema: bool = True,
               text_encoder: TextEncoder | None = None) -> LoadedModel:
    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    ck = DenoiserCheckpoint.load(path)
    # Checkpoints from before the text_norm option projected the raw embedding.
    model = MotionDenoiser(DenoiserConfig(**{"text_norm": False, **ck.model_config}))
    model.load_state_dict(ck.ema if use_ema else ck.model)
    model.to(device).eval()
    cfg = ck.config
    norm = Normalizer(np.asarray(ck.normalizer["mean"]), np.asarray(ck.normalizer["std"]))
    enc = text_encoder if text_encoder is not None else build_text_encoder(cfg["text_encoder"], device="cpu")
    if enc.dim != model.cfg.text_dim:
        raise ValueError(f"text encoder {enc.name!r} gives {enc.dim}-dim embeddings; the checkpoint expects "
                         f"{model.cfg.text_dim}")
    diffusion = Diffusion(cfg["diffusion_steps"])
    return LoadedModel(model, diffusion, norm, get_skeleton(ck.skeleton), enc, cfg,
                       device, float(ck.body_scale or 1.0), ck.data_hash,
                       read_lift_settings(Path(path).with_name(LIFT_SETTINGS), diffusion.steps))


LIFT_SETTINGS = "lift_settings.json"


def read_lift_settings(path: Path, diffusion_steps: int) -> dict | None:
    """The lifting settings recorded beside a checkpoint (None if the file is absent). The
    file is JSON (it runs no code); anything but ``{"t_star": 0..diffusion_steps, ...}`` is
    an error naming it; an optional ``"smooth"`` is a number >= 0."""
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable lifting settings ({e})") from None
    t_star = rec.get("t_star") if isinstance(rec, dict) else None
    if not isinstance(t_star, int) or isinstance(t_star, bool) or not 0 <= t_star <= diffusion_steps:
        raise ValueError(f"{path}: expected a JSON object with an integer 't_star' in 0..{diffusion_steps}, "
                         f"got {rec!r:.200}")
    smooth = rec.get("smooth")
    if smooth is not None and (isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not smooth >= 0):
        raise ValueError(f"{path}: expected 'smooth' to be a number >= 0 (frames), got {smooth!r:.100}")
    return rec
