"""The t* multistep training scheme (``--multistep``), after the VideoMDM release's
``--t_star_method multistep``.

Plain training diffuses the teacher lift to a uniform step t and supervises the model's x0
prediction. At small t the input is nearly the teacher lift itself, and the 2D loss gives
no gradient along the camera rays, so the model learns to copy the teacher's along-ray
structure there. With the multistep scheme a batch, with probability ``t*/T``, is instead
taken below t* the way it is sampled: the teacher lift diffused to the first of ``k``
evenly spaced steps below t*, then ``k`` of the model's own DDIM steps, each prediction
supervised by the same objective (a loss at every step), optionally ray-projected and
re-encoded (:meth:`vmdm.training.objectives.Objective.projected_features`, the camera moved
into the frame the re-encoded input decodes to) before it sets the next input, which is
detached: no gradient flows from one step to the one before. Other
batches draw t uniformly from ``[t*, T)``.

Which batches unroll depends only on the run's seed and the step, never on the rank or
the global RNG: every process of a distributed run makes the same choice (they run the
same number of forward passes) and a resumed run makes the choices the uninterrupted one
made.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["unrolled_timesteps", "unrolls", "unrolled_losses"]


def unrolled_timesteps(diffusion, t_star: int, steps: int) -> list[int]:
    """The diffusion steps a multistep batch visits: ``steps`` evenly spaced DDIM steps from
    ``t_star - 1`` down to 0 (fewer when ``t_star`` is smaller than ``steps``)."""
    if not 1 <= t_star <= diffusion.steps:
        raise ValueError(f"t_star: expected 1..{diffusion.steps}, got {t_star}")
    if steps < 1:
        raise ValueError(f"steps: expected >= 1 unrolled steps, got {steps}")
    return diffusion.timesteps("ddim", steps, start=t_star - 1)


def unrolls(seed: int, step: int, t_star: int, total_steps: int) -> bool:
    """Whether training step ``step`` is a multistep batch (probability ``t_star / total_steps``),
    from ``(seed, step)`` alone."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63))
    return bool(torch.rand((), generator=g) < t_star / total_steps)


def unrolled_losses(predict: Callable, objective, diffusion, batch: dict, noise: torch.Tensor,
                    timesteps: list[int], *, project: bool) -> list[tuple[dict, torch.Tensor]]:
    """Run one multistep batch: ``predict(x_t, t) -> x0`` (the model, with gradient) at each of
    ``timesteps``; returns ``[(objective terms, t), ...]``, one per step, each with its own
    graph. ``noise`` diffuses the batch's ``motion`` (the teacher lift, in 2D training) to the
    first step; ``project``: the ray-projected, re-encoded prediction sets the next input
    instead of the raw one."""
    x0, mask = batch["motion"], batch["mask"]
    m = mask[..., None].to(x0.dtype)
    batch = dict(batch)  # the camera follows the re-encoded inputs (projected_features)
    B = x0.shape[0]
    t = torch.full((B,), timesteps[0], device=x0.device, dtype=torch.long)
    x_t = diffusion.q_sample(x0, t, noise) * m
    out = []
    for i, step in enumerate(timesteps):
        t = torch.full((B,), step, device=x0.device, dtype=torch.long)
        pred = predict(x_t, t)
        out.append((objective(pred.float(), batch), t))
        if i + 1 == len(timesteps):
            break
        with torch.no_grad():
            x0_hat = pred.detach().float()
            if project:
                x0_hat, batch["camera"] = objective.projected_features(x0_hat, batch)
            x0_hat = x0_hat * m
            eps = diffusion.eps_from_x0(x_t, t, x0_hat)
            ab_next = diffusion.table("alpha_bar", x0.device)[timesteps[i + 1]]
            x_t = ((ab_next.sqrt() * x0_hat + (1 - ab_next).sqrt() * eps) * m).to(x0.dtype)
    return out
