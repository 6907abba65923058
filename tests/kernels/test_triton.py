"""Triton backend against the pure-PyTorch reference.

On a machine without CUDA the kernels run in the Triton interpreter on CPU
(``TRITON_INTERPRET=1``, chosen in ``tests/conftest.py`` before anything imports
triton; repeated here for runs that bypass it): float32 and float64 against the
reference, float16 through the low-precision rule, tiny shapes, since every program
instance costs milliseconds there. On a GPU the same tests run compiled, bfloat16 and
the default (autotuned) configs are added, and the opcheck/torch.compile tests run.

Every comparison covers the forward outputs and every input gradient for one
random upstream gradient. Kernel-level tests call ``vmdm_kernels.triton`` directly,
some with a pinned ``block_t`` so that short sequences span many tiles and every
halo (tile seam) is exercised; the public-API tests go through the autograd ops.
"""

import math
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

pytest.importorskip("triton", reason="triton is not installed")

import vmdm_kernels as vk  # noqa: E402
import vmdm_kernels.triton as vt  # noqa: E402
from vmdm_kernels import ref  # noqa: E402

from .problems import make_problem  # noqa: E402
from .runners import assert_all_close as _assert_all_close  # noqa: E402
from .runners import assert_within_eager_error as _assert_within_eager_error  # noqa: E402

ON_GPU = torch.cuda.is_available() and not vt.INTERPRET
if not ON_GPU and not vt.INTERPRET:
    pytest.skip(
        "no CUDA device, and vmdm_kernels.triton was imported without TRITON_INTERPRET=1 "
        "(set it before triton is first imported to interpret the kernels on CPU)",
        allow_module_level=True,
    )

DEVICE = "cuda" if ON_GPU else "cpu"
MODES = ["none", "sample", "point"]
# The interpreter evaluates masked-off lanes too (0/0 in padding); numpy warns about it.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
gpu_only = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device (the Triton interpreter has no compiler path)")

# Tolerance relative to each tensor's largest magnitude, against a float64 reference.
RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
DTYPES = [torch.float32, torch.float64]


def on_device(p: dict, dtype=None) -> dict:
    return {k: (None if v is None else v.to(device=DEVICE, dtype=dtype or v.dtype)) for k, v in p.items()}


def _cpu(ts):
    return [t.detach().cpu() for t in ts]


def assert_all_close(actual, expected, rtol, names=None, floor=1e-12):
    """runners.assert_all_close after moving both sides to the CPU (references run there)."""
    _assert_all_close(_cpu(actual), _cpu(expected), rtol, names, floor=floor)


def assert_within_eager_error(kernel, eager, ref64, names=None, rel_floor=1e-6):
    _assert_within_eager_error(_cpu(kernel), _cpu(eager), _cpu(ref64), names, rel_floor=rel_floor)


def upstream(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64)


# Public-API runners (as tests/kernels/runners.py, but with the upstream gradient on the
# inputs' device so they also run on CUDA tensors): outputs, then every input gradient.
GRAD_KEYS = ("joints", "keypoints", "camera", "intrinsics")


def _leaves(p):
    return {k: (None if p[k] is None else p[k].detach().clone().requires_grad_()) for k in GRAD_KEYS}


def _up(shape, seed, like, grad_dtype):
    # grad_dtype rounds the upstream gradient the way a low-precision run sees it, so a
    # float64 reference of that run can use exactly the same values.
    return upstream(shape, seed).to(grad_dtype or like.dtype).to(like)


def run_reproj_vel(backend, p, depth_weight="sample", *, which="both", seed=1, grad_dtype=None):
    q = _leaves(p)
    args = (q["joints"], q["keypoints"], q["camera"], p["weights"], q["intrinsics"])
    kw = dict(depth_weight=depth_weight, reduction="none", backend=backend)
    if which == "both":
        outs = list(vk.reprojection_velocity_loss(*args, **kw))
    else:
        outs = [(vk.reprojection_loss if which == "pos" else vk.velocity_loss)(*args, **kw)]
    loss = sum((o * _up(o.shape, seed + n, o, grad_dtype)).sum() for n, o in enumerate(outs))
    loss.backward()
    return [o.detach() for o in outs] + [q[k].grad for k in GRAD_KEYS if q[k] is not None]


def run_velocity3d(backend, p, seed=1, grad_dtype=None):
    joints = p["joints"].detach().clone().requires_grad_()
    if p.get("target") is not None:
        target = p["target"].detach().clone().requires_grad_()
    else:
        target = (p["joints"].detach() + 0.05 * upstream(joints.shape, seed + 7).to(joints)).requires_grad_()
    out = vk.velocity_loss_3d(joints, target, p["weights"], reduction="none", backend=backend)
    (out * _up(out.shape, seed, out, grad_dtype)).sum().backward()
    return [out.detach(), joints.grad, target.grad]


def run_ray_targets(backend, p, seed=1, grad_dtype=None):
    q = _leaves(p)
    out = vk.ray_targets(q["joints"], q["keypoints"], q["camera"], q["intrinsics"], backend=backend)
    (out * _up(out.shape, seed, out, grad_dtype)).sum().backward()
    return [out.detach()] + [q[k].grad for k in GRAD_KEYS if q[k] is not None]


