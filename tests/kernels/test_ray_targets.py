"""Ray targets (``ray_targets``) on every compiled backend against the reference.

Kernel level against ``vmdm_kernels.ref`` in float64 with autograd: per-clip and
per-frame cameras, with and without intrinsics, awkward shapes (Triton: tile seams in
short clips), requested gradients only, bitwise determinism; then the public API
(reference agreement over shapes and dtypes, the joints-only backward). Each comparison
covers the targets and every input gradient for one random upstream gradient.
"""

import pytest
import torch

import vmdm_kernels as vk

from .conftest import cases, only
from .problems import clone_inputs, make_problem
from .runners import RAY_NAMES, assert_all_close, assert_same, kernel_ray, reference_ray, run_ray_targets

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_kernels_match_reference(backend, per_frame, intrinsics, dtype):
    shape = backend.pick(cuda=(3, 50, 22), triton=(2, 11, 5))
    p = backend.to(make_problem(*shape, per_frame=per_frame, intrinsics=intrinsics, seed=7), dtype)
    got = kernel_ray(backend, p)
    assert_all_close(got, reference_ray(p), RTOL[dtype], RAY_NAMES)
    assert_same(got, kernel_ray(backend, p), RAY_NAMES)


AWKWARD = [(1, 1, 1), (2, 1, 22), (3, 7, 1), (1, 197, 3), (2, 17, 22), (2, 9, 300), (5, 2, 5)]
TRITON_AWKWARD = [(1, 1, 1), (2, 1, 22), (3, 7, 1), (1, 197, 3), (2, 17, 22)]
_COMPILED = [(s, f, torch.float64, None) for s in AWKWARD for f in (False, True)]


# Triton: BLOCK_T = 4 puts tile seams into the short clips; the long one has plenty at the default.
@pytest.mark.parametrize("backend,shape,per_frame,dtype,block_t", cases({
    "cpp": _COMPILED, "cuda": _COMPILED,
    "triton": [(s, True, torch.float32, 4 if s[1] < 100 else None) for s in TRITON_AWKWARD],
}), indirect=["backend"])
def test_awkward_shapes(backend, shape, per_frame, dtype, block_t):
    p = backend.to(make_problem(*shape, per_frame=per_frame, seed=8), dtype)
    assert_all_close(kernel_ray(backend, p, block_t=block_t), reference_ray(p), RTOL[dtype], RAY_NAMES)


@only("cpp", "cuda")
@pytest.mark.parametrize("need", [(False, False, False), (True, False, False), (False, True, False),
                                  (False, False, True)], ids=["joints", "keypoints", "camera", "intrinsics"])
def test_requested_gradients_only(backend, need):
    p = backend.to(make_problem(2, 23, 9, per_frame=True, seed=15), torch.float64)
    assert_all_close(kernel_ray(backend, p, need=need), reference_ray(p, need=need), RTOL[torch.float64])


def test_public_api_matches_reference_backend(backend):
    p = make_problem(2, *backend.pick(cuda=(33, 22), triton=(9, 5)), seed=11, dtype=torch.float32)
    assert_all_close(run_ray_targets(backend.name, backend.to(p)), run_ray_targets("reference", p),
                     RTOL[torch.float32])


@only("cpp")
@pytest.mark.parametrize("shape", [(2, 6, 5), (1, 1, 3), (3, 7, 1), (1, 197, 4), (2, 30, 22)],
                         ids=lambda s: "B{}T{}J{}".format(*s))
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_public_api_matches_reference(backend, shape, per_frame, intrinsics, dtype):
    from .test_low_precision import check_against_reference

    p = make_problem(*shape, per_frame=per_frame, intrinsics=intrinsics, seed=7)
    check_against_reference(backend, run_ray_targets, p, dtype,
                            ["targets", "grad_joints", "grad_keypoints", "grad_camera", "grad_intrinsics"])


@only("cpp")
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_joint_only_backward(backend, per_frame, dtype):
    """With only the joints differentiable (training) the C++ backward takes a shorter
    formula: it must agree with the reference and, bitwise, with the full backward."""
    p = make_problem(3, 9, 22, per_frame=per_frame, intrinsics=True, seed=11)
    grads = {}
    upstream = None
    for name, needs in (("reference", ("joints",)), (backend.name, ("joints",)), (backend.name, ("joints", "keypoints"))):
        q = clone_inputs({k: v.to(dtype) if torch.is_tensor(v) else v for k, v in p.items()}, requires_grad=needs)
        out = vk.ray_targets(q["joints"], q["keypoints"], q["camera"], q["intrinsics"], backend=name)
        if upstream is None:
            upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        out.backward(upstream.to(dtype))
        grads[(name, needs)] = q["joints"].grad
        assert q["camera"].grad is None and (("keypoints" in needs) == (q["keypoints"].grad is not None))
    fast = grads[(backend.name, ("joints",))]
    assert torch.equal(fast, grads[(backend.name, ("joints", "keypoints"))])
    assert_all_close([fast], [grads[("reference", ("joints",))]], 1e-10 if dtype == torch.float64 else 1e-5)
