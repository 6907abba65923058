"""Run each op forward + backward with one upstream gradient and collect every output."""

from __future__ import annotations

import torch

import vmdm_kernels as vk

from .problems import clone_inputs

GRAD_KEYS = ("joints", "keypoints", "camera", "intrinsics")


def _upstream(shape, dtype, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def _grads(q: dict, keys=GRAD_KEYS) -> list:
    return [q[k].grad for k in keys if q.get(k) is not None]


def run_reproj_vel(backend, p, depth_weight="sample", *, depth_power=None, z_min=0.5, which="both", seed=1,
                   requires_grad=GRAD_KEYS):
    q = clone_inputs(p, requires_grad)
    kw = dict(depth_weight=depth_weight, depth_power=depth_power, z_min=z_min, reduction="none", backend=backend)
    args = (q["joints"], q["keypoints"], q["camera"], q["weights"], q["intrinsics"])
    B = p["joints"].shape[0]
    if which == "both":
        pos, vel = vk.reprojection_velocity_loss(*args, **kw)
        outs = [pos, vel]
        loss = (pos * _upstream(B, pos.dtype, seed, pos.device)).sum() + (
            vel * _upstream(B, vel.dtype, seed + 1, vel.device)).sum()
    else:
        fn = vk.reprojection_loss if which == "pos" else vk.velocity_loss
        out = fn(*args, **kw)
        outs = [out]
        loss = (out * _upstream(B, out.dtype, seed, out.device)).sum()
    loss.backward()
    return [o.detach() for o in outs] + _grads(q, requires_grad)


def run_velocity3d(backend, p, seed=1):
    joints = p["joints"].detach().clone().requires_grad_(True)
    x = p["joints"]
    target = (x.detach() + 0.05 * _upstream(x.shape, x.dtype, seed + 7, x.device)).requires_grad_(True)
    out = vk.velocity_loss_3d(joints, target, p["weights"], reduction="none", backend=backend)
    (out * _upstream(out.shape, out.dtype, seed, out.device)).sum().backward()
    return [out.detach(), joints.grad, target.grad]


def run_ray_targets(backend, p, seed=1):
    q = clone_inputs(p)
    out = vk.ray_targets(q["joints"], q["keypoints"], q["camera"], q["intrinsics"], backend=backend)
    (out * _upstream(out.shape, out.dtype, seed, out.device)).sum().backward()
    return [out.detach()] + _grads(q)


def assert_all_close(actual: list, expected: list, rtol: float, names=None, floor: float = 1e-12):
    """Per-tensor closeness with an absolute tolerance scaled to the tensor's magnitude."""
    assert len(actual) == len(expected), f"{len(actual)} outputs vs {len(expected)} expected"
    for i, (a, e) in enumerate(zip(actual, expected)):
        name = names[i] if names else f"output {i}"
        assert a is not None and e is not None, f"{name}: missing ({a is None}, {e is None})"
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} vs {tuple(e.shape)}"
        e64 = e.detach().double()
        scale = e64.abs().max().item() if e64.numel() else 0.0
        torch.testing.assert_close(
            a.detach().double(), e64, rtol=rtol, atol=max(rtol * scale, floor), equal_nan=True,
            msg=lambda m, name=name: f"{name}: {m}",
        )


def assert_within_eager_error(kernel: list, eager: list, ref64: list, names=None, factor: float = 2.0,
                              rel_floor: float = 1e-6):
    """Low-precision rule: each output's max error vs float64 is at most ``factor`` x that of eager
    PyTorch in the same dtype (plus a floor relative to the output's magnitude)."""
    assert len(kernel) == len(eager) == len(ref64)
    for i, (k, e, r) in enumerate(zip(kernel, eager, ref64)):
        name = names[i] if names else f"output {i}"
        r = r.double()
        k_err = (k.double() - r).abs().max().item() if r.numel() else 0.0
        e_err = (e.double() - r).abs().max().item() if r.numel() else 0.0
        floor = rel_floor * (r.abs().max().item() if r.numel() else 0.0)
        assert k_err <= factor * e_err + floor, (
            f"{name}: kernel error {k_err:.3e} > {factor} x eager error {e_err:.3e} (+ floor {floor:.1e})"
        )
