"""The step/time budget and warm-up-then-cosine learning rate shared by the evaluator's and
the teacher lifter's trainers."""

import math

import pytest
import torch

from vmdm.training.schedule import Budget


def test_warmup_then_cosine_over_the_steps():
    b = Budget(100, warmup=10)
    lrs = [b.lr(1.0, s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1 * 0.5 * (1 + math.cos(0.0)))
    assert lrs[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.09)))
    assert all(a >= b_ for a, b_ in zip(lrs[9:], lrs[10:]))  # decays after the warm-up
    assert lrs[99] < 0.001 and not b.out_of_time()


def test_a_time_budget_runs_the_cosine_over_the_time(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("vmdm.training.schedule.time.time", lambda: clock[0])
    b = Budget(10_000, seconds=10.0, warmup=1)
    clock[0] += 5.0  # half the time gone at step 10: the cosine is half way
    assert b.lr(2.0, 10) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert not b.out_of_time()
    clock[0] += 5.5
    assert b.out_of_time() and b.lr(1.0, 10) == pytest.approx(0.0, abs=1e-12)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    assert b.set_lr(opt, 1.0, 0) == opt.param_groups[0]["lr"]


def test_bad_budgets_fail_clearly():
    with pytest.raises(ValueError, match="steps: expected >= 1, got 0"):
        Budget(0)
    with pytest.raises(ValueError, match="seconds: expected > 0 or None, got -1"):
        Budget(5, seconds=-1)
