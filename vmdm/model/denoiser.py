"""The MDM denoiser: a transformer encoder over motion frames that predicts clean motion x0.

Input tokens are the noisy frames (linear projection of the D-dim features plus a
sinusoidal position code), prepended with one condition token = timestep embedding +
projected text embedding. Padded frames are masked out of attention. For
classifier-free guidance the text embedding is dropped (zeroed) for a fraction of the
training batch and at sampling the conditional and unconditional predictions are
combined in one doubled batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["DenoiserConfig", "PRESETS", "MotionDenoiser"]


@dataclass
class DenoiserConfig:
    feature_dim: int = 263
    text_dim: int = 384
    width: int = 512
    layers: int = 8
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.1
    max_frames: int = 256
    cond_drop: float = 0.1  # classifier-free guidance: probability of dropping the text in training
    # x0 = sqrt(ab_t) x_t + sqrt(1 - ab_t) * network(x_t): the posterior mean of unit-variance data
    # plus a learned correction (EDM-style preconditioning). 0 disables it (plain x0 output, as MDM).
    skip_steps: int = 0  # diffusion steps of the schedule the skip uses (0 = no skip)
    # Standardise each text embedding before projecting it. Sentence encoders differ in scale
    # (MiniLM: unit norm; CLIP: far larger); unscaled MiniLM embeddings reach the transformer
    # much weaker than the timestep and motion tokens, and the models learned to ignore the
    # text (measured: docs/training.md).
    text_norm: bool = True


PRESETS = {
    "tiny": dict(width=128, layers=2, heads=4, ff=256),
    "small": dict(width=256, layers=4, heads=4, ff=512),
    "base": dict(width=512, layers=8, heads=4, ff=1024),  # MDM's defaults
}


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    ang = positions.float()[..., None] * freq
    emb = torch.cat((ang.sin(), ang.cos()), dim=-1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class MotionDenoiser(nn.Module):
    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.input = nn.Linear(cfg.feature_dim, w)
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.text_norm = nn.LayerNorm(cfg.text_dim, elementwise_affine=False) if cfg.text_norm else nn.Identity()
        self.text_proj = nn.Linear(cfg.text_dim, w)
        layer = nn.TransformerEncoderLayer(w, cfg.heads, cfg.ff, cfg.dropout, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.output = nn.Linear(w, cfg.feature_dim)
        self.register_buffer("pos", sinusoid(torch.arange(cfg.max_frames + 1), w), persistent=False)
        if cfg.skip_steps:
            from vmdm.model.diffusion import cosine_alpha_bar

            self.register_buffer("alpha_bar", cosine_alpha_bar(cfg.skip_steps).float(), persistent=False)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "MotionDenoiser":
        if preset not in PRESETS:
            raise ValueError(f"model preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        return cls(DenoiserConfig(**{**PRESETS[preset], **overrides}))

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, text_emb: torch.Tensor, mask: torch.Tensor,
                drop_text: torch.Tensor | None = None) -> torch.Tensor:
        """x_t ``[B, F, D]``, t ``[B]`` (integer steps), text_emb ``[B, E]``, mask ``[B, F]`` (True = frame).
        ``drop_text`` ``[B]`` bool: use the unconditional embedding for these samples."""
        B, F, D = x_t.shape
        if D != self.cfg.feature_dim:
            raise ValueError(f"x_t: expected feature dim {self.cfg.feature_dim}, got shape {tuple(x_t.shape)}")
        if F > self.cfg.max_frames:
            raise ValueError(f"x_t: {F} frames exceed max_frames={self.cfg.max_frames}")
        text = self.text_proj(self.text_norm(text_emb.to(x_t.dtype)))
        if drop_text is not None:
            text = text * (~drop_text).to(text.dtype)[:, None]
        cond = self.time_mlp(sinusoid(t, self.cfg.width).to(x_t.dtype)) + text
        h = torch.cat((cond[:, None], self.input(x_t)), dim=1) + self.pos[: F + 1].to(x_t.dtype)
        pad = torch.cat((torch.zeros(B, 1, dtype=torch.bool, device=mask.device), ~mask), dim=1)
        h = self.encoder(h, src_key_padding_mask=pad)
        out = self.output(h[:, 1:])
        if not self.cfg.skip_steps:
            return out
        # The blend runs in (at least) float32: under bf16 autocast alpha_bar near t = 0 rounds
        # to 1, which would return x_t unchanged and cut the network out of those steps.
        dt = torch.promote_types(out.dtype, torch.float32)
        ab = self.alpha_bar[t].to(dt)[:, None, None]
        return ab.sqrt() * x_t.to(dt) + (1 - ab).sqrt() * out.to(dt)

    def guided(self, x_t, t, text_emb, mask, scale: float) -> torch.Tensor:
        """Classifier-free guidance: ``uncond + scale * (cond - uncond)`` from one doubled batch."""
        if scale == 1.0:
            return self(x_t, t, text_emb, mask)
        B = x_t.shape[0]
        drop = torch.cat((torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool))).to(x_t.device)
        out = self(torch.cat((x_t, x_t)), torch.cat((t, t)), torch.cat((text_emb, text_emb)),
                   torch.cat((mask, mask)), drop_text=drop)
        cond, uncond = out[:B], out[B:]
        return uncond + scale * (cond - uncond)
