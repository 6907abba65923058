"""Fixtures of the training tests."""

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def forbid_3d_ground_truth(monkeypatch):
    """Every way to the 2D-only dataset's 3D ground truth raises ``AssertionError("3D ground
    truth was read")``: the GT store's loaders and any ``np.load`` of a ``gt`` file."""
    from vmdm.data import dataset as dataset_mod

    def forbidden(*a, **k):
        raise AssertionError("3D ground truth was read")

    monkeypatch.setattr(dataset_mod.NpzGTStore, "load", forbidden)
    monkeypatch.setattr(dataset_mod.NpzGTStore, "normalizer", forbidden)
    real_load = np.load

    def guarded_load(path, *a, **k):
        if "gt" in Path(path).parts or Path(path).name.startswith("gt"):
            forbidden()
        return real_load(path, *a, **k)

    monkeypatch.setattr(np, "load", guarded_load)
