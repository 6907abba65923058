"""Fixtures for the evaluation tests: a tiny model trained through the CLI and a tiny
evaluator, both on the root ``quick_data`` fixture's dataset (``cache_dir`` is its cache)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(cache_dir, quick_data, tmp_path_factory) -> Path:
    """A 20-step tiny VideoMDM model, trained through the CLI as a user would."""
    out = tmp_path_factory.mktemp("tiny_model")
    cmd = [sys.executable, "-m", "vmdm.train", "--quick-data", "--cache-dir", str(cache_dir), "--text-encoder", "bow",
           "--model", "tiny", "--steps", "20", "--batch-size", "8", "--max-frames", "40", "--out", str(out),
           "--no-progress", "--samples", "0"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out / "checkpoint.pt"


# Small evaluator settings: a few seconds of training on the quick data.
TINY_EVALUATOR = dict(steps=120, time_budget=None, batch_size=32, embed_dim=64, movement_dim=64, gru_dim=64,
                      lr=2e-3, heldout_frac=0.15, progress=False, threads=2)


@pytest.fixture(scope="session")
def tiny_evaluator(quick_data, tmp_path_factory) -> Path:
    from vmdm.eval.train_evaluator import EvaluatorTrainConfig, train_evaluator

    out = tmp_path_factory.mktemp("evaluator") / "evaluator.pt"
    return train_evaluator(EvaluatorTrainConfig(data=str(quick_data.dataset_2d), out=str(out), **TINY_EVALUATOR))
