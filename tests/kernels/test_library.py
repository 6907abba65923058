"""torch.library registration: opcheck on every custom op, and torch.compile
(fullgraph) of a module that calls the ops, matching eager forward and backward; the
schemas declared once per op; the lazily registered ``torch.ops.vmdm_triton`` ops."""

import pytest
import torch

import vmdm_kernels as vk

from .conftest import only
from .problems import make_problem
from .runners import assert_all_close, reference_reproj, upstream

CPP = pytest.mark.skipif(not vk.backends()["cpp"].available, reason=str(vk.backends()["cpp"]))


def _p(per_frame=False, intrinsics=True):
    p = make_problem(2, 5, 4, per_frame=per_frame, intrinsics=intrinsics, seed=0)
    for k in ("joints", "keypoints", "camera", "intrinsics"):
        if p[k] is not None:
            p[k].requires_grad_(True)
    return p


@CPP
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("intrinsics", [True, False], ids=["pixels", "normalised"])
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_opcheck_reproj_vel(per_frame, intrinsics, mode):
    p = _p(per_frame, intrinsics)
    args = (p["joints"], p["keypoints"], p["camera"], p["weights"], p["intrinsics"], mode, float(max(mode, 1)), 0.5,
            True, True, "cpp")
    torch.library.opcheck(torch.ops.vmdm.reproj_vel_fwd.default, args)
    pos, vel, stats = torch.ops.vmdm.reproj_vel_fwd(*args)
    bwd_args = (torch.randn_like(pos), torch.randn_like(vel), p["joints"].detach(), p["keypoints"].detach(),
                p["camera"].detach(), p["weights"], None if p["intrinsics"] is None else p["intrinsics"].detach(), stats,
                mode, 1.0, 0.5, True, True, True, True, intrinsics, "cpp")
    torch.library.opcheck(torch.ops.vmdm.reproj_vel_bwd.default, bwd_args)


@CPP
def test_opcheck_velocity3d():
    p = _p()
    target = torch.randn_like(p["joints"]).requires_grad_(True)
    args = (p["joints"], target, p["weights"], "cpp")
    torch.library.opcheck(torch.ops.vmdm.velocity3d_fwd.default, args)
    loss = torch.ops.vmdm.velocity3d_fwd(*args)
    torch.library.opcheck(torch.ops.vmdm.velocity3d_bwd.default,
                          (torch.randn_like(loss), p["joints"].detach(), target.detach(), p["weights"], True, "cpp"))


@CPP
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_opcheck_ray_targets(per_frame):
    p = _p(per_frame)
    args = (p["joints"], p["keypoints"], p["camera"], p["intrinsics"], "cpp")
    torch.library.opcheck(torch.ops.vmdm.ray_targets_fwd.default, args)
    out = torch.ops.vmdm.ray_targets_fwd(*args)
    torch.library.opcheck(
        torch.ops.vmdm.ray_targets_bwd.default,
        (torch.randn_like(out), p["joints"].detach(), p["keypoints"].detach(), p["camera"].detach(),
         p["intrinsics"].detach(), True, True, True, "cpp"),
    )


class TinyLifter(torch.nn.Module):
    """A module shaped like the training hot path: predict joints, score them in 2D and 3D."""

    def __init__(self, J):
        super().__init__()
        self.net = torch.nn.Linear(2 * J, 3 * J, dtype=torch.float64)

    def forward(self, keypoints, camera, weights, intrinsics, target):
        B, T, J, _ = keypoints.shape
        joints = self.net((keypoints / 1000).reshape(B, T, 2 * J)).reshape(B, T, J, 3)
        joints = joints + torch.tensor([0.0, 0.9, 0.0], dtype=joints.dtype)
        pos, vel = vk.reprojection_velocity_loss(joints, keypoints, camera, weights, intrinsics, backend="cpp")
        v3 = vk.velocity_loss_3d(joints, target, weights, backend="cpp")
        rays = vk.ray_targets(joints.detach(), keypoints, camera, intrinsics, backend="cpp")
        align = ((joints - rays) ** 2).mean()
        return 7 * pos + 50 * vel + v3 + align


