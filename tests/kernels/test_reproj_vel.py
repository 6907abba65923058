"""Reprojection + velocity losses (``reproj_vel``) on every compiled backend against the reference.

Kernel level (``backend.kernels.reproj_vel_fwd/_bwd``) against ``vmdm_kernels.ref`` in
float64 with autograd: float32/float64, every depth mode, per-clip and per-frame cameras,
with and without intrinsics, single terms, requested gradients only, general depth powers,
awkward and empty shapes, bitwise determinism. The CUDA kernels (and the C++ ones, which
take the same sizes) use sizes that exercise the CUDA tiling: T = 1, J = 1, J = 22, T = 197,
B = 1 (short tiles, many seams), B = 64 (long tiles), J = 300 (joint chunks); the Triton
kernels tiny shapes with pinned ``block_t`` so that short clips span many tiles (every
program instance costs milliseconds in the interpreter). Then the public API: edge
cases (zero weights, points at or behind the camera, NaN at ignored and at weighted
points), agreement with the reference backend over shapes, options and reductions.
Every comparison covers the forward outputs and every input gradient for one random
upstream gradient.
"""

import math

import pytest
import torch

import vmdm_kernels as vk

from .conftest import cases, only
from .problems import make_problem
from .runners import (
    MODES,
    REPROJ_NAMES,
    assert_all_close,
    assert_same,
    kernel_reproj,
    reference_reproj,
    run_reproj_vel,
)

# The interpreter evaluates masked-off lanes too (0/0 in padding); numpy warns about it.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# Tolerance relative to each tensor's largest magnitude, against a float64 reference.
RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
DTYPES = [torch.float32, torch.float64]
SHAPE_IDS = lambda s: "B{}T{}J{}".format(*s)  # noqa: E731


# --------------------------------------------------------------------------- kernel level


@pytest.mark.parametrize("depth_weight", MODES)
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_kernels_match_reference(backend, depth_weight, per_frame, intrinsics, dtype):
    # CUDA: B = 3, T = 50 gives several frame tiles per sample on any GPU, so every tile seam
    # is crossed. Triton: T = 13 spans two forward and three backward tiles of the
    # interpreter's BLOCK_T = 8.
    shape = backend.pick(cuda=(3, 50, 22), triton=(2, 13, 5))
    p = backend.to(make_problem(*shape, per_frame=per_frame, intrinsics=intrinsics, seed=3), dtype)
    got = kernel_reproj(backend, p, depth_weight)
    assert got[2].dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert all(x.device.type == backend.device for x in got)
    assert_all_close(got, reference_reproj(p, depth_weight), RTOL[dtype], REPROJ_NAMES)


@only("cpp", "cuda")
@pytest.mark.parametrize("B", [1, 64], ids=["B1", "B64"])
@pytest.mark.parametrize("depth_weight", MODES)
def test_training_length(backend, B, depth_weight):
    """T = 196/197: B = 1 gives short tiles (many seams, few blocks), B = 64 the long training tiles."""
    T = 197 if B == 1 else 196
    p = backend.to(make_problem(B, T, 22, per_frame=B == 1, seed=B), torch.float64)
    assert_all_close(kernel_reproj(backend, p, depth_weight), reference_reproj(p, depth_weight), RTOL[torch.float64],
                     REPROJ_NAMES)


@only("triton")
@pytest.mark.parametrize("block_t", [4, 8, 16])
@pytest.mark.parametrize("depth_weight", MODES)
def test_tile_seams(backend, block_t, depth_weight):
    """Every BLOCK_T gives the reference result; with BLOCK_T = 4 each backward tile owns 2 frames."""
    p = backend.to(make_problem(2, 11, 6, per_frame=True, intrinsics=True, seed=block_t), torch.float64)
    assert_all_close(kernel_reproj(backend, p, depth_weight, block_t=block_t), reference_reproj(p, depth_weight),
                     RTOL[torch.float64], REPROJ_NAMES)


