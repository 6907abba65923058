"""float64 finite-difference gradient checks on tiny shapes, every op, every
differentiable input, reference and C++ backends; then the public API on the C++, CUDA
and Triton backends (the ``backend`` fixture).

Depth weights are detached by design, so finite differences disagree with
them: the ``none`` mode is checked directly; ``sample`` is checked with its
per-clip weight held fixed (divide out the detached weight, multiply by its
value at the checkpoint); ``point`` is checked w.r.t. the keypoints (its
weights do not depend on them) and against the reference's autograd in
the per-op tests (test_reproj_vel.py) for the other inputs."""

import pytest
import torch
from torch.autograd import gradcheck

import vmdm_kernels as vk
from vmdm_kernels.ref.camera import project
from vmdm_kernels.ref.reproj_vel import depth_weights

from .conftest import only
from .problems import make_problem

BACKENDS = ["reference"] + (["cpp"] if vk.backends()["cpp"].available else [])


def _leaves(p, keys):
    return [p[k].detach().clone().requires_grad_(True) for k in keys]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("which", ["both", "pos", "vel"])
def test_reproj_vel_none_mode(backend, per_frame, which):
    p = make_problem(2, 4, 3, per_frame=per_frame, seed=1)

    def f(joints, keypoints, camera, intrinsics):
        args = (joints, keypoints, camera, p["weights"], intrinsics)
        kw = dict(depth_weight="none", reduction="none", backend=backend)
        if which == "pos":
            return vk.reprojection_loss(*args, **kw)
        if which == "vel":
            return vk.velocity_loss(*args, **kw)
        return vk.reprojection_velocity_loss(*args, **kw)

    assert gradcheck(f, _leaves(p, ["joints", "keypoints", "camera", "intrinsics"]), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reproj_vel_sample_mode_with_fixed_weight(backend):
    p = make_problem(2, 4, 3, seed=2)

    def w_b(joints, camera):
        _, z, front = project(joints.detach(), camera.detach(), None, 0.5)
        return depth_weights(z, front & (p["weights"] != 0), None, "sample", 1.0)[0]

    w0 = w_b(p["joints"], p["camera"])

    def f(joints, keypoints, camera, intrinsics):
        pos, vel = vk.reprojection_velocity_loss(joints, keypoints, camera, p["weights"], intrinsics,
                                                 depth_weight="sample", reduction="none", backend=backend)
        hold = w0 / w_b(joints, camera)
        return pos * hold, vel * hold

    assert gradcheck(f, _leaves(p, ["joints", "keypoints", "camera", "intrinsics"]), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reproj_vel_point_mode_keypoints(backend):
    p = make_problem(2, 4, 3, seed=3)

    def f(keypoints):
        return vk.reprojection_velocity_loss(p["joints"], keypoints, p["camera"], p["weights"], p["intrinsics"],
                                             depth_weight="point", reduction="none", backend=backend)

    assert gradcheck(f, _leaves(p, ["keypoints"]), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_velocity3d(backend):
    p = make_problem(2, 5, 3, seed=4)
    target = p["joints"].flip(1).clone().requires_grad_(True)
    joints = p["joints"].clone().requires_grad_(True)

    def f(joints, target):
        return vk.velocity_loss_3d(joints, target, p["weights"], reduction="none", backend=backend)

    assert gradcheck(f, [joints, target], eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("joints_only", [False, True], ids=["all_inputs", "joints_only"])
def test_ray_targets(backend, per_frame, intrinsics, joints_only):
    # joints_only: the training case, which the C++ backward serves with a shorter formula.
    p = make_problem(2, 3, 3, per_frame=per_frame, intrinsics=intrinsics, seed=5)
    keys = ["joints"] if joints_only else ["joints", "keypoints", "camera"] + (["intrinsics"] if intrinsics else [])

    def f(*xs):
        q = {**p, **dict(zip(keys, xs))}
        return vk.ray_targets(q["joints"], q["keypoints"], q["camera"], q.get("intrinsics"), backend=backend)

    assert gradcheck(f, _leaves(p, keys), eps=1e-6, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- compiled backends on their devices


@only("cpp", "cuda")
def test_public_api_on_device(backend):
    # depth_weight="none": the sample/point depth weights are detached by definition, so
    # finite differences would see a dependence the analytic gradient deliberately omits.
    for per_frame in (False, True):
        p = backend.to(make_problem(2, 3, 2, per_frame=per_frame, seed=12))
        j, k, c, i = (p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics"))
        target = p["joints"].clone().requires_grad_()

        def f(j, k, c, i, target):
            pos, vel = vk.reprojection_velocity_loss(j, k, c, p["weights"], i, depth_weight="none", reduction="sum",
                                                     backend=backend.name)
            v3 = vk.velocity_loss_3d(j, target, p["weights"], reduction="sum", backend=backend.name)
            return pos + vel, v3, vk.ray_targets(j, k, c, i, backend=backend.name)

        assert torch.autograd.gradcheck(f, (j, k, c, i, target), eps=1e-6, atol=1e-5, rtol=1e-4)


@only("triton")
def test_public_api_triton(backend):
    # fast_mode: every program instance costs milliseconds in the interpreter.
    p = backend.to(make_problem(1, 3, 2, seed=12))
    j, k, c, i = (p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics"))

    def f(j, k, c, i):
        pos, vel = vk.reprojection_velocity_loss(j, k, c, p["weights"], i, depth_weight="none", reduction="sum",
                                                 backend="triton")
        return pos + vel, vk.ray_targets(j, k, c, i, backend="triton")

    assert torch.autograd.gradcheck(f, (j, k, c, i), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)
