"""3D velocity loss (``velocity3d``) on every compiled backend against the reference.

Kernel level against ``vmdm_kernels.ref`` in float64 with autograd over training-sized,
awkward and (for Triton) tiny shapes with pinned tiles; points ignored by zero weights
carry NaN/Inf without effect; bitwise determinism; then the public API (reference
agreement, reductions, shapes and dtypes). Each comparison covers the loss and both
gradients for one random upstream gradient.
"""

import pytest
import torch

import vmdm_kernels as vk

from .conftest import cases, only
from .problems import make_problem
from .runners import V3_NAMES, assert_all_close, assert_same, kernel_velocity3d, reference_velocity3d, run_velocity3d, upstream

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
DTYPES = [torch.float32, torch.float64]
AWKWARD = [(1, 1, 1), (2, 1, 22), (3, 7, 1), (1, 197, 3), (2, 17, 22), (2, 9, 300), (5, 2, 5)]
TRITON_AWKWARD = [(1, 1, 1), (2, 1, 22), (3, 7, 1), (1, 197, 3), (2, 17, 22)]
_COMPILED = [(s, d) for d in DTYPES for s in [(3, 50, 22), (64, 196, 22)] + AWKWARD]


@pytest.mark.parametrize("backend,shape,dtype", cases({
    "cpp": _COMPILED, "cuda": _COMPILED,
    "triton": [(s, torch.float32) for s in [(2, 13, 5)] + TRITON_AWKWARD]
    + [(s, torch.float64) for s in [(2, 13, 5)] + TRITON_AWKWARD if s[1] < 100],
}), indirect=["backend"])
def test_kernels_match_reference(backend, shape, dtype):
    p = backend.to(make_problem(*shape, seed=5), dtype)
    got, target = kernel_velocity3d(backend, p)
    assert_all_close(got, reference_velocity3d(p, target), RTOL[dtype], V3_NAMES)
    if shape[1] == 1:
        assert all((x == 0).all() for x in got), "a single frame has no velocity pairs"
    got2, _ = kernel_velocity3d(backend, p)
    assert_same(got, got2, V3_NAMES)
    got3, _ = kernel_velocity3d(backend, p, need_target=False)
    assert_same(got[:2], got3, V3_NAMES)


@pytest.mark.parametrize("backend,block_t", cases({"cpp": [(None,)], "cuda": [(None,)], "triton": [(4,), (16,)]}),
                         indirect=["backend"])
def test_ignored_points_and_tile_seams(backend, block_t):
    kern = backend.kernels
    T, J = backend.pick(cuda=(41, 22), triton=(11, 6))
    p = make_problem(2, T, J, seed=6)
    p["weights"][0, 4, :] = 0
    p["weights"][1, :, 2] = 0
    if T > 24:
        p["weights"][1, 20:24, 5] = 0
    clean, target = kernel_velocity3d(backend, backend.to(p), block_t=block_t)
    p["joints"][0, 4, :] = float("nan")
    p["joints"][1, :, 2] = float("inf")
    if T > 24:
        p["joints"][1, 20:24, 5] = float("nan")
    q = backend.to(p)
    tile = {} if block_t is None else {"block_t": block_t}
    dirty_loss = kern.velocity3d_fwd(q["joints"], target, q["weights"], **tile)
    dirty = kern.velocity3d_bwd(upstream(2, 1).to(dirty_loss), q["joints"], target, q["weights"], True, **tile)
    for x in (dirty_loss,) + tuple(dirty):
        assert torch.isfinite(x).all()
    assert_all_close([dirty_loss, *dirty], clean, 0.0, floor=0.0)
    p["joints"] = p["joints"].nan_to_num(0.0, 0.0, 0.0)
    assert_all_close(clean, reference_velocity3d(backend.to(p), target), RTOL[torch.float64], V3_NAMES)


def test_public_api_matches_reference_backend(backend):
    p = make_problem(2, *backend.pick(cuda=(33, 22), triton=(9, 5)), seed=11, dtype=torch.float32)
    assert_all_close(run_velocity3d(backend.name, backend.to(p)), run_velocity3d("reference", p), RTOL[torch.float32])


@only("cpp")
@pytest.mark.parametrize("shape", [(2, 6, 5), (1, 1, 3), (3, 7, 1), (1, 197, 4), (2, 30, 22)],
                         ids=lambda s: "B{}T{}J{}".format(*s))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_public_api_matches_reference(backend, shape, dtype):
    from .test_low_precision import check_against_reference

    check_against_reference(backend, run_velocity3d, make_problem(*shape, seed=5), dtype,
                            ["loss", "grad_joints", "grad_target"])


@only("cpp")
def test_reductions(backend):
    p = make_problem(3, 5, 4, seed=4)
    v3 = vk.velocity_loss_3d(p["joints"], p["joints"].flip(1), p["weights"], reduction="none", backend=backend.name)
    torch.testing.assert_close(vk.velocity_loss_3d(p["joints"], p["joints"].flip(1), p["weights"], reduction="sum",
                                                   backend=backend.name), v3.sum())
