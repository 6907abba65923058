"""Exponential moving average of a model's weights (the weights sampling uses)."""

from __future__ import annotations

import torch

__all__ = ["EMA"]


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.params = [p.detach().clone().float() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        torch._foreach_lerp_(self.params, [p.detach().float() for p in model.parameters()], 1 - self.decay)

    def state_dict(self, model: torch.nn.Module) -> dict:
        names = [n for n, _ in model.named_parameters()]
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        for n, p in zip(names, self.params):
            sd[n] = p.to(sd[n].dtype).clone()
        return sd

    def load(self, sd: dict, model: torch.nn.Module) -> None:
        for p, (n, _) in zip(self.params, model.named_parameters()):
            p.copy_(sd[n])
