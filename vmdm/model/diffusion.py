"""Gaussian diffusion with a cosine schedule and x0 parameterisation.

The denoiser predicts the clean sample x0 directly (as MDM and VideoMDM do). Sampling:
ancestral DDPM over all steps, or deterministic DDIM over a subset of steps.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["Diffusion", "cosine_alpha_bar"]


def cosine_alpha_bar(steps: int, s: float = 0.008) -> torch.Tensor:
    """Cumulative signal level alpha_bar_t for t = 0..steps-1 (Nichol & Dhariwal)."""
    x = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


class Diffusion:
    def __init__(self, steps: int = 50):
        if steps < 1:
            raise ValueError(f"diffusion steps: expected >= 1, got {steps}")
        self.steps = steps
        ab = cosine_alpha_bar(steps)
        self.alpha_bar = ab.float()
        self.alpha_bar_prev = torch.cat((torch.ones(1, dtype=torch.float64), ab[:-1])).float()
        self._on_device: dict[tuple[str, torch.device], torch.Tensor] = {}

    def table(self, name: str, device) -> torch.Tensor:
        """``alpha_bar`` or ``alpha_bar_prev`` on ``device``, copied there once (not every step)."""
        key = (name, torch.device(device))
        if key not in self._on_device:
            self._on_device[key] = getattr(self, name).to(device)
        return self._on_device[key]

    def _at(self, table: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.table(table, like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def sample_timesteps(self, batch: int, device, generator=None) -> torch.Tensor:
        return torch.randint(0, self.steps, (batch,), device=device, generator=generator)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ab = self._at("alpha_bar", t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def eps_from_x0(self, x_t, t, x0):
        ab = self._at("alpha_bar", t, x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def posterior(self, x_t, t, x0):
        """Mean and variance of q(x_{t-1} | x_t, x0)."""
        ab, ab_prev = self._at("alpha_bar", t, x_t), self._at("alpha_bar_prev", t, x_t)
        alpha = ab / ab_prev
        beta = 1 - alpha
        mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + (alpha.sqrt() * (1 - ab_prev) / (1 - ab)) * x_t
        var = beta * (1 - ab_prev) / (1 - ab)
        return mean, var

    def timesteps(self, sampler: str = "ddim", sample_steps: int | None = None,
                  start: int | None = None) -> list[int]:
        """The diffusion steps :meth:`sample` visits, from the noisiest down to 0: every step for
        ``ddpm``; ``sample_steps`` (default: all) evenly spread ones for ``ddim``. ``start``:
        the first (noisiest) step, for a chain started from a diffused input (default
        ``steps - 1``, pure noise)."""
        first = self.steps - 1 if start is None else int(start)
        if not 0 <= first < self.steps:
            raise ValueError(f"start: expected a diffusion step in 0..{self.steps - 1}, got {start}")
        if sampler == "ddpm":
            return list(range(first, -1, -1))
        if sampler == "ddim":
            n = first + 1 if sample_steps is None else max(1, min(sample_steps, first + 1))
            return sorted({int(round(v)) for v in torch.linspace(first, 0, n).tolist()}, reverse=True)
        raise ValueError(f"sampler: expected 'ddpm' or 'ddim', got {sampler!r}")

    @torch.no_grad()
    def sample(self, predict_x0: Callable, shape, device, *, sampler: str = "ddim", sample_steps: int | None = None,
               generator: torch.Generator | None = None, mask: torch.Tensor | None = None,
               guide: Callable | None = None, progress: bool = False, init: torch.Tensor | None = None,
               start: int | None = None) -> torch.Tensor:
        """Draw samples. ``predict_x0(x_t, t) -> x0``; ``guide(x0, t) -> x0`` optionally corrects each
        prediction (e.g. ray-projection guidance for lifting). Padded frames (``mask`` False) are zero.

        ``init`` (clean samples of ``shape``) and ``start`` (a diffusion step): begin from
        ``init`` diffused to step ``start`` (SDEdit-style) instead of from pure noise at the
        last step; ``start`` alone starts pure noise there."""
        ts = self.timesteps(sampler, sample_steps, start)
        x = torch.randn(shape, device=device, generator=generator)
        if init is not None:
            if tuple(init.shape) != tuple(shape):
                raise ValueError(f"init: expected shape {tuple(shape)}, got {tuple(init.shape)}")
            x = self.q_sample(init.to(device, x.dtype), torch.full((shape[0],), ts[0], device=device), x)
        it = ts
        if progress:
            from tqdm import tqdm

            it = tqdm(ts, desc=f"sampling ({sampler}, {len(ts)} steps)", leave=False)
        for i, step in enumerate(it):
            t = torch.full((shape[0],), step, device=device, dtype=torch.long)
            x0 = predict_x0(x, t)
            if guide is not None:
                x0 = guide(x0, t)
            if mask is not None:
                x0 = x0 * mask[..., None]
            if step == 0:
                x = x0
                break
            if sampler == "ddpm":
                mean, var = self.posterior(x, t, x0)
                x = mean + var.sqrt() * torch.randn(x.shape, device=device, generator=generator)
            else:
                nxt = ts[i + 1] if i + 1 < len(ts) else -1
                eps = self.eps_from_x0(x, t, x0)
                ab_next = self.table("alpha_bar", device)[nxt] if nxt >= 0 else torch.ones((), device=device)
                x = ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps
                if nxt < 0:
                    break
        if mask is not None:
            x = x * mask[..., None]
        return x