@pytest.mark.parametrize("with_pos,with_vel", [(True, False), (False, True)], ids=["pos_only", "vel_only"])
@pytest.mark.parametrize("depth_weight", MODES)
def test_single_terms(backend, with_pos, with_vel, depth_weight):
    shape, per_frame, block_t = backend.pick(cuda=((2, 29, 7), True, None), triton=((2, 9, 4), False, 4))
    p = backend.to(make_problem(*shape, per_frame=per_frame, seed=4), torch.float64)
    kw = dict(with_pos=with_pos, with_vel=with_vel)
    got = kernel_reproj(backend, p, depth_weight, block_t=block_t, **kw)
    assert_all_close(got, reference_reproj(p, depth_weight, **kw), RTOL[torch.float64], REPROJ_NAMES)
    assert (got[0 if with_vel else 1] == 0).all()


@only("cpp", "cuda")
@pytest.mark.parametrize("need", [(False, False, False), (True, False, False), (False, True, False),
                                  (False, False, True)], ids=["joints", "keypoints", "camera", "intrinsics"])
def test_requested_gradients_only(backend, need):
    p = backend.to(make_problem(2, 23, 9, per_frame=True, seed=14), torch.float64)
    assert_all_close(kernel_reproj(backend, p, "point", need=need), reference_reproj(p, "point", need=need),
                     RTOL[torch.float64])


@pytest.mark.parametrize("backend,dtype", cases({"cpp": [(d,) for d in DTYPES], "cuda": [(d,) for d in DTYPES],
                                                 "triton": [(torch.float32,)]}), indirect=["backend"])
@pytest.mark.parametrize("power", [0.5, 3.0])
@pytest.mark.parametrize("depth_weight", ["sample", "point"])
def test_general_depth_power(backend, dtype, depth_weight, power):
    # Powers other than 0/1/2 take the pow() path (CUDA: an approximation under --use_fast_math
    # in float32; Triton: exp2(p log2 z)).
    shape = backend.pick(cuda=(2, 16, 6), triton=(2, 6, 4))
    p = backend.to(make_problem(*shape, seed=11), dtype)
    assert_all_close(kernel_reproj(backend, p, depth_weight, power=power),
                     reference_reproj(p, depth_weight, power=power), RTOL[dtype], REPROJ_NAMES)


@only("triton")
@pytest.mark.parametrize("depth_weight", ["sample", "point"])
def test_float64_scalars_keep_double_precision(backend, depth_weight):
    # p = 1.3 and z_min = 0.1 are not float32 numbers: compiled Triton passes a plain Python
    # float as float32, so these reach the kernels as float64 (7.5e-8 relative error before).
    p = backend.to(make_problem(2, 6, 4, seed=13), torch.float64)
    assert_all_close(kernel_reproj(backend, p, depth_weight, power=1.3, z_min=0.1),
                     reference_reproj(p, depth_weight, power=1.3, z_min=0.1), RTOL[torch.float64], REPROJ_NAMES)


AWKWARD = [(1, 1, 1), (2, 1, 22), (3, 7, 1), (1, 197, 3), (2, 17, 22), (2, 9, 300), (5, 2, 5)]
TRITON_AWKWARD = [(1, 1, 1), (2, 1, 22), (3, 7, 1), (1, 197, 3), (2, 17, 22)]
# The 197-frame clip costs ~30 programs per launch in the interpreter: per-clip camera only.
TRITON_SMALL_AWKWARD = [s for s in TRITON_AWKWARD if s[1] < 100]
_COMPILED_AWKWARD = [(s, f, torch.float64) for s in AWKWARD for f in (False, True)]


@pytest.mark.parametrize("backend,shape,per_frame,dtype", cases({
    "cpp": _COMPILED_AWKWARD, "cuda": _COMPILED_AWKWARD,
    "triton": [(s, False, torch.float32) for s in TRITON_AWKWARD] + [(s, True, torch.float32)
                                                                      for s in TRITON_SMALL_AWKWARD],
}), indirect=["backend"])
def test_awkward_shapes(backend, shape, per_frame, dtype):
    p = backend.to(make_problem(*shape, per_frame=per_frame, seed=sum(shape)), dtype)
    got = kernel_reproj(backend, p, "sample")
    assert_all_close(got, reference_reproj(p, "sample"), RTOL[dtype], REPROJ_NAMES)
    if shape[1] == 1:
        assert (got[1] == 0).all() and (got[2][:, 2] == 0).all(), "a single frame has no velocity pairs"


