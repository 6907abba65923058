"""CUDA kernels against the reference and the C++ CPU kernels.

Runs only where ``vmdm_kernels.backends()["cuda"]`` is available (the extension was
built with CUDA and a device is visible); elsewhere the module is skipped with the
reason. Every comparison covers the forward outputs and every input gradient for
one random upstream gradient:

- kernel level through ``torch.ops.vmdm_C`` (the device-agnostic wrappers dispatch
  CUDA tensors to ``<op>_{fwd,bwd}_cuda``), against ``vmdm_kernels.ref`` in float64
  with autograd, float32/float64, every depth mode, per-clip and per-frame cameras,
  with and without intrinsics;
- against the C++ CPU kernels on the same inputs (float16/bfloat16 too);
- shapes that exercise the tiling: T = 1, J = 1, J = 22, T = 197, B = 1 (short
  tiles, many seams), B = 64 (long tiles), J = 300 (joint chunks), empty dims;
- all-zero weights, points at/behind the camera, NaN at zero-weight points;
- bitwise determinism, the public API (``backend="cuda"``), non-contiguous inputs,
  side streams, float64 gradcheck, the low-precision rule, torch.compile.

``VMDM_CUDA_TESTS_ON_CPU=1`` runs the same tests against the C++ CPU kernels
(backend ``cpp`` on CPU tensors) to check this file itself on a machine without a GPU.
"""

import math
import os

import pytest
import torch

import vmdm_kernels as vk
from vmdm_kernels import ref
from vmdm_kernels.ref.reproj_vel import depth_weights

from .problems import make_problem
from .runners import (
    assert_all_close,
    assert_within_eager_error,
    run_ray_targets,
    run_reproj_vel,
    run_velocity3d,
)

ON_CPU = os.environ.get("VMDM_CUDA_TESTS_ON_CPU") == "1"
BACKEND = "cpp" if ON_CPU else "cuda"
DEVICE = "cpu" if ON_CPU else "cuda"
_info = vk.backends()[BACKEND]
if not _info.available:
    pytest.skip(f"CUDA kernels unavailable: {_info}", allow_module_level=True)

import vmdm_kernels._C  # noqa: E402,F401  (registers torch.ops.vmdm_C)

C = torch.ops.vmdm_C
MODES = ["none", "sample", "point"]
# Tolerance relative to each tensor's largest magnitude, against a float64 reference.
RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
DTYPES = [torch.float32, torch.float64]
LOW = [torch.float16, torch.bfloat16]


def on_device(p: dict, dtype=None) -> dict:
    return {k: (None if v is None else v.to(device=DEVICE, dtype=dtype or v.dtype)) for k, v in p.items()}


def on_cpu(p: dict) -> dict:
    return {k: (None if v is None else v.cpu()) for k, v in p.items()}