# --------------------------------------------------------------------------- reprojection + velocity, kernel level


def kernel_reproj(p, depth_weight, *, power=None, z_min=0.5, with_pos=True, with_vel=True, block_t=None, seed=1):
    """Triton forward + backward: [loss_pos, loss_vel, stats, grad_joints, grad_keypoints, grad_camera, (grad_intr)]."""
    power = ref.default_depth_power(depth_weight) if power is None else power
    mode = MODES.index(depth_weight)
    args = (p["joints"], p["keypoints"], p["camera"], p["weights"], p["intrinsics"])
    B = p["joints"].shape[0]
    lp, lv, st = vt.reproj_vel_fwd(*args, mode, power, z_min, with_pos, with_vel, block_t=block_t)
    gp = upstream(B, seed).to(lp)
    gv = upstream(B, seed + 1).to(lv)
    has_intr = p["intrinsics"] is not None
    grads = vt.reproj_vel_bwd(gp, gv, *args, st, mode, power, z_min, with_pos, with_vel, True, True, has_intr,
                              block_t=block_t)
    return [lp, lv, st] + [g for g in grads if g.shape != (0,)]


def reference_reproj(p, depth_weight, *, power=None, z_min=0.5, with_pos=True, with_vel=True, seed=1):
    """The same list from vmdm_kernels.ref in float64 with autograd (stats from their definition)."""
    power = ref.default_depth_power(depth_weight) if power is None else power
    q = {k: (None if v is None else v.detach().to("cpu", torch.float64)) for k, v in p.items()}
    leaves = [q[k].requires_grad_() for k in ("joints", "keypoints", "camera", "intrinsics") if q[k] is not None]
    lp, lv = ref.reproj_vel_loss(q["joints"], q["keypoints"], q["camera"], q["weights"], q["intrinsics"],
                                 depth_weight=depth_weight, depth_power=power, z_min=z_min)
    lp, lv = lp * with_pos, lv * with_vel
    B = lp.shape[0]
    grads = torch.autograd.grad((lp * upstream(B, seed)).sum() + (lv * upstream(B, seed + 1)).sum(), leaves)
    W = q["weights"]
    active = W != 0
    j0 = torch.where(active[..., None], q["joints"].detach(), torch.zeros_like(q["joints"]))
    _, z, in_front = ref.project(j0, q["camera"].detach(), None, z_min)
    from vmdm_kernels.ref.reproj_vel import depth_weights

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
    # T = 13 spans two forward and three backward tiles of the interpreter's BLOCK_T = 8.
    p = on_device(make_problem(2, 13, 5, per_frame=per_frame, intrinsics=intrinsics, seed=3), dtype)
    got = kernel_reproj(p, depth_weight)
    assert got[2].dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_all_close(got, reference_reproj(p, depth_weight), RTOL[dtype], REPROJ_NAMES)


@pytest.mark.parametrize("block_t", [4, 8, 16])
@pytest.mark.parametrize("depth_weight", MODES)
def test_reproj_vel_tile_seams(block_t, depth_weight):
    """Every BLOCK_T gives the reference result; with BLOCK_T = 4 each backward tile owns 2 frames."""
    p = on_device(make_problem(2, 11, 6, per_frame=True, intrinsics=True, seed=block_t), torch.float64)
    assert_all_close(kernel_reproj(p, depth_weight, block_t=block_t), reference_reproj(p, depth_weight),
                     RTOL[torch.float64], REPROJ_NAMES)


@pytest.mark.parametrize("with_pos,with_vel", [(True, False), (False, True)], ids=["pos_only", "vel_only"])
@pytest.mark.parametrize("depth_weight", MODES)
def test_reproj_vel_single_terms(with_pos, with_vel, depth_weight):
    p = on_device(make_problem(2, 9, 4, seed=4), torch.float64)
    kw = dict(with_pos=with_pos, with_vel=with_vel)
    got = kernel_reproj(p, depth_weight, block_t=4, **kw)
    assert_all_close(got, reference_reproj(p, depth_weight, **kw), RTOL[torch.float64], REPROJ_NAMES)
    assert (got[0 if with_vel else 1] == 0).all()


@pytest.mark.parametrize("power", [0.5, 3.0])
@pytest.mark.parametrize("depth_weight", ["sample", "point"])
def test_reproj_vel_general_depth_power(depth_weight, power):
    # Powers other than 0/1/2 take the exp2(p log2 z) path.
    p = on_device(make_problem(2, 6, 4, seed=11), torch.float32)
    assert_all_close(kernel_reproj(p, depth_weight, power=power), reference_reproj(p, depth_weight, power=power),
                     RTOL[torch.float32], REPROJ_NAMES)


@pytest.mark.parametrize("depth_weight", ["sample", "point"])
def test_reproj_vel_float64_scalars_keep_double_precision(depth_weight):
    # p = 1.3 and z_min = 0.1 are not float32 numbers: compiled Triton passes a plain Python
    # float as float32, so these reach the kernels as float64 (7.5e-8 relative error before).
    p = on_device(make_problem(2, 6, 4, seed=13), torch.float64)
    assert_all_close(kernel_reproj(p, depth_weight, power=1.3, z_min=0.1),
                     reference_reproj(p, depth_weight, power=1.3, z_min=0.1), RTOL[torch.float64], REPROJ_NAMES)


