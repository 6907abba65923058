"""torch.library registration: opcheck on every custom op, and torch.compile
(fullgraph) of a module that calls the ops, matching eager forward and backward."""

import pytest
import torch

import vmdm_kernels as vk

from .problems import make_problem

pytestmark = pytest.mark.skipif(not vk.backends()["cpp"].available, reason=str(vk.backends()["cpp"]))


def _p(per_frame=False, intrinsics=True):
    p = make_problem(2, 5, 4, per_frame=per_frame, intrinsics=intrinsics, seed=0)
    for k in ("joints", "keypoints", "camera", "intrinsics"):
        if p[k] is not None:
            p[k].requires_grad_(True)
    return p


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


def test_opcheck_velocity3d():
    p = _p()
    target = torch.randn_like(p["joints"]).requires_grad_(True)
    args = (p["joints"], target, p["weights"], "cpp")
    torch.library.opcheck(torch.ops.vmdm.velocity3d_fwd.default, args)
    loss = torch.ops.vmdm.velocity3d_fwd(*args)
    torch.library.opcheck(torch.ops.vmdm.velocity3d_bwd.default,
                          (torch.randn_like(loss), p["joints"].detach(), target.detach(), p["weights"], True, "cpp"))


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