def upstream(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def assert_same(a: list, b: list, names=None):
    """Bitwise equality (NaN equal to NaN)."""
    for i, (x, y) in enumerate(zip(a, b)):
        name = names[i] if names else f"output {i}"
        assert x.shape == y.shape and x.dtype == y.dtype, name
        same = (x == y) | (x.isnan() & y.isnan())
        assert bool(same.all()), f"{name}: {(~same).sum().item()} elements differ between two identical calls"


# --------------------------------------------------------------------------- reprojection + velocity, kernel level


def kernel_reproj(p, depth_weight, *, power=None, z_min=0.5, with_pos=True, with_vel=True, seed=1,
                  need=(True, True, True)):
    """Forward + backward through torch.ops.vmdm_C:
    [loss_pos, loss_vel, stats, grad_joints, (grad_keypoints), (grad_camera), (grad_intrinsics)]."""
    power = ref.default_depth_power(depth_weight) if power is None else power
    mode = MODES.index(depth_weight)
    args = (p["joints"], p["keypoints"], p["camera"], p["weights"], p["intrinsics"])
    B = p["joints"].shape[0]
    lp, lv, st = C.reproj_vel_fwd(*args, mode, power, z_min, with_pos, with_vel)
    gp = upstream(B, seed).to(lp.device, lp.dtype)
    gv = upstream(B, seed + 1).to(lv.device, lv.dtype)
    need_k, need_c, need_i = need
    need_i = need_i and p["intrinsics"] is not None
    grads = C.reproj_vel_bwd(gp, gv, *args, st, mode, power, z_min, with_pos, with_vel, need_k, need_c, need_i)
    flags = (True, need_k, need_c, need_i)
    for g, f in zip(grads, flags):
        if not f:
            assert g.shape == (0,), "an unrequested gradient must be an empty tensor"
    return [lp, lv, st] + [g for g, f in zip(grads, flags) if f]


def reference_reproj(p, depth_weight, *, power=None, z_min=0.5, with_pos=True, with_vel=True, seed=1,
                     need=(True, True, True)):
    """The same list from vmdm_kernels.ref in float64 with autograd (stats from their definition).
    The upstream gradient is rounded to the kernel's dtype first, as kernel_reproj passes it."""
    power = ref.default_depth_power(depth_weight) if power is None else power
    dtype = p["joints"].dtype
    q = {k: (None if v is None else v.detach().to("cpu", torch.float64)) for k, v in p.items()}
    keys = ["joints"] + [k for k, f in zip(("keypoints", "camera", "intrinsics"), need) if f]
    leaves = [q[k].requires_grad_() for k in keys if q[k] is not None]
    lp, lv = ref.reproj_vel_loss(q["joints"], q["keypoints"], q["camera"], q["weights"], q["intrinsics"],
                                 depth_weight=depth_weight, depth_power=power, z_min=z_min)
    lp, lv = lp * with_pos, lv * with_vel
    B = lp.shape[0]
    gp = upstream(B, seed).to(dtype).double()
    gv = upstream(B, seed + 1).to(dtype).double()
    grads = torch.autograd.grad((lp * gp).sum() + (lv * gv).sum(), leaves, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves)]
    W = q["weights"]
    active = W != 0
    j0 = torch.where(active[..., None], q["joints"].detach(), torch.zeros_like(q["joints"]))
    _, z, in_front = ref.project(j0, q["camera"].detach(), None, z_min)
    wb = depth_weights(z, active & in_front, q["intrinsics"], depth_weight, power)[0]
    pair = (W[:, 1:] * W[:, :-1]).sum(dim=(1, 2)) * with_vel
    stats = torch.stack((wb, W.sum(dim=(1, 2)), pair), dim=1)
    return [lp.detach(), lv.detach(), stats] + list(grads)


REPROJ_NAMES = ["loss_pos", "loss_vel", "stats", "grad_joints", "grad_keypoints", "grad_camera", "grad_intrinsics"]


@pytest.mark.parametrize("depth_weight", MODES)
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reproj_vel_matches_reference(depth_weight, per_frame, intrinsics, dtype):
    # B = 3, T = 50: several frame tiles per sample on any GPU, so every tile seam is crossed.
    p = on_device(make_problem(3, 50, 22, per_frame=per_frame, intrinsics=intrinsics, seed=3), dtype)
    got = kernel_reproj(p, depth_weight)
    assert got[2].dtype == acc_dtype(dtype)
    assert all(x.device.type == DEVICE for x in got)
    assert_all_close(got, reference_reproj(p, depth_weight), RTOL[dtype], REPROJ_NAMES)


@pytest.mark.parametrize("B", [1, 64], ids=["B1", "B64"])
@pytest.mark.parametrize("depth_weight", MODES)
def test_reproj_vel_training_length(B, depth_weight):
    """T = 196/197: B = 1 gives short tiles (many seams, few blocks), B = 64 the long training tiles."""
    T = 197 if B == 1 else 196
    p = on_device(make_problem(B, T, 22, per_frame=B == 1, seed=B), torch.float64)
    assert_all_close(kernel_reproj(p, depth_weight), reference_reproj(p, depth_weight), RTOL[torch.float64],
                     REPROJ_NAMES)


@pytest.mark.parametrize("with_pos,with_vel", [(True, False), (False, True)], ids=["pos_only", "vel_only"])
@pytest.mark.parametrize("depth_weight", MODES)
def test_reproj_vel_single_terms(with_pos, with_vel, depth_weight):
    p = on_device(make_problem(2, 29, 7, per_frame=True, seed=4), torch.float64)
    kw = dict(with_pos=with_pos, with_vel=with_vel)
    got = kernel_reproj(p, depth_weight, **kw)
    assert_all_close(got, reference_reproj(p, depth_weight, **kw), RTOL[torch.float64], REPROJ_NAMES)
    assert (got[0 if with_vel else 1] == 0).all()


