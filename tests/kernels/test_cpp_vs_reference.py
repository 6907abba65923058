"""C++ CPU kernels against the reference: forward and every gradient, one random
upstream gradient, float32 and float64, over awkward shapes and camera layouts."""

import pytest
import torch

import vmdm_kernels as vk

from .problems import clone_inputs, make_problem
from .runners import assert_all_close, assert_within_eager_error, run_ray_targets, run_reproj_vel, run_velocity3d

pytestmark = pytest.mark.skipif(not vk.backends()["cpp"].available, reason=str(vk.backends()["cpp"]))

SHAPES = [(2, 6, 5), (1, 1, 3), (3, 7, 1), (1, 197, 4), (2, 30, 22)]


def check_against_reference(run, p64, dtype, names=None):
    """float64: tight agreement. Lower precision: error within 2x eager PyTorch's in that dtype."""
    ref64 = run("reference", p64)
    if dtype == torch.float64:
        assert_all_close(run("cpp", p64), ref64, 1e-9, names)
        return
    plow = {k: (v.to(dtype) if v is not None else None) for k, v in p64.items()}
    assert_within_eager_error(run("cpp", plow), run("reference", plow), ref64, names)
NAMES = ["loss_pos", "loss_vel", "grad_joints", "grad_keypoints", "grad_camera", "grad_intrinsics"]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}T{}J{}".format(*s))
@pytest.mark.parametrize("depth_weight", ["none", "sample", "point"])
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_reproj_vel_matches_reference(shape, depth_weight, per_frame, intrinsics, dtype):
    p = make_problem(*shape, per_frame=per_frame, intrinsics=intrinsics, seed=sum(shape))
    check_against_reference(lambda b, q: run_reproj_vel(b, q, depth_weight), p, dtype, NAMES)


@pytest.mark.parametrize("which", ["pos", "vel"])
@pytest.mark.parametrize("depth_weight", ["none", "sample", "point"])
def test_single_terms_match_fused(which, depth_weight):
    p = make_problem(2, 9, 6, seed=3)
    got = run_reproj_vel("cpp", p, depth_weight, which=which)
    ref = run_reproj_vel("reference", p, depth_weight, which=which)
    assert_all_close(got, ref, 1e-9)
    both = run_reproj_vel("cpp", p, depth_weight)
    assert_all_close([got[0]], [both[0 if which == "pos" else 1]], 1e-12)


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("depth_weight", ["sample", "point"])
def test_depth_power(depth_weight, power):
    p = make_problem(2, 5, 4, seed=11)
    assert_all_close(run_reproj_vel("cpp", p, depth_weight, depth_power=power),
                     run_reproj_vel("reference", p, depth_weight, depth_power=power), 1e-9)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}T{}J{}".format(*s))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_velocity3d_matches_reference(shape, dtype):
    check_against_reference(run_velocity3d, make_problem(*shape, seed=5), dtype, ["loss", "grad_joints", "grad_target"])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}T{}J{}".format(*s))
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_ray_targets_matches_reference(shape, per_frame, intrinsics, dtype):
    p = make_problem(*shape, per_frame=per_frame, intrinsics=intrinsics, seed=7)
    check_against_reference(run_ray_targets, p, dtype,
                            ["targets", "grad_joints", "grad_keypoints", "grad_camera", "grad_intrinsics"])


@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_ray_targets_joint_only_backward(per_frame, dtype):
    """With only the joints differentiable (training) the C++ backward takes a shorter
    formula: it must agree with the reference and, bitwise, with the full backward."""
    p = make_problem(3, 9, 22, per_frame=per_frame, intrinsics=True, seed=11)
    grads = {}
    upstream = None
    for backend, needs in (("reference", ("joints",)), ("cpp", ("joints",)), ("cpp", ("joints", "keypoints"))):
        q = clone_inputs({k: v.to(dtype) if torch.is_tensor(v) else v for k, v in p.items()}, requires_grad=needs)
        out = vk.ray_targets(q["joints"], q["keypoints"], q["camera"], q["intrinsics"], backend=backend)
        if upstream is None:
            upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        out.backward(upstream.to(dtype))
        grads[(backend, needs)] = q["joints"].grad
        assert q["camera"].grad is None and (("keypoints" in needs) == (q["keypoints"].grad is not None))
    fast = grads[("cpp", ("joints",))]
    assert torch.equal(fast, grads[("cpp", ("joints", "keypoints"))])
    assert_all_close([fast], [grads[("reference", ("joints",))]], 1e-10 if dtype == torch.float64 else 1e-5)


def _views(p):
    """The same values as non-contiguous / expanded tensors."""
    B, T, J, _ = p["joints"].shape
    joints = p["joints"].transpose(1, 2).contiguous().transpose(1, 2)
    keypoints = p["keypoints"].permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)
    weights = p["weights"][:, :1].expand(B, T, J)
    camera = p["camera"][:, None].expand(B, T, 3, 4)
    intr = p["intrinsics"].t().contiguous().t()
    assert not joints.is_contiguous() and not keypoints.is_contiguous() and weights.stride(1) == 0
    return dict(joints=joints, keypoints=keypoints, camera=camera, weights=weights, intrinsics=intr)


@pytest.mark.parametrize("backend", ["cpp"])
def test_non_contiguous_and_expanded_inputs(backend):
    p = _views(make_problem(2, 8, 5, seed=2))
    dense = {k: v.contiguous() for k, v in p.items()}
    assert_all_close(run_reproj_vel(backend, p, "sample"), run_reproj_vel("reference", dense, "sample"), 1e-9)
    assert_all_close(run_ray_targets(backend, p), run_ray_targets("reference", dense), 1e-9)
    assert_all_close(run_velocity3d(backend, p), run_velocity3d("reference", dense), 1e-9)


def test_reductions():
    p = make_problem(3, 5, 4, seed=4)
    args = (p["joints"], p["keypoints"], p["camera"], p["weights"], p["intrinsics"])
    per = vk.reprojection_loss(*args, reduction="none", backend="cpp")
    assert per.shape == (3,)
    torch.testing.assert_close(vk.reprojection_loss(*args, reduction="mean", backend="cpp"), per.mean())
    torch.testing.assert_close(vk.reprojection_loss(*args, reduction="sum", backend="cpp"), per.sum())
    v3 = vk.velocity_loss_3d(p["joints"], p["joints"].flip(1), p["weights"], reduction="none", backend="cpp")
    torch.testing.assert_close(vk.velocity_loss_3d(p["joints"], p["joints"].flip(1), p["weights"], reduction="sum",
                                                   backend="cpp"), v3.sum())


def test_backward_is_deterministic():
    p = make_problem(4, 50, 22, dtype=torch.float32, seed=9)
    a = run_reproj_vel("cpp", p, "point")
    b = run_reproj_vel("cpp", p, "point")
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("op", ["reproj_vel", "ray_targets", "velocity3d"])
def test_low_precision_error_within_twice_eager(dtype, op):
    """|kernel_lowp - ref_f64| <= 2 |eager_lowp - ref_f64| for every output and gradient."""
    # Normalised coordinates keep float16 in range; the rule is about accuracy, not overflow.
    run = {"reproj_vel": lambda b, p: run_reproj_vel(b, p, "sample"), "ray_targets": run_ray_targets,
           "velocity3d": run_velocity3d}[op]
    check_against_reference(run, make_problem(2, 24, 22, intrinsics=False, seed=21), dtype)