AWKWARD = [(1, 1, 1), (2, 1, 22), (3, 7, 1), (1, 197, 3), (2, 17, 22)]
SMALL_AWKWARD = [s for s in AWKWARD if s[1] < 100]  # the 197-frame clip costs ~30 programs per launch


@pytest.mark.parametrize(
    "shape,per_frame",
    [(s, False) for s in AWKWARD] + [(s, True) for s in SMALL_AWKWARD],
    ids=lambda v: "B{}T{}J{}".format(*v) if isinstance(v, tuple) else ("frame_cam" if v else "clip_cam"),
)
def test_reproj_vel_awkward_shapes(shape, per_frame):
    p = on_device(make_problem(*shape, per_frame=per_frame, seed=sum(shape)), torch.float32)
    got = kernel_reproj(p, "sample")
    assert_all_close(got, reference_reproj(p, "sample"), RTOL[torch.float32], REPROJ_NAMES)
    if shape[1] == 1:
        assert (got[1] == 0).all() and (got[2][:, 2] == 0).all(), "a single frame has no velocity pairs"


def test_reproj_vel_is_deterministic():
    p = on_device(make_problem(3, 20, 22, per_frame=False, seed=12), torch.float32)
    a = kernel_reproj(p, "point")
    b = kernel_reproj(p, "point")
    for name, x, y in zip(REPROJ_NAMES, a, b):
        assert torch.equal(x, y), f"{name} differs between two identical calls"


@pytest.mark.parametrize("shape", [(0, 3, 2), (2, 0, 3), (2, 3, 0)], ids=lambda s: "B{}T{}J{}".format(*s))
def test_empty_dimensions(shape):
    B, T, J = shape
    g = torch.Generator().manual_seed(0)
    X, K = torch.randn(B, T, J, 3, generator=g).to(DEVICE), torch.randn(B, T, J, 2, generator=g).to(DEVICE)
    C, W, I = torch.randn(B, 3, 4).to(DEVICE), torch.rand(B, T, J).to(DEVICE), torch.rand(B, 4).to(DEVICE)
    for mode in range(3):
        pos, vel, stats = vt.reproj_vel_fwd(X, K, C, W, I, mode, 1.0, 0.5, True, True)
        assert pos.shape == vel.shape == (B,) and stats.shape == (B, 3)
        assert (pos == 0).all() and (vel == 0).all() and (stats[:, 1:] == 0).all()
        # An empty clip has no mean depth: w_b = 0 in sample mode, 1 otherwise (as the C++ op).
        assert (stats[:, 0] == (0.0 if mode == 1 else 1.0)).all()
        grads = vt.reproj_vel_bwd(pos + 1, vel + 1, X, K, C, W, I, stats, mode, 1.0, 0.5, True, True,
                                  True, True, True)
        assert [x.shape for x in grads] == [X.shape, K.shape, C.shape, I.shape]
        assert all((x == 0).all() for x in grads)
    assert (vt.velocity3d_fwd(X, X, W) == 0).all()
    assert all((x == 0).all() for x in vt.velocity3d_bwd(torch.ones(B).to(DEVICE), X, X, W, True))
    assert vt.ray_targets_fwd(X, K, C, I).shape == X.shape
    assert all((x == 0).all() for x in vt.ray_targets_bwd(X, X, K, C, I, True, True, True))


# --------------------------------------------------------------------------- edge cases through the public API


def triton_and_reference(p, depth_weight="sample", **kw):
    got = run_reproj_vel("triton", on_device(p), depth_weight, **kw)
    exp = run_reproj_vel("reference", p, depth_weight, **kw)
    return got, exp


@pytest.mark.parametrize("depth_weight", MODES)
def test_all_zero_weights(depth_weight):
    p = make_problem(2, 10, 4, seed=1, dtype=torch.float32)
    p["weights"] = torch.zeros_like(p["weights"])
    for t in run_reproj_vel("triton", on_device(p), depth_weight) + run_velocity3d("triton", on_device(p)):
        assert torch.isfinite(t).all() and (t == 0).all()


def test_one_sample_without_weight_leaves_the_others_alone():
    p = make_problem(3, 10, 4, seed=2)
    p["weights"][1] = 0
    got, exp = triton_and_reference(p)
    assert_all_close(got, exp, RTOL[torch.float64])
    pos, vel, gj = got[:3]
    assert pos[1] == 0 and vel[1] == 0 and (gj[1] == 0).all() and (gj[0] != 0).any()


@pytest.mark.parametrize("depth_weight", MODES)
@pytest.mark.parametrize("depth", [0.0, 0.5, -2.0, 0.2])
def test_points_at_or_behind_the_camera(depth_weight, depth):
    p = make_problem(2, 10, 5, seed=3)
    p["weights"] = p["weights"].clamp_min(0.1)
    # Joint 2 of sample 0 at frames 3 and 7 (one in each forward tile) moved to the given camera depth.
    R, t = p["camera"][0, :, :3], p["camera"][0, :, 3]
    for f in (3, 7):
        p["joints"][0, f, 2] = R.T @ (torch.tensor([0.1, 0.0, depth], dtype=torch.float64) - t)
    got, exp = triton_and_reference(p, depth_weight)
    for x in got:
        assert torch.isfinite(x).all()
    assert_all_close(got, exp, RTOL[torch.float64])
    gj, gk = got[2], got[3]
    assert (gj[0, [3, 7], 2] == 0).all() and (gk[0, [3, 7], 2] == 0).all()
    assert (gj[0, 2, 2] != 0).any()


