"""Test-session setup shared by every test directory.

Triton reads TRITON_INTERPRET when it is first imported, and importing
vmdm_kernels (through torch._dynamo) imports triton, so the interpreter must
be chosen here, before any test module imports the package. On a machine with
a CUDA device the Triton kernels run compiled instead.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