@pytest.mark.parametrize("backend,dtype,modes", cases({
    "cpp": [(d, tuple(MODES)) for d in DTYPES], "cuda": [(d, tuple(MODES)) for d in DTYPES],
    "triton": [(torch.float32, ("point",))],
}), indirect=["backend"])
def test_is_deterministic(backend, dtype, modes):
    shape, per_frame = backend.pick(cuda=((16, 196, 22), True), triton=((3, 20, 22), False))
    p = backend.to(make_problem(*shape, per_frame=per_frame, seed=12), dtype)
    for mode in modes:
        assert_same(kernel_reproj(backend, p, mode), kernel_reproj(backend, p, mode), REPROJ_NAMES)


EMPTY = [(0, 3, 2), (2, 0, 3), (2, 3, 0), (0, 0, 0)]
_COMPILED_EMPTY = [(s, f) for s in EMPTY for f in (False, True)]


@pytest.mark.parametrize("backend,shape,per_frame", cases({
    "cpp": _COMPILED_EMPTY, "cuda": _COMPILED_EMPTY, "triton": [(s, False) for s in EMPTY[:3]],
}), indirect=["backend"])
def test_empty_dimensions(backend, shape, per_frame):
    """Every op on empty inputs (here, where the reprojection's statistics are defined)."""
    kern, dev = backend.kernels, backend.device
    B, T, J = shape
    g = torch.Generator().manual_seed(0)
    X, K = torch.randn(B, T, J, 3, generator=g).to(dev), torch.randn(B, T, J, 2, generator=g).to(dev)
    cam = torch.randn(B, T, 3, 4) if per_frame else torch.randn(B, 3, 4)
    cam, W, I = cam.to(dev), torch.rand(B, T, J).to(dev), torch.rand(B, 4).to(dev)
    for mode in range(3):
        pos, vel, stats = kern.reproj_vel_fwd(X, K, cam, W, I, mode, 1.0, 0.5, True, True)
        assert pos.shape == vel.shape == (B,) and stats.shape == (B, 3)
        assert (pos == 0).all() and (vel == 0).all() and (stats[:, 1:] == 0).all()
        # An empty clip has no mean depth: w_b = 0 in sample mode, 1 otherwise (as the C++ CPU op).
        assert (stats[:, 0] == (0.0 if mode == 1 else 1.0)).all()
        grads = kern.reproj_vel_bwd(pos + 1, vel + 1, X, K, cam, W, I, stats, mode, 1.0, 0.5, True, True,
                                    True, True, True)
        assert [x.shape for x in grads] == [X.shape, K.shape, cam.shape, I.shape]
        assert all((x == 0).all() for x in grads)
    assert kern.velocity3d_fwd(X, X, W).shape == (B,) and (kern.velocity3d_fwd(X, X, W) == 0).all()
    gj, gt = kern.velocity3d_bwd(torch.ones(B, device=dev), X, X, W, True)
    assert gj.shape == gt.shape == X.shape and (gj == 0).all() and (gt == 0).all()
    assert kern.ray_targets_fwd(X, K, cam, I).shape == X.shape
    grads = kern.ray_targets_bwd(X, X, K, cam, I, True, True, True)
    assert [x.shape for x in grads] == [X.shape, K.shape, cam.shape, I.shape]
    assert all((x == 0).all() for x in grads)


# --------------------------------------------------------------------------- edge cases through the public API


def kernel_and_reference(backend, p, depth_weight="sample", **kw):
    got = run_reproj_vel(backend.name, backend.to(p), depth_weight, **kw)
    exp = run_reproj_vel("reference", p, depth_weight, **kw)
    return got, exp