@pytest.mark.parametrize("need", [(False, False, False), (True, False, False), (False, True, False),
                                  (False, False, True)], ids=["joints", "keypoints", "camera", "intrinsics"])
def test_reproj_vel_requested_gradients_only(need):
    p = on_device(make_problem(2, 23, 9, per_frame=True, seed=14), torch.float64)
    assert_all_close(kernel_reproj(p, "point", need=need), reference_reproj(p, "point", need=need),
                     RTOL[torch.float64])


@pytest.mark.parametrize("power", [0.5, 3.0])
@pytest.mark.parametrize("depth_weight", ["sample", "point"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reproj_vel_general_depth_power(depth_weight, power, dtype):
    # Powers other than 0/1/2 take the pow() path (an approximation under --use_fast_math in float32).
    p = on_device(make_problem(2, 16, 6, seed=11), dtype)
    assert_all_close(kernel_reproj(p, depth_weight, power=power), reference_reproj(p, depth_weight, power=power),
                     RTOL[dtype], REPROJ_NAMES)


AWKWARD = [(1, 1, 1), (2, 1, 22), (3, 7, 1), (1, 197, 3), (2, 17, 22), (2, 9, 300), (5, 2, 5)]


@pytest.mark.parametrize("shape", AWKWARD, ids=lambda s: "B{}T{}J{}".format(*s))
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_reproj_vel_awkward_shapes(shape, per_frame):
    p = on_device(make_problem(*shape, per_frame=per_frame, seed=sum(shape)), torch.float64)
    got = kernel_reproj(p, "sample")
    assert_all_close(got, reference_reproj(p, "sample"), RTOL[torch.float64], REPROJ_NAMES)
    if shape[1] == 1:
        assert (got[1] == 0).all() and (got[2][:, 2] == 0).all(), "a single frame has no velocity pairs"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reproj_vel_is_deterministic(dtype):
    p = on_device(make_problem(16, 196, 22, per_frame=True, seed=12), dtype)
    for mode in MODES:
        assert_same(kernel_reproj(p, mode), kernel_reproj(p, mode), REPROJ_NAMES)


@pytest.mark.parametrize("shape", [(0, 3, 2), (2, 0, 3), (2, 3, 0), (0, 0, 0)], ids=lambda s: "B{}T{}J{}".format(*s))
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_empty_dimensions(shape, per_frame):
    B, T, J = shape
    g = torch.Generator().manual_seed(0)
    X, K = torch.randn(B, T, J, 3, generator=g).to(DEVICE), torch.randn(B, T, J, 2, generator=g).to(DEVICE)
    cam = torch.randn(B, T, 3, 4) if per_frame else torch.randn(B, 3, 4)
    cam, W, I = cam.to(DEVICE), torch.rand(B, T, J).to(DEVICE), torch.rand(B, 4).to(DEVICE)
    for mode in range(3):
        pos, vel, stats = C.reproj_vel_fwd(X, K, cam, W, I, mode, 1.0, 0.5, True, True)
        assert pos.shape == vel.shape == (B,) and stats.shape == (B, 3)
        assert (pos == 0).all() and (vel == 0).all() and (stats[:, 1:] == 0).all()
        # An empty clip has no mean depth: w_b = 0 in sample mode, 1 otherwise (as the C++ CPU op).
        assert (stats[:, 0] == (0.0 if mode == 1 else 1.0)).all()
        grads = C.reproj_vel_bwd(pos + 1, vel + 1, X, K, cam, W, I, stats, mode, 1.0, 0.5, True, True,
                                 True, True, True)
        assert [x.shape for x in grads] == [X.shape, K.shape, cam.shape, I.shape]
        assert all((x == 0).all() for x in grads)
    assert C.velocity3d_fwd(X, X, W).shape == (B,) and (C.velocity3d_fwd(X, X, W) == 0).all()
    gj, gt = C.velocity3d_bwd(torch.ones(B, device=DEVICE), X, X, W, True)
    assert gj.shape == gt.shape == X.shape
    assert C.ray_targets_fwd(X, K, cam, I).shape == X.shape
    grads = C.ray_targets_bwd(X, X, K, cam, I, True, True, True)
    assert [x.shape for x in grads] == [X.shape, K.shape, cam.shape, I.shape]
    assert all((x == 0).all() for x in grads)


# --------------------------------------------------------------------------- CUDA vs C++ CPU


CPU_RTOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.mark.parametrize("depth_weight", MODES)
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("dtype", DTYPES + LOW, ids=str)
def test_matches_cpp_cpu_kernels(depth_weight, per_frame, dtype):
    """Same formulas (camera_math.h) on both devices: agreement to accumulation-order rounding
    (one unit in the last place of the output dtype for float16/bfloat16)."""
    if not vk.backends()["cpp"].available:
        pytest.skip(str(vk.backends()["cpp"]))
    p = make_problem(3, 41, 22, per_frame=per_frame, seed=30, dtype=dtype)
    p["weights"][0, 5] = 0
    p["joints"][0, 5, :3] = float("nan")
    names = REPROJ_NAMES
    assert_all_close([x.cpu() for x in kernel_reproj(on_device(p), depth_weight)], kernel_reproj(p, depth_weight),
                     CPU_RTOL[dtype], names)
    if depth_weight == "none":
        target = p["joints"].nan_to_num(0.0) + 0.1
        cuda_v = [C.velocity3d_fwd(*(x.to(DEVICE) for x in (p["joints"], target, p["weights"])))]
        cpu_v = [C.velocity3d_fwd(p["joints"], target, p["weights"])]
        g = upstream(3, 2).to(acc_dtype(dtype))
        cuda_v += C.velocity3d_bwd(g.to(DEVICE), *(x.to(DEVICE) for x in (p["joints"], target, p["weights"])), True)
        cpu_v += C.velocity3d_bwd(g, p["joints"], target, p["weights"], True)
        assert_all_close([x.cpu() for x in cuda_v], cpu_v, CPU_RTOL[dtype], V3_NAMES)
        q = make_problem(3, 41, 22, per_frame=per_frame, seed=31, dtype=dtype)
        args = (q["joints"], q["keypoints"], q["camera"], q["intrinsics"])
        G = upstream(q["joints"].shape, 3).to(dtype)
        cuda_r = [C.ray_targets_fwd(*(x.to(DEVICE) for x in args))]
        cuda_r += C.ray_targets_bwd(G.to(DEVICE), *(x.to(DEVICE) for x in args), True, True, True)
        cpu_r = [C.ray_targets_fwd(*args)] + list(C.ray_targets_bwd(G, *args, True, True, True))
        assert_all_close([x.cpu() for x in cuda_r], cpu_r, CPU_RTOL[dtype], RAY_NAMES)


@pytest.mark.skipif(ON_CPU, reason="the large grid is what is under test; on CPU it would only repeat the cpp kernel")
def test_large_batch_matches_cpp_cpu_kernels():
    """B = 1024, T = 196 (the benchmark's large workload): the biggest grids and the most
    tiles per launch, against the C++ kernels."""
    if not vk.backends()["cpp"].available:
        pytest.skip(str(vk.backends()["cpp"]))
    p = make_problem(1024, 196, 22, per_frame=False, seed=32, dtype=torch.float32)
    assert_all_close([x.cpu() for x in kernel_reproj(on_device(p), "sample")], kernel_reproj(p, "sample"),
                     CPU_RTOL[torch.float32], REPROJ_NAMES)


# --------------------------------------------------------------------------- edge cases through the public API


def cuda_and_reference(p, depth_weight="sample", **kw):
    got = run_reproj_vel(BACKEND, on_device(p), depth_weight, **kw)
    exp = run_reproj_vel("reference", p, depth_weight, **kw)
    return got, exp


@pytest.mark.parametrize("depth_weight", MODES)
def test_all_zero_weights(depth_weight):
    p = make_problem(2, 30, 22, seed=1, dtype=torch.float32)
    p["weights"] = torch.zeros_like(p["weights"])
    for t in run_reproj_vel(BACKEND, on_device(p), depth_weight) + run_velocity3d(BACKEND, on_device(p)):
        assert torch.isfinite(t).all() and (t == 0).all()


def test_one_sample_without_weight_leaves_the_others_alone():
    p = make_problem(3, 40, 22, seed=2)
    p["weights"][1] = 0
    got, exp = cuda_and_reference(p)
    assert_all_close(got, exp, RTOL[torch.float64])
    pos, vel, gj = got[:3]
    assert pos[1] == 0 and vel[1] == 0 and (gj[1] == 0).all() and (gj[0] != 0).any()


@pytest.mark.parametrize("depth_weight", MODES)
@pytest.mark.parametrize("depth", [0.0, 0.5, -2.0, 0.2])
def test_points_at_or_behind_the_camera(depth_weight, depth):
    p = make_problem(2, 40, 22, seed=3)
    p["weights"] = p["weights"].clamp_min(0.1)
    # Joint 2 of sample 0 moved to the given camera depth at frames on both sides of tile seams.
    R, t = p["camera"][0, :, :3], p["camera"][0, :, 3]
    frames = (0, 3, 7, 8, 21, 22, 39)
    for f in frames:
        p["joints"][0, f, 2] = R.T @ (torch.tensor([0.1, 0.0, depth], dtype=torch.float64) - t)
    got, exp = cuda_and_reference(p, depth_weight)
    for x in got:
        assert torch.isfinite(x).all()
    assert_all_close(got, exp, RTOL[torch.float64])
    gj, gk = got[2], got[3]
    assert (gj[0, list(frames), 2] == 0).all() and (gk[0, list(frames), 2] == 0).all()
    assert (gj[0, 2, 2] != 0).any()


@pytest.mark.parametrize("depth_weight", MODES)
def test_nan_at_zero_weight_points_is_ignored(depth_weight):
    p = make_problem(2, 40, 22, seed=4, per_frame=True)
    p["weights"][0, 2, 1] = 0
    p["weights"][1, 7, :] = 0
    p["weights"][1, 8:10, 3] = 0
    clean = run_reproj_vel(BACKEND, on_device(p), depth_weight)
    p["keypoints"][0, 2, 1] = float("nan")
    p["joints"][0, 2, 1] = float("inf")
    p["joints"][1, 7, :] = float("nan")
    p["keypoints"][1, 8:10, 3] = float("nan")
    dirty = run_reproj_vel(BACKEND, on_device(p), depth_weight)
    for x in dirty:
        assert torch.isfinite(x).all()
    assert_all_close(dirty, clean, 0.0, floor=0.0)
    assert_all_close(dirty, run_reproj_vel("reference", p, depth_weight), RTOL[torch.float64])


def test_nan_at_weighted_points_propagates():
    p = make_problem(2, 30, 5, seed=5)
    p["weights"][0, 2, 1] = 1.0
    p["joints"][0, 2, 1, 0] = float("nan")
    q = on_device(p)
    pos, vel = vk.reprojection_velocity_loss(q["joints"], q["keypoints"], q["camera"], q["weights"], q["intrinsics"],
                                             reduction="none", backend=BACKEND)
    assert math.isnan(pos[0].item()) and math.isfinite(pos[1].item()) and math.isfinite(vel[1].item())


# --------------------------------------------------------------------------- 3D velocity


def kernel_velocity3d(p, seed=1, need_target=True):
    joints, weights = p["joints"], p["weights"]
    target = joints + 0.05 * upstream(joints.shape, seed + 7).to(joints)
    loss = C.velocity3d_fwd(joints, target, weights)
    g = upstream(loss.shape, seed).to(loss)
    gj, gt = C.velocity3d_bwd(g, joints, target, weights, need_target)
    if not need_target:
        assert gt.shape == (0,)
        return [loss, gj], target
    return [loss, gj, gt], target


def reference_velocity3d(p, target, seed=1):
    j = p["joints"].detach().cpu().double().requires_grad_()
    t = target.detach().cpu().double().requires_grad_()
    loss = ref.velocity3d_loss(j, t, p["weights"].cpu().double())
    g = upstream(loss.shape, seed).to(p["joints"].dtype).double()
    gj, gt = torch.autograd.grad((loss * g).sum(), (j, t))
    return [loss.detach(), gj, gt]


V3_NAMES = ["loss", "grad_joints", "grad_target"]


@pytest.mark.parametrize("shape", [(3, 50, 22), (64, 196, 22)] + AWKWARD, ids=lambda s: "B{}T{}J{}".format(*s))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_velocity3d_matches_reference(shape, dtype):
    p = on_device(make_problem(*shape, seed=5), dtype)
    got, target = kernel_velocity3d(p)
    assert_all_close(got, reference_velocity3d(p, target), RTOL[dtype], V3_NAMES)
    if shape[1] == 1:
        assert all((x == 0).all() for x in got), "a single frame has no velocity pairs"
    got2, _ = kernel_velocity3d(p)
    assert_same(got, got2, V3_NAMES)
    got3, _ = kernel_velocity3d(p, need_target=False)
    assert_same(got[:2], got3, V3_NAMES)


def test_velocity3d_ignored_points():
    p = make_problem(2, 41, 22, seed=6)
    p["weights"][0, 4, :] = 0
    p["weights"][1, :, 2] = 0
    p["weights"][1, 20:24, 5] = 0
    clean, target = kernel_velocity3d(on_device(p))
    p["joints"][0, 4, :] = float("nan")
    p["joints"][1, :, 2] = float("inf")
    p["joints"][1, 20:24, 5] = float("nan")
    q = on_device(p)
    dirty_loss = C.velocity3d_fwd(q["joints"], target, q["weights"])
    dirty = C.velocity3d_bwd(upstream(2, 1).to(dirty_loss), q["joints"], target, q["weights"], True)
    for x in (dirty_loss,) + tuple(dirty):
        assert torch.isfinite(x).all()
    assert_all_close([dirty_loss, *dirty], clean, 0.0, floor=0.0)
    p["joints"] = p["joints"].nan_to_num(0.0, 0.0, 0.0)
    assert_all_close(clean, reference_velocity3d(on_device(p), target), RTOL[torch.float64], V3_NAMES)


# --------------------------------------------------------------------------- ray targets


def kernel_ray(p, seed=1, need=(True, True, True)):
    args = (p["joints"], p["keypoints"], p["camera"], p["intrinsics"])
    out = C.ray_targets_fwd(*args)
    g = upstream(out.shape, seed).to(out)
    need_k, need_c, need_i = need
    need_i = need_i and p["intrinsics"] is not None
    grads = C.ray_targets_bwd(g, *args, need_k, need_c, need_i)
    flags = (True, need_k, need_c, need_i)
    return [out] + [x for x, f in zip(grads, flags) if f]


def reference_ray(p, seed=1, need=(True, True, True)):
    q = {k: (None if v is None else v.detach().cpu().double()) for k, v in p.items()}
    keys = ["joints"] + [k for k, f in zip(("keypoints", "camera", "intrinsics"), need) if f]
    leaves = [q[k].requires_grad_() for k in keys if q[k] is not None]
    out = ref.ray_targets(q["joints"], q["keypoints"], q["camera"], q["intrinsics"])
    g = upstream(out.shape, seed).to(p["joints"].dtype).double()
    grads = torch.autograd.grad((out * g).sum(), leaves)
    return [out.detach()] + list(grads)


RAY_NAMES = ["targets", "grad_joints", "grad_keypoints", "grad_camera", "grad_intrinsics"]


@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ray_targets_matches_reference(per_frame, intrinsics, dtype):
    p = on_device(make_problem(3, 50, 22, per_frame=per_frame, intrinsics=intrinsics, seed=7), dtype)
    got = kernel_ray(p)
    assert_all_close(got, reference_ray(p), RTOL[dtype], RAY_NAMES)
    assert_same(got, kernel_ray(p), RAY_NAMES)


@pytest.mark.parametrize("shape", AWKWARD, ids=lambda s: "B{}T{}J{}".format(*s))
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_ray_targets_awkward_shapes(shape, per_frame):
    p = on_device(make_problem(*shape, per_frame=per_frame, seed=8), torch.float64)
    assert_all_close(kernel_ray(p), reference_ray(p), RTOL[torch.float64], RAY_NAMES)


@pytest.mark.parametrize("need", [(False, False, False), (True, False, False), (False, True, False),
                                  (False, False, True)], ids=["joints", "keypoints", "camera", "intrinsics"])
def test_ray_targets_requested_gradients_only(need):
    p = on_device(make_problem(2, 23, 9, per_frame=True, seed=15), torch.float64)
    assert_all_close(kernel_ray(p, need=need), reference_ray(p, need=need), RTOL[torch.float64])


# --------------------------------------------------------------------------- public API


@pytest.mark.parametrize("which", ["both", "pos", "vel"])
@pytest.mark.parametrize("depth_weight", MODES)
def test_public_reprojection_losses_match_reference_backend(which, depth_weight):
    p = make_problem(2, 33, 22, seed=9, dtype=torch.float32)
    got = run_reproj_vel(BACKEND, on_device(p), depth_weight, which=which)
    exp = run_reproj_vel("reference", p, depth_weight, which=which)
    assert_all_close(got, exp, RTOL[torch.float32])


def test_public_mean_reduction_backward():
    p = make_problem(3, 33, 22, seed=10, dtype=torch.float32)
    res = {}
    for backend, q in ((BACKEND, on_device(p)), ("reference", p)):
        leaves = {k: q[k].detach().clone().requires_grad_() for k in ("joints", "keypoints", "camera", "intrinsics")}
        pos, vel = vk.reprojection_velocity_loss(leaves["joints"], leaves["keypoints"], leaves["camera"], q["weights"],
                                                 leaves["intrinsics"], backend=backend)
        (pos + 0.5 * vel).backward()
        res[backend] = [pos.detach(), vel.detach()] + [leaves[k].grad for k in leaves]
    assert_all_close(res[BACKEND], res["reference"], RTOL[torch.float32])


def test_public_velocity3d_and_ray_targets_match_reference_backend():
    p = make_problem(2, 33, 22, seed=11, dtype=torch.float32)
    assert_all_close(run_velocity3d(BACKEND, on_device(p)), run_velocity3d("reference", p), RTOL[torch.float32])
    assert_all_close(run_ray_targets(BACKEND, on_device(p)), run_ray_targets("reference", p), RTOL[torch.float32])


def test_public_api_non_contiguous_inputs():
    p = make_problem(2, 19, 22, seed=16)
    B, T, J, _ = p["joints"].shape
    q = on_device(p)
    views = dict(
        joints=q["joints"].transpose(1, 2).contiguous().transpose(1, 2),
        keypoints=q["keypoints"].permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0),
        camera=q["camera"][:, None].expand(B, T, 3, 4),
        weights=q["weights"][:, :1].expand(B, T, J),
        intrinsics=q["intrinsics"].t().contiguous().t(),
    )
    assert not views["joints"].is_contiguous() and not views["camera"].is_contiguous()
    dense = {k: v.contiguous() for k, v in views.items()}
    assert_all_close(run_reproj_vel(BACKEND, views, "point"), run_reproj_vel("reference", on_cpu(dense), "point"),
                     RTOL[torch.float64])
    assert_all_close(run_ray_targets(BACKEND, views), run_ray_targets("reference", on_cpu(dense)), RTOL[torch.float64])


def test_gradcheck_float64_through_public_api():
    # depth_weight="none": the sample/point depth weights are detached by definition, so
    # finite differences would see a dependence the analytic gradient deliberately omits.
    for per_frame in (False, True):
        p = on_device(make_problem(2, 3, 2, per_frame=per_frame, seed=12))
        j, k, c, i = (p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics"))
        target = p["joints"].clone().requires_grad_()

        def f(j, k, c, i, target):
            pos, vel = vk.reprojection_velocity_loss(j, k, c, p["weights"], i, depth_weight="none", reduction="sum",
                                                     backend=BACKEND)
            v3 = vk.velocity_loss_3d(j, target, p["weights"], reduction="sum", backend=BACKEND)
            return pos + vel, v3, vk.ray_targets(j, k, c, i, backend=BACKEND)

        assert torch.autograd.gradcheck(f, (j, k, c, i, target), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(ON_CPU, reason="streams and devices are CUDA-only")
def test_runs_on_the_current_stream():
    p = on_device(make_problem(8, 196, 22, seed=17, dtype=torch.float32))
    expected = kernel_reproj(p, "sample")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        # Inputs produced on the side stream just before the kernels read them.
        q = {k: (None if v is None else v * 1.0) for k, v in p.items()}
        got = kernel_reproj(q, "sample")
    side.synchronize()
    assert_same(got, expected, REPROJ_NAMES)


@pytest.mark.skipif(ON_CPU or torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    p = {k: (None if v is None else v.to("cuda:1")) for k, v in make_problem(2, 40, 22, seed=18).items()}
    got = kernel_reproj(p, "point")
    assert all(x.device == torch.device("cuda:1") for x in got)
    assert_all_close(got, reference_reproj(p, "point"), RTOL[torch.float64], REPROJ_NAMES)


@pytest.mark.skipif(ON_CPU, reason="checked for the C++ backend in test_library.py")
def test_torch_compile_fullgraph_with_cuda_backend():
    class Loss(torch.nn.Module):
        def forward(self, joints, keypoints, camera, weights, intrinsics):
            pos, vel = vk.reprojection_velocity_loss(joints, keypoints, camera, weights, intrinsics, backend="cuda")
            v3 = vk.velocity_loss_3d(joints, joints.detach().roll(1, dims=1), weights, backend="cuda")
            rays = vk.ray_targets(joints.detach(), keypoints, camera, intrinsics, backend="cuda")
            return pos + 0.5 * vel + 0.1 * v3 + ((joints - rays) ** 2).mean()

    torch._dynamo.reset()
    p = on_device(make_problem(4, 30, 22, seed=22, dtype=torch.float32))
    res = []
    for fn in (Loss(), torch.compile(Loss(), fullgraph=True)):
        leaves = [p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics")]
        out = fn(leaves[0], leaves[1], leaves[2], p["weights"], leaves[3])
        out.backward()
        res.append([out.detach()] + [x.grad for x in leaves])
    assert_all_close(res[1], res[0], 1e-5)


@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_opcheck_custom_ops_with_cuda_backend(per_frame):
    p = on_device(make_problem(2, 9, 5, per_frame=per_frame, seed=24, dtype=torch.float32))
    j, k, c, i = (p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics"))
    args = (j, k, c, p["weights"], i, 2, 2.0, 0.5, True, True, BACKEND)
    torch.library.opcheck(torch.ops.vmdm.reproj_vel_fwd.default, args)
    pos, vel, stats = torch.ops.vmdm.reproj_vel_fwd(*args)
    torch.library.opcheck(torch.ops.vmdm.reproj_vel_bwd.default,
                          (torch.randn_like(pos), torch.randn_like(vel), j.detach(), k.detach(), c.detach(),
                           p["weights"], i.detach(), stats.detach(), 2, 2.0, 0.5, True, True, True, True, True, BACKEND))
    target = (p["joints"] + 0.1).requires_grad_()
    torch.library.opcheck(torch.ops.vmdm.velocity3d_fwd.default, (j, target, p["weights"], BACKEND))
    loss = torch.ops.vmdm.velocity3d_fwd(j, target, p["weights"], BACKEND)
    torch.library.opcheck(torch.ops.vmdm.velocity3d_bwd.default,
                          (torch.randn_like(loss), j.detach(), target.detach(), p["weights"], True, BACKEND))
    torch.library.opcheck(torch.ops.vmdm.ray_targets_fwd.default, (j, k, c, i, BACKEND))
    out = torch.ops.vmdm.ray_targets_fwd(j, k, c, i, BACKEND)
    torch.library.opcheck(torch.ops.vmdm.ray_targets_bwd.default,
                          (torch.randn_like(out), j.detach(), k.detach(), c.detach(), i.detach(), True, True, True,
                           BACKEND))


# --------------------------------------------------------------------------- low precision


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("depth_weight", MODES)
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_low_precision_within_twice_eager_error(dtype, depth_weight, per_frame):
    """flash-attention's rule: |kernel - ref64| <= 2 |eager - ref64| (+ a small floor) for each
    output and gradient; eager is the reference in the same low-precision dtype on the same device."""
    p64 = make_problem(4, 40, 22, per_frame=per_frame, seed=20)
    ref64 = run_reproj_vel("reference", p64, depth_weight)
    plow = on_device(p64, dtype)
    assert_within_eager_error(run_reproj_vel(BACKEND, plow, depth_weight),
                              run_reproj_vel("reference", plow, depth_weight), ref64, REPROJ_NAMES[:2] +
                              REPROJ_NAMES[3:], rel_floor=1e-3)
    assert_within_eager_error(run_velocity3d(BACKEND, plow), run_velocity3d("reference", plow),
                              run_velocity3d("reference", p64), V3_NAMES, rel_floor=1e-3)
    assert_within_eager_error(run_ray_targets(BACKEND, plow), run_ray_targets("reference", plow),
                              run_ray_targets("reference", p64), RAY_NAMES, rel_floor=1e-3)