@pytest.mark.parametrize("depth_weight", MODES)
def test_nan_at_zero_weight_points_is_ignored(depth_weight):
    p = make_problem(2, 10, 5, seed=4, per_frame=True)
    p["weights"][0, 2, 1] = 0
    p["weights"][1, 7, :] = 0
    clean = run_reproj_vel("triton", on_device(p), depth_weight)
    p["keypoints"][0, 2, 1] = float("nan")
    p["joints"][0, 2, 1] = float("inf")
    p["joints"][1, 7, :] = float("nan")
    dirty = run_reproj_vel("triton", on_device(p), depth_weight)
    for x in dirty:
        assert torch.isfinite(x).all()
    assert_all_close(dirty, clean, 0.0, floor=0.0)
    assert_all_close(dirty, run_reproj_vel("reference", p, depth_weight), RTOL[torch.float64])


def test_nan_at_weighted_points_propagates():
    p = make_problem(2, 6, 5, seed=5)
    p["weights"][0, 2, 1] = 1.0
    p["joints"][0, 2, 1, 0] = float("nan")
    q = on_device(p)
    pos, vel = vk.reprojection_velocity_loss(q["joints"], q["keypoints"], q["camera"], q["weights"], q["intrinsics"],
                                             reduction="none", backend="triton")
    assert math.isnan(pos[0].item()) and math.isfinite(pos[1].item()) and math.isfinite(vel[1].item())


# --------------------------------------------------------------------------- 3D velocity


def kernel_velocity3d(p, block_t=None, seed=1):
    joints, weights = p["joints"], p["weights"]
    target = joints + 0.05 * upstream(joints.shape, seed + 7).to(joints)
    loss = vt.velocity3d_fwd(joints, target, weights, block_t=block_t)
    g = upstream(loss.shape, seed).to(loss)
    gj, gt = vt.velocity3d_bwd(g, joints, target, weights, True, block_t=block_t)
    return [loss, gj, gt], target


def reference_velocity3d(p, target, seed=1):
    j = p["joints"].detach().cpu().double().requires_grad_()
    t = target.detach().cpu().double().requires_grad_()
    loss = ref.velocity3d_loss(j, t, p["weights"].cpu().double())
    gj, gt = torch.autograd.grad((loss * upstream(loss.shape, seed)).sum(), (j, t))
    return [loss.detach(), gj, gt]


V3_NAMES = ["loss", "grad_joints", "grad_target"]


@pytest.mark.parametrize(
    "shape,dtype",
    [(s, torch.float32) for s in [(2, 13, 5)] + AWKWARD] + [(s, torch.float64) for s in [(2, 13, 5)] + SMALL_AWKWARD],
    ids=lambda v: "B{}T{}J{}".format(*v) if isinstance(v, tuple) else str(v),
)
def test_velocity3d_matches_reference(shape, dtype):
    p = on_device(make_problem(*shape, seed=5), dtype)
    got, target = kernel_velocity3d(p)
    assert_all_close(got, reference_velocity3d(p, target), RTOL[dtype], V3_NAMES)
    if shape[1] == 1:
        assert all((x == 0).all() for x in got), "a single frame has no velocity pairs"


@pytest.mark.parametrize("block_t", [4, 16])
def test_velocity3d_tile_seams_and_ignored_points(block_t):
    p = make_problem(2, 11, 6, seed=6)
    p["weights"][0, 4, :] = 0
    p["weights"][1, :, 2] = 0
    clean, target = kernel_velocity3d(on_device(p), block_t=block_t)
    p["joints"][0, 4, :] = float("nan")
    p["joints"][1, :, 2] = float("inf")
    q = on_device(p)
    dirty_loss = vt.velocity3d_fwd(q["joints"], target, q["weights"], block_t=block_t)
    dirty = vt.velocity3d_bwd(upstream(2, 1).to(dirty_loss), q["joints"], target, q["weights"], True, block_t=block_t)
    for x in (dirty_loss,) + dirty:
        assert torch.isfinite(x).all()
    assert_all_close([dirty_loss, *dirty], clean, 0.0, floor=0.0)
    p["joints"] = p["joints"].nan_to_num(0.0, 0.0, 0.0)
    assert_all_close(clean, reference_velocity3d(on_device(p), target), RTOL[torch.float64], V3_NAMES)


# --------------------------------------------------------------------------- ray targets


def kernel_ray(p, block_t=None, seed=1):
    args = (p["joints"], p["keypoints"], p["camera"], p["intrinsics"])
    out = vt.ray_targets_fwd(*args, block_t=block_t)
    g = upstream(out.shape, seed).to(out)
    grads = vt.ray_targets_bwd(g, *args, True, True, p["intrinsics"] is not None, block_t=block_t)
    return [out] + [x for x in grads if x.shape != (0,)]