@pytest.mark.parametrize("depth_weight", MODES)
def test_all_zero_weights(backend, depth_weight):
    from .runners import run_velocity3d

    p = make_problem(2, *backend.pick(cuda=(30, 22), triton=(10, 4)), seed=1, dtype=torch.float32)
    p["weights"] = torch.zeros_like(p["weights"])
    q = backend.to(p)
    for t in run_reproj_vel(backend.name, q, depth_weight) + run_velocity3d(backend.name, q):
        assert torch.isfinite(t).all() and (t == 0).all()


def test_one_sample_without_weight_leaves_the_others_alone(backend):
    p = make_problem(3, *backend.pick(cuda=(40, 22), triton=(10, 4)), seed=2)
    p["weights"][1] = 0
    got, exp = kernel_and_reference(backend, p)
    assert_all_close(got, exp, RTOL[torch.float64])
    pos, vel, gj = got[:3]
    assert pos[1] == 0 and vel[1] == 0 and (gj[1] == 0).all() and (gj[0] != 0).any()


@pytest.mark.parametrize("depth_weight", MODES)
@pytest.mark.parametrize("depth", [0.0, 0.5, -2.0, 0.2])
def test_points_at_or_behind_the_camera(backend, depth_weight, depth):
    # Joint 2 of sample 0 moved to the given camera depth at frames on both sides of tile
    # seams (Triton: one frame in each forward tile of the interpreter).
    (T, J), frames = backend.pick(cuda=((40, 22), (0, 3, 7, 8, 21, 22, 39)), triton=((10, 5), (3, 7)))
    p = make_problem(2, T, J, seed=3)
    p["weights"] = p["weights"].clamp_min(0.1)
    R, t = p["camera"][0, :, :3], p["camera"][0, :, 3]
    for f in frames:
        p["joints"][0, f, 2] = R.T @ (torch.tensor([0.1, 0.0, depth], dtype=torch.float64) - t)
    got, exp = kernel_and_reference(backend, p, depth_weight)
    for x in got:
        assert torch.isfinite(x).all()
    assert_all_close(got, exp, RTOL[torch.float64])
    gj, gk = got[2], got[3]
    assert (gj[0, list(frames), 2] == 0).all() and (gk[0, list(frames), 2] == 0).all()
    assert (gj[0, 2, 2] != 0).any()


@pytest.mark.parametrize("depth_weight", MODES)
def test_nan_at_zero_weight_points_is_ignored(backend, depth_weight):
    T, J = backend.pick(cuda=(40, 22), triton=(10, 5))
    p = make_problem(2, T, J, seed=4, per_frame=True)
    p["weights"][0, 2, 1] = 0
    p["weights"][1, 7, :] = 0
    p["weights"][1, 8:10, 3] = 0
    clean = run_reproj_vel(backend.name, backend.to(p), depth_weight)
    p["keypoints"][0, 2, 1] = float("nan")
    p["joints"][0, 2, 1] = float("inf")
    p["joints"][1, 7, :] = float("nan")
    p["keypoints"][1, 8:10, 3] = float("nan")
    dirty = run_reproj_vel(backend.name, backend.to(p), depth_weight)
    for x in dirty:
        assert torch.isfinite(x).all()
    assert_all_close(dirty, clean, 0.0, floor=0.0)
    assert_all_close(dirty, run_reproj_vel("reference", p, depth_weight), RTOL[torch.float64])


def test_nan_at_weighted_points_propagates(backend):
    p = make_problem(2, backend.pick(cuda=30, triton=6), 5, seed=5)
    p["weights"][0, 2, 1] = 1.0
    p["joints"][0, 2, 1, 0] = float("nan")
    q = backend.to(p)
    pos, vel = vk.reprojection_velocity_loss(q["joints"], q["keypoints"], q["camera"], q["weights"], q["intrinsics"],
                                             reduction="none", backend=backend.name)
    assert math.isnan(pos[0].item()) and math.isfinite(pos[1].item()) and math.isfinite(vel[1].item())


# --------------------------------------------------------------------------- public API against the reference backend


