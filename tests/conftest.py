"""Test-session setup shared by every test directory.

Triton reads TRITON_INTERPRET when it is first imported, and importing
vmdm_kernels (through torch._dynamo) imports triton, so the interpreter must
be chosen here, before any test module imports the package. On a machine with
a CUDA device the Triton kernels run compiled instead.
"""

import os

# Before torch loads OpenMP: see vmdm/__init__.py (tests and their subprocesses share 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Where the quick built-in data lives: ``$VMDM_TEST_CACHE`` when set (reused across
    sessions), else a fresh temporary folder built once per session."""
    from pathlib import Path

    env = os.environ.get("VMDM_TEST_CACHE")
    if env:
        Path(env).mkdir(parents=True, exist_ok=True)
        return Path(env)
    return tmp_path_factory.mktemp("vmdm_cache")


@pytest.fixture(scope="session")
def quick_data(cache_dir):
    """The small built-in dataset (corpus, teacher lifter, 2D-only dataset)."""
    from vmdm.data.build.prepare import ensure_default_data

    return ensure_default_data(cache_dir, quick=True, progress=False)