def reference_ray(p, seed=1):
    q = {k: (None if v is None else v.detach().cpu().double()) for k, v in p.items()}
    leaves = [q[k].requires_grad_() for k in ("joints", "keypoints", "camera", "intrinsics") if q[k] is not None]
    out = ref.ray_targets(q["joints"], q["keypoints"], q["camera"], q["intrinsics"])
    grads = torch.autograd.grad((out * upstream(out.shape, seed)).sum(), leaves)
    return [out.detach()] + list(grads)


RAY_NAMES = ["targets", "grad_joints", "grad_keypoints", "grad_camera", "grad_intrinsics"]


@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ray_targets_matches_reference(per_frame, intrinsics, dtype):
    p = on_device(make_problem(2, 11, 5, per_frame=per_frame, intrinsics=intrinsics, seed=7), dtype)
    assert_all_close(kernel_ray(p), reference_ray(p), RTOL[dtype], RAY_NAMES)


@pytest.mark.parametrize("shape", AWKWARD, ids=lambda s: "B{}T{}J{}".format(*s))
def test_ray_targets_awkward_shapes(shape):
    p = on_device(make_problem(*shape, per_frame=True, seed=8), torch.float32)
    # BLOCK_T = 4 puts tile seams into the short clips; the long one has plenty at the default.
    block_t = 4 if shape[1] < 100 else None
    assert_all_close(kernel_ray(p, block_t=block_t), reference_ray(p), RTOL[torch.float32], RAY_NAMES)


# --------------------------------------------------------------------------- public API and registration


@pytest.mark.parametrize("which", ["both", "pos", "vel"])
@pytest.mark.parametrize("depth_weight", MODES)
def test_public_reprojection_losses_match_reference_backend(which, depth_weight):
    p = make_problem(2, 9, 5, seed=9, dtype=torch.float32)
    got = run_reproj_vel("triton", on_device(p), depth_weight, which=which)
    exp = run_reproj_vel("reference", p, depth_weight, which=which)
    assert_all_close(got, exp, RTOL[torch.float32])


def test_public_mean_reduction_backward():
    p = make_problem(3, 9, 5, seed=10, dtype=torch.float32)
    res = {}
    for backend, q in (("triton", on_device(p)), ("reference", p)):
        leaves = {k: q[k].detach().clone().requires_grad_() for k in ("joints", "keypoints", "camera", "intrinsics")}
        pos, vel = vk.reprojection_velocity_loss(leaves["joints"], leaves["keypoints"], leaves["camera"], q["weights"],
                                                 leaves["intrinsics"], backend=backend)
        (pos + 0.5 * vel).backward()
        res[backend] = [pos.detach(), vel.detach()] + [leaves[k].grad for k in leaves]
    assert_all_close(res["triton"], res["reference"], RTOL[torch.float32])


def test_public_velocity3d_and_ray_targets_match_reference_backend():
    p = make_problem(2, 9, 5, seed=11, dtype=torch.float32)
    assert_all_close(run_velocity3d("triton", on_device(p)), run_velocity3d("reference", p), RTOL[torch.float32])
    assert_all_close(run_ray_targets("triton", on_device(p)), run_ray_targets("reference", p), RTOL[torch.float32])