@CPP
@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_matches_eager(compiler):
    torch._dynamo.reset()
    p = make_problem(2, 6, 4, seed=3)
    model = TinyLifter(4)
    args = (p["keypoints"], p["camera"], p["weights"], p["intrinsics"], p["joints"])
    eager = model(*args)
    eager.backward()
    g_eager = [q.grad.clone() for q in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True, backend=compiler)
    out = compiled(*args)
    out.backward()
    torch.testing.assert_close(out, eager, rtol=1e-10, atol=1e-12)
    for g, ge in zip([q.grad for q in model.parameters()], g_eager):
        torch.testing.assert_close(g, ge, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- one declaration per op


@CPP
def test_schemas_match_the_compiled_ops():
    """Each op's schema is written once in Python (its FusedOp) and must be the C++ op's."""
    import vmdm_kernels._C  # noqa: F401  (registers torch.ops.vmdm_C)
    from vmdm_kernels.ops import FUSED_OPS

    for op in FUSED_OPS:
        for kind, schema in (("fwd", op.fwd_schema), ("bwd", op.bwd_schema)):
            if schema is None:
                continue
            compiled = str(getattr(torch.ops.vmdm_C, f"{op.name}_{kind}").default._schema)
            assert compiled == f"vmdm_C::{op.name}_{kind}{schema}"
            assert str(getattr(torch.ops.vmdm, f"{op.name}_{kind}").default._schema) == \
                f"vmdm::{op.name}_{kind}{schema[:schema.index(') -> ')]}, str backend{schema[schema.index(') -> '):]}"


def test_triton_library_is_registered_lazily():
    """Importing vmdm_kernels (and the library module) registers no triton_op; register() does."""
    import subprocess
    import sys

    code = (
        "import torch, vmdm_kernels, vmdm_kernels.triton.library as lib\n"
        "print(hasattr(torch.ops.vmdm_triton, 'reproj_vel_fwd'))\n"
        "lib.register(); lib.register()\n"
        "print(all(hasattr(torch.ops.vmdm_triton, f'{n}_{k}') for n in ('reproj_vel', 'velocity3d', 'ray_targets')"
        " for k in ('fwd', 'bwd')))\n"
    )
    pytest.importorskip("triton")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True"], res.stdout


# --------------------------------------------------------------------------- every compiled backend


@only("cuda")
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_opcheck_custom_ops_on_device(backend, per_frame):
    p = backend.to(make_problem(2, 9, 5, per_frame=per_frame, seed=24, dtype=torch.float32))
    j, k, c, i = (p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics"))
    name = backend.name
    args = (j, k, c, p["weights"], i, 2, 2.0, 0.5, True, True, name)
    torch.library.opcheck(torch.ops.vmdm.reproj_vel_fwd.default, args)
    pos, vel, stats = torch.ops.vmdm.reproj_vel_fwd(*args)
    torch.library.opcheck(torch.ops.vmdm.reproj_vel_bwd.default,
                          (torch.randn_like(pos), torch.randn_like(vel), j.detach(), k.detach(), c.detach(),
                           p["weights"], i.detach(), stats.detach(), 2, 2.0, 0.5, True, True, True, True, True, name))
    target = (p["joints"] + 0.1).requires_grad_()
    torch.library.opcheck(torch.ops.vmdm.velocity3d_fwd.default, (j, target, p["weights"], name))
    loss = torch.ops.vmdm.velocity3d_fwd(j, target, p["weights"], name)
    torch.library.opcheck(torch.ops.vmdm.velocity3d_bwd.default,
                          (torch.randn_like(loss), j.detach(), target.detach(), p["weights"], True, name))
    torch.library.opcheck(torch.ops.vmdm.ray_targets_fwd.default, (j, k, c, i, name))
    out = torch.ops.vmdm.ray_targets_fwd(j, k, c, i, name)
    torch.library.opcheck(torch.ops.vmdm.ray_targets_bwd.default,
                          (torch.randn_like(out), j.detach(), k.detach(), c.detach(), i.detach(), True, True, True,
                           name))


gpu_only = pytest.mark.skipif(not torch.cuda.is_available(),
                              reason="needs a CUDA device (the Triton interpreter has no compiler path)")


@only("cuda", "triton")
@gpu_only
def test_torch_compile_fullgraph_on_device(backend):
    # The CUDA variant also scores ray targets (as the training loss does).
    with_rays = backend.name == "cuda"

    class Loss(torch.nn.Module):
        def forward(self, joints, keypoints, camera, weights, intrinsics):
            pos, vel = vk.reprojection_velocity_loss(joints, keypoints, camera, weights, intrinsics,
                                                     backend=backend.name)
            v3 = vk.velocity_loss_3d(joints, joints.detach().roll(1, dims=1), weights, backend=backend.name)
            out = pos + 0.5 * vel + 0.1 * v3
            if with_rays:
                rays = vk.ray_targets(joints.detach(), keypoints, camera, intrinsics, backend=backend.name)
                out = out + ((joints - rays) ** 2).mean()
            return out

    torch._dynamo.reset()
    p = backend.to(make_problem(4, 30, 22, seed=22, dtype=torch.float32))
    res = []
    for fn in (Loss(), torch.compile(Loss(), fullgraph=True)):
        leaves = [p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics")]
        out = fn(leaves[0], leaves[1], leaves[2], p["weights"], leaves[3])
        out.backward()
        res.append([out.detach()] + [x.grad for x in leaves])
    assert_all_close(res[1], res[0], 1e-5)


# --------------------------------------------------------------------------- torch.ops.vmdm_triton


@only("triton")
def test_triton_ops_registered_with_torch_library(backend):
    import vmdm_kernels.triton.library

    vmdm_kernels.triton.library.register()  # torch.ops.vmdm_triton.*
    vt = backend.kernels
    p = backend.to(make_problem(2, 9, 4, seed=13))
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
    assert_all_close(got, [exp[i] for i in (0, 1, 3, 4, 5, 6)], 1e-9)

    target = p["joints"] + 0.1
    v = torch.ops.vmdm_triton.velocity3d_fwd(leaves[0], target, p["weights"])
    assert torch.equal(v.detach(), vt.velocity3d_fwd(p["joints"], target, p["weights"]))
    r = torch.ops.vmdm_triton.ray_targets_fwd(leaves[0], leaves[1], leaves[2], leaves[3])
    grads = torch.autograd.grad(r.sum(), leaves)
    expected = vt.ray_targets_bwd(torch.ones_like(r), p["joints"], p["keypoints"], p["camera"], p["intrinsics"],
                                  True, True, True)
    for a, b in zip(grads, expected):
        assert torch.equal(a, b)


@only("triton")
@gpu_only
def test_opcheck_triton_ops(backend):
    # Fake-tensor tracing of a triton_op needs the compiled path: under the interpreter
    # wrap_triton returns the raw kernel, which cannot run on fake tensors.
    import vmdm_kernels.triton.library

    vmdm_kernels.triton.library.register()
    p = backend.to(make_problem(2, 9, 5, per_frame=True, seed=24, dtype=torch.float32))
    leaves = [p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics")]
    j, k, c, i = leaves
    torch.library.opcheck(torch.ops.vmdm_triton.reproj_vel_fwd.default,
                          (j, k, c, p["weights"], i, 1, 1.0, 0.5, True, True))
    torch.library.opcheck(torch.ops.vmdm_triton.velocity3d_fwd.default, (j, k.detach().sum(-1, keepdim=True)
                          .expand_as(j).contiguous().requires_grad_(), p["weights"]))
    torch.library.opcheck(torch.ops.vmdm_triton.ray_targets_fwd.default, (j, k, c, i))


@only("triton")
@gpu_only
def test_torch_compile_fullgraph_over_triton_ops(backend):
    import vmdm_kernels.triton.library

    vmdm_kernels.triton.library.register()

    def f(joints, keypoints, camera, weights, intrinsics):
        pos, vel, _ = torch.ops.vmdm_triton.reproj_vel_fwd(joints, keypoints, camera, weights, intrinsics,
                                                           1, 1.0, 0.5, True, True)
        rays = torch.ops.vmdm_triton.ray_targets_fwd(joints, keypoints, camera, intrinsics)
        return pos.sum() + vel.sum() + (rays - joints).square().mean()

    p = backend.to(make_problem(4, 30, 22, per_frame=True, seed=23, dtype=torch.float32))
    res = []
    for fn in (f, torch.compile(f, fullgraph=True)):
        leaves = [p[n].clone().requires_grad_() for n in ("joints", "keypoints", "camera", "intrinsics")]
        out = fn(leaves[0], leaves[1], leaves[2], p["weights"], leaves[3])
        out.backward()
        res.append([out.detach()] + [x.grad for x in leaves])
    assert_all_close(res[1], res[0], 1e-5)