@pytest.mark.parametrize("which", ["both", "pos", "vel"])
@pytest.mark.parametrize("depth_weight", MODES)
def test_public_losses_match_reference_backend(backend, which, depth_weight):
    p = make_problem(2, *backend.pick(cuda=(33, 22), triton=(9, 5)), seed=9, dtype=torch.float32)
    got = run_reproj_vel(backend.name, backend.to(p), depth_weight, which=which)
    exp = run_reproj_vel("reference", p, depth_weight, which=which)
    assert_all_close(got, exp, RTOL[torch.float32])


def test_public_mean_reduction_backward(backend):
    p = make_problem(3, *backend.pick(cuda=(33, 22), triton=(9, 5)), seed=10, dtype=torch.float32)
    res = {}
    for name, q in ((backend.name, backend.to(p)), ("reference", p)):
        leaves = {k: q[k].detach().clone().requires_grad_() for k in ("joints", "keypoints", "camera", "intrinsics")}
        pos, vel = vk.reprojection_velocity_loss(leaves["joints"], leaves["keypoints"], leaves["camera"], q["weights"],
                                                 leaves["intrinsics"], backend=name)
        (pos + 0.5 * vel).backward()
        res[name] = [pos.detach(), vel.detach()] + [leaves[k].grad for k in leaves]
    assert_all_close(res[backend.name], res["reference"], RTOL[torch.float32])


SHAPES = [(2, 6, 5), (1, 1, 3), (3, 7, 1), (1, 197, 4), (2, 30, 22)]
NAMES = ["loss_pos", "loss_vel", "grad_joints", "grad_keypoints", "grad_camera", "grad_intrinsics"]


@only("cpp")
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("depth_weight", ["none", "sample", "point"])
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_public_api_matches_reference(backend, shape, depth_weight, per_frame, intrinsics, dtype):
    from .test_low_precision import check_against_reference

    p = make_problem(*shape, per_frame=per_frame, intrinsics=intrinsics, seed=sum(shape))
    check_against_reference(backend, lambda b, q: run_reproj_vel(b, q, depth_weight), p, dtype, NAMES)


@only("cpp")
@pytest.mark.parametrize("which", ["pos", "vel"])
@pytest.mark.parametrize("depth_weight", ["none", "sample", "point"])
def test_single_terms_match_fused(backend, which, depth_weight):
    p = make_problem(2, 9, 6, seed=3)
    got = run_reproj_vel(backend.name, p, depth_weight, which=which)
    ref = run_reproj_vel("reference", p, depth_weight, which=which)
    assert_all_close(got, ref, 1e-9)
    both = run_reproj_vel(backend.name, p, depth_weight)
    assert_all_close([got[0]], [both[0 if which == "pos" else 1]], 1e-12)


@only("cpp")
@pytest.mark.parametrize("power", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("depth_weight", ["sample", "point"])
def test_depth_power(backend, depth_weight, power):
    p = make_problem(2, 5, 4, seed=11)
    assert_all_close(run_reproj_vel(backend.name, p, depth_weight, depth_power=power),
                     run_reproj_vel("reference", p, depth_weight, depth_power=power), 1e-9)


@only("cpp")
def test_reductions(backend):
    p = make_problem(3, 5, 4, seed=4)
    args = (p["joints"], p["keypoints"], p["camera"], p["weights"], p["intrinsics"])
    per = vk.reprojection_loss(*args, reduction="none", backend=backend.name)
    assert per.shape == (3,)
    torch.testing.assert_close(vk.reprojection_loss(*args, reduction="mean", backend=backend.name), per.mean())
    torch.testing.assert_close(vk.reprojection_loss(*args, reduction="sum", backend=backend.name), per.sum())


@only("cpp")
def test_backward_is_deterministic(backend):
    p = make_problem(4, 50, 22, dtype=torch.float32, seed=9)
    a = run_reproj_vel(backend.name, p, "point")
    b = run_reproj_vel(backend.name, p, "point")
    for x, y in zip(a, b):
        assert torch.equal(x, y)