def test_gradcheck_float64_through_public_api():
    # depth_weight="none": the sample/point depth weights are detached by definition, so
    # finite differences would see a dependence the analytic gradient deliberately omits.
    p = on_device(make_problem(1, 3, 2, seed=12))
    j, k, c, i = (p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics"))

    def f(j, k, c, i):
        pos, vel = vk.reprojection_velocity_loss(j, k, c, p["weights"], i, depth_weight="none", reduction="sum",
                                                 backend="triton")
        return pos + vel, vk.ray_targets(j, k, c, i, backend="triton")

    assert torch.autograd.gradcheck(f, (j, k, c, i), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_triton_ops_registered_with_torch_library():
    import vmdm_kernels.triton.library

    vmdm_kernels.triton.library.register()  # torch.ops.vmdm_triton.*

    p = on_device(make_problem(2, 9, 4, seed=13))
    leaves = [p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics")]
    pos, vel, stats = torch.ops.vmdm_triton.reproj_vel_fwd(leaves[0], leaves[1], leaves[2], p["weights"], leaves[3],
                                                          2, 2.0, 0.5, True, True)
    direct = vt.reproj_vel_fwd(*(x.detach() for x in leaves[:3]), p["weights"], leaves[3].detach(), 2, 2.0, 0.5,
                               True, True)
    for a, b in zip((pos, vel, stats), direct):
        assert torch.equal(a.detach(), b)
    gp, gv = upstream(2, 1).to(pos), upstream(2, 2).to(vel)
    got = [pos.detach(), vel.detach()] + list(torch.autograd.grad((pos * gp).sum() + (vel * gv).sum(), leaves))
    exp = reference_reproj(p, "point")
    assert_all_close(got, [exp[i] for i in (0, 1, 3, 4, 5, 6)], RTOL[torch.float64])

    target = p["joints"] + 0.1
    v = torch.ops.vmdm_triton.velocity3d_fwd(leaves[0], target, p["weights"])
    assert torch.equal(v.detach(), vt.velocity3d_fwd(p["joints"], target, p["weights"]))
    r = torch.ops.vmdm_triton.ray_targets_fwd(leaves[0], leaves[1], leaves[2], leaves[3])
    grads = torch.autograd.grad(r.sum(), leaves)
    expected = vt.ray_targets_bwd(torch.ones_like(r), p["joints"], p["keypoints"], p["camera"], p["intrinsics"],
                                  True, True, True)
    for a, b in zip(grads, expected):
        assert torch.equal(a, b)


def test_bad_inputs_raise_clear_errors():
    p = on_device(make_problem(2, 4, 3, seed=14, dtype=torch.float32))
    with pytest.raises(ValueError, match="keypoints: expected shape"):
        vt.reproj_vel_fwd(p["joints"], p["keypoints"][:, :, :2], p["camera"], p["weights"], None, 1, 1.0, 0.5,
                          True, True)
    with pytest.raises(ValueError, match="weights: expected dtype"):
        vt.velocity3d_fwd(p["joints"], p["joints"], p["weights"].double())
    with pytest.raises(ValueError, match="depth_mode"):
        vt.reproj_vel_fwd(p["joints"], p["keypoints"], p["camera"], p["weights"], None, 3, 1.0, 0.5, True, True)
    with pytest.raises(ValueError, match="need_intrinsics"):
        vt.ray_targets_bwd(p["joints"], p["joints"], p["keypoints"], p["camera"], None, False, False, True)
    with pytest.raises(ValueError, match="block_t"):
        vt.velocity3d_bwd(p["weights"][:, 0, 0], p["joints"], p["joints"], p["weights"], False, block_t=2)
    if ON_GPU:
        with pytest.raises(ValueError, match="CUDA tensors"):
            vt.velocity3d_fwd(p["joints"].cpu(), p["joints"].cpu(), p["weights"].cpu())


# --------------------------------------------------------------------------- property test


def test_random_shapes_match_reference():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=8 if not ON_GPU else 40, deadline=None, derandomize=True)
    @hypothesis.given(
        B=st.integers(1, 3), T=st.integers(1, 16 if not ON_GPU else 64), J=st.integers(1, 24),
        mode=st.sampled_from(MODES),
        per_frame=st.booleans(), intrinsics=st.booleans(), block_t=st.sampled_from([4, 8, 16]),
        seed=st.integers(0, 2**16),
    )
    def check(B, T, J, mode, per_frame, intrinsics, block_t, seed):
        p = on_device(make_problem(B, T, J, per_frame=per_frame, intrinsics=intrinsics, seed=seed))
        assert_all_close(kernel_reproj(p, mode, block_t=block_t), reference_reproj(p, mode), 1e-8, REPROJ_NAMES)
        got, target = kernel_velocity3d(p, block_t=block_t)
        assert_all_close(got, reference_velocity3d(p, target), 1e-8, V3_NAMES)

    check()


# --------------------------------------------------------------------------- compiler path without a GPU


def test_kernels_compile_for_sm90_without_spills():
    """The interpreter never runs Triton's compiler; compile the largest variants for H100/H200
    (reprojection and the recover_from_ric decoder).

    Catches lowering failures (tl.gather of the time shift, constexpr branches the
    interpreter does not take) and register spills of the tile configs, on any machine.
    Runs in a subprocess because this process has the interpreter switched on.
    """
    import subprocess
    import sys

    import triton

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(cuobjdump):
        pytest.skip("triton's NVIDIA backend tools (ptxas/cuobjdump) are not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-m", "vmdm_kernels.triton.aot", "--quick"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    # The largest reprojection pair, its finaliser and the largest decoder pair.
    assert res.stdout.count("ok ") == 5, res.stdout
    assert res.stdout.count("recover_from_ric_") == 2, res.stdout


def test_spill_check_catches_an_oversized_tile():
    """The spill count the check above relies on is real: a 16 x 128 backward tile on 4 warps
    (a wide skeleton on a 32-joint config) spills, and the check reports it."""
    import subprocess
    import sys

    import triton

    if not os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")):
        pytest.skip("triton's NVIDIA backend tools (ptxas/cuobjdump) are not installed")
    code = (
        "import triton.language as tl\n"
        "from vmdm_kernels.triton import aot, reproj_vel as rv\n"
        "c = dict(ACC=tl.float32, BLOCK_T=16, BLOCK_J=128, PER_FRAME=True, HAS_INTR=True, MODE=2, POW_KIND=3,\n"
        "         WITH_POS=True, WITH_VEL=True, NEED_K=True, NEED_CAM=True, NEED_INTR=True)\n"
        "r = aot.compile_kernel(rv.reproj_vel_bwd_kernel, c, 'fp32', 4)\n"
        "print(r['spill'], aot.SPILL_BUDGET)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    spill, budget = map(int, res.stdout.split()[-2:])
    assert spill > budget


def test_wide_skeletons_get_tiles_within_the_register_budget():
    from vmdm_kernels.triton import _common, ray_targets, recover_from_ric, reproj_vel, velocity3d

    def per_thread(c, bj):
        return c.block_t * bj / (32 * c.num_warps)

    for launcher in (reproj_vel._fwd, reproj_vel._bwd, velocity3d._fwd, velocity3d._bwd, ray_targets._fwd,
                     ray_targets._bwd, recover_from_ric._fwd, recover_from_ric._bwd):
        assert launcher.configs_for(32) == launcher.configs_for(16) == launcher.configs
        most = max(per_thread(c, 32) for c in launcher.configs)
        for bj in (64, 128):
            wide = launcher.configs_for(bj)
            assert wide, bj
            for c in wide:
                # No more work per thread than the 32-joint candidates, and <= 8 warps (with 16,
                # the register file allows only 128 registers per thread).
                assert per_thread(c, bj) <= most and c.num_warps <= 8, (bj, c)
                assert c.block_t >= launcher.min_block_t
            assert launcher.deterministic_config(bj) in wide
    assert _common.GPU_CONFIGS == reproj_vel._fwd.configs


# --------------------------------------------------------------------------- GPU only


LOW = [torch.float16, torch.bfloat16]
# The interpreter's float32 -> bfloat16 cast truncates instead of rounding to nearest
# (the compiled cast rounds), which alone can exceed the rule; bfloat16 is GPU-only.
LOW_HERE = LOW if ON_GPU else [torch.float16]


@pytest.mark.parametrize("dtype", LOW_HERE, ids=str)
@pytest.mark.parametrize("depth_weight", MODES if ON_GPU else ["point"])
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_low_precision_within_twice_eager_error(dtype, depth_weight, per_frame):
    """flash-attention's rule: |kernel - ref64| <= 2 |eager - ref64| for every output and gradient.

    ref64 is the reference in float64 on the same rounded inputs and upstream gradients,
    so the rule compares arithmetic, not input rounding. The interpreter casts every
    load to float32 like the compiled kernel, so the rule is checked on CPU too (tiny shape).
    """
    shape = (4, 40, 22) if ON_GPU else (3, 12, 6)
    p64 = make_problem(*shape, per_frame=per_frame, seed=20)
    p64["target"] = p64["joints"] + 0.05 * upstream(p64["joints"].shape, 21)
    plow = on_device(p64, dtype)
    pref = {k: (None if v is None else v.double()) for k, v in plow.items()}
    for run, kw in ((run_reproj_vel, dict(depth_weight=depth_weight)), (run_velocity3d, {}), (run_ray_targets, {})):
        assert_within_eager_error(run("triton", plow, grad_dtype=dtype, **kw),
                                  run("reference", plow, grad_dtype=dtype, **kw),
                                  run("reference", pref, grad_dtype=dtype, **kw), rel_floor=1e-3)


def test_launcher_reuses_a_tuned_config_within_a_size_bucket(monkeypatch):
    """Eager launches tune once per (power-of-two B and T bucket, constants, dtypes) and
    run the chosen config pinned for every other size in that bucket."""
    import triton

    from vmdm_kernels.triton import _common

    launches = []

    class FakeKernel:  # stands in for the jitted kernel and for its autotuner
        arg_names = ["X_ptr", "B", "T", "J"]

        def __init__(self, name):
            self.name, self.best_config, self.cache = name, None, {}

        def __getitem__(self, grid):
            def launch(*args, **kw):
                if self.name == "tuned":
                    # Triton's own cache (exact sizes, no constants) never carries over to a new bucket.
                    assert not self.cache
                    self.cache[args[1:]] = "config"
                    self.best_config = triton.Config({"BLOCK_T": 16}, num_warps=8)
                    launches.append(("tuned", grid(dict(BLOCK_T=16))[0]))
                else:
                    launches.append(("pinned", grid[0], kw["BLOCK_T"], kw["num_warps"]))
            return launch

    monkeypatch.setattr(_common, "INTERPRET", True)  # build without triton.autotune, then swap in the fakes
    launcher = _common.Launcher(FakeKernel("raw"), halo=1, min_block_t=2)
    launcher.kernel, tuned = FakeKernel("raw"), FakeKernel("tuned")
    launcher.autotune, launcher.tuner = True, lambda block_j: tuned
    x32, x64 = torch.zeros(1), torch.zeros(1, dtype=torch.float64)

    def call(B, T, x=x32, block_j=32, block_t=None):
        launches.clear()
        launcher(B, T, (x, B, T, 22), dict(BLOCK_J=block_j), block_t=block_t)
        return launches[0]

    assert call(8, 100) == ("tuned", 8 * 7)  # cdiv(100, 16 - 1)
    assert call(8, 120) == ("pinned", 8 * 8, 16, 8)  # same buckets (8, 128): no new tuning
    assert call(7, 65) == ("pinned", 7 * 5, 16, 8)
    assert call(8, 130)[0] == "tuned"  # T bucket 256
    assert call(9, 120)[0] == "tuned"  # B bucket 16
    assert call(8, 120, block_j=64)[0] == "tuned"  # other compile-time constants
    assert call(8, 120, x=x64)[0] == "tuned"  # other dtypes
    assert call(8, 120, block_t=4) == ("pinned", 8 * 40, 4, 1)  # an explicit block_t wins
    assert len(launcher.chosen) == 5
    assert [_common.size_bucket(n) for n in (0, 1, 2, 3, 196, 1024)] == [1, 1, 2, 4, 256, 1024]

    # Deterministic algorithms: nothing is timed, every size runs one fixed tile.
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        fixed = launcher.deterministic_config()
        assert fixed.block_t == 16
        assert call(8, 500) == ("pinned", 8 * math.ceil(500 / 15), 16, fixed.num_warps)  # a bucket never tuned
        assert call(8, 100) == ("pinned", 8 * 7, 16, fixed.num_warps)  # not the bucket's tuned (16, 8)
    finally:
        torch.use_deterministic_algorithms(before)
    assert len(launcher.chosen) == 5


@gpu_only
@pytest.mark.parametrize("dtype", [torch.float32] + LOW, ids=str)
def test_autotuned_kernels_match_reference(dtype):
    # No pinned block_t: the autotuner picks among the GPU configs for the training shape;
    # the second length falls in the same size bucket and runs the chosen config pinned.
    tol = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype]
    for T in (196, 180):
        p = on_device(make_problem(8, T, 22, seed=21), dtype)
        assert_all_close(kernel_reproj(p, "sample"), reference_reproj(p, "sample"), tol, REPROJ_NAMES)
        got, target = kernel_velocity3d(p)
        assert_all_close(got, reference_velocity3d(p, target), tol, V3_NAMES)
        assert_all_close(kernel_ray(p), reference_ray(p), tol, RAY_NAMES)
    from vmdm_kernels.triton import reproj_vel

    assert reproj_vel._fwd.chosen and reproj_vel._bwd.chosen


@pytest.mark.skipif(not ON_GPU or torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device_while_another_is_current():
    # Triton launches on the current device; the launcher must switch to the tensors' GPU.
    p = on_device(make_problem(2, 40, 22, seed=18), torch.float32)
    p = {k: (None if v is None else v.to("cuda:1")) for k, v in p.items()}
    with torch.cuda.device(0):
        got = kernel_reproj(p, "point")
        rays = kernel_ray(p)
        torch.cuda.synchronize(1)
    assert all(x.device == torch.device("cuda:1") for x in got + rays)
    assert_all_close(got, reference_reproj(p, "point"), RTOL[torch.float32], REPROJ_NAMES)
    assert_all_close(rays, reference_ray(p), RTOL[torch.float32], RAY_NAMES)


@gpu_only
def test_torch_compile_fullgraph_with_triton_backend():
    class Loss(torch.nn.Module):
        def forward(self, joints, keypoints, camera, weights, intrinsics):
            pos, vel = vk.reprojection_velocity_loss(joints, keypoints, camera, weights, intrinsics, backend="triton")
            v3 = vk.velocity_loss_3d(joints, joints.detach().roll(1, dims=1), weights, backend="triton")
            return pos + 0.5 * vel + 0.1 * v3

    p = on_device(make_problem(4, 30, 22, seed=22, dtype=torch.float32))
    compiled = torch.compile(Loss(), fullgraph=True)
    res = []
    for fn in (Loss(), compiled):
        leaves = [p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics")]
        out = fn(leaves[0], leaves[1], leaves[2], p["weights"], leaves[3])
        out.backward()
        res.append([out.detach()] + [x.grad for x in leaves])
    assert_all_close(res[1], res[0], 1e-5)


@gpu_only
def test_opcheck_triton_ops():
    # Fake-tensor tracing of a triton_op needs the compiled path: under the interpreter
    # wrap_triton returns the raw kernel, which cannot run on fake tensors.
    import vmdm_kernels.triton.library

    vmdm_kernels.triton.library.register()

    p = on_device(make_problem(2, 9, 5, per_frame=True, seed=24, dtype=torch.float32))
    leaves = [p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics")]
    j, k, c, i = leaves
    torch.library.opcheck(torch.ops.vmdm_triton.reproj_vel_fwd.default,
                          (j, k, c, p["weights"], i, 1, 1.0, 0.5, True, True))
    torch.library.opcheck(torch.ops.vmdm_triton.velocity3d_fwd.default, (j, k.detach().sum(-1, keepdim=True)
                          .expand_as(j).contiguous().requires_grad_(), p["weights"]))
    torch.library.opcheck(torch.ops.vmdm_triton.ray_targets_fwd.default, (j, k, c, i))


@gpu_only
def test_torch_compile_fullgraph_over_triton_ops():
    import vmdm_kernels.triton.library

    vmdm_kernels.triton.library.register()

    def f(joints, keypoints, camera, weights, intrinsics):
        pos, vel, _ = torch.ops.vmdm_triton.reproj_vel_fwd(joints, keypoints, camera, weights, intrinsics,
                                                           1, 1.0, 0.5, True, True)
        rays = torch.ops.vmdm_triton.ray_targets_fwd(joints, keypoints, camera, intrinsics)
        return pos.sum() + vel.sum() + (rays - joints).square().mean()

    p = on_device(make_problem(4, 30, 22, per_frame=True, seed=23, dtype=torch.float32))
    res = []
    for fn in (f, torch.compile(f, fullgraph=True)):
        leaves = [p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics")]
        out = fn(leaves[0], leaves[1], leaves[2], p["weights"], leaves[3])
        out.backward()
        res.append([out.detach()] + [x.grad for x in leaves])
    assert_all_close(res[1], res[0], 1e-5)
