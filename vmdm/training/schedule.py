"""Step or time budgets with a warm-up-then-cosine learning rate, shared by the small
trainers (the evaluator, the teacher lifter) that may stop on a wall-clock budget.

The cosine runs over the nominal number of steps, or over the time budget when that runs
out first, so a run cut short by time still ends at a small learning rate.
"""

from __future__ import annotations

import math
import time

import torch

__all__ = ["Budget"]


class Budget:
    """``steps`` optimisation steps or ``seconds`` of training (None: no time limit),
    whichever comes first, counted from construction; ``warmup`` linear warm-up steps."""

    def __init__(self, steps: int, seconds: float | None = None, warmup: int = 50):
        if steps < 1:
            raise ValueError(f"steps: expected >= 1, got {steps}")
        if seconds is not None and seconds <= 0:
            raise ValueError(f"seconds: expected > 0 or None, got {seconds}")
        self.steps, self.seconds, self.warmup = steps, seconds, max(1, warmup)
        self.t0 = time.time()

    def elapsed(self) -> float:
        return time.time() - self.t0

    def out_of_time(self) -> bool:
        return self.seconds is not None and self.elapsed() > self.seconds

    def lr(self, base_lr: float, step: int) -> float:
        """The learning rate at ``step`` (0-based)."""
        frac = step / self.steps
        if self.seconds is not None:
            frac = max(frac, self.elapsed() / self.seconds)
        # One expression, in this order: the teacher's published weights depend on its rounding.
        return base_lr * min(1.0, (step + 1) / self.warmup) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

    def set_lr(self, opt: torch.optim.Optimizer, base_lr: float, step: int) -> float:
        lr = self.lr(base_lr, step)
        for group in opt.param_groups:
            group["lr"] = lr
        return lr
