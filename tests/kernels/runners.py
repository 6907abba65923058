"""Run each op forward + backward with one upstream gradient and collect every output.

Public-API runners (``run_*``: the ops' functions with a backend name, inputs on any
device), kernel-level runners (``kernel_*``: a backend's ``<op>_fwd`` / ``<op>_bwd``
directly) with their float64 reference twins (``reference_*``), and the comparisons
(``assert_*``, on the CPU whatever device the tensors are on)."""

from __future__ import annotations

import torch

import vmdm_kernels as vk
from vmdm_kernels import ref
from vmdm_kernels.ref.reproj_vel import depth_weights

from .problems import clone_inputs

GRAD_KEYS = ("joints", "keypoints", "camera", "intrinsics")


def upstream(shape, seed):
    """A float64 upstream gradient on the CPU, the same for a given seed on every backend."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _upstream(shape, dtype, seed, device="cpu", grad_dtype=None):
    # grad_dtype rounds the upstream gradient the way a low-precision run sees it, so a
    # float64 reference of that run can use exactly the same values.
    return upstream(shape, seed).to(grad_dtype or dtype).to(device=device, dtype=dtype)


def _grads(q: dict, keys=GRAD_KEYS) -> list:
    return [q[k].grad for k in keys if q.get(k) is not None]


def run_reproj_vel(backend, p, depth_weight="sample", *, depth_power=None, z_min=0.5, which="both", seed=1,
                   requires_grad=GRAD_KEYS, grad_dtype=None):
    q = clone_inputs(p, requires_grad)
    kw = dict(depth_weight=depth_weight, depth_power=depth_power, z_min=z_min, reduction="none", backend=backend)
    args = (q["joints"], q["keypoints"], q["camera"], q["weights"], q["intrinsics"])
    B = p["joints"].shape[0]
    if which == "both":
        pos, vel = vk.reprojection_velocity_loss(*args, **kw)
        outs = [pos, vel]
        loss = (pos * _upstream(B, pos.dtype, seed, pos.device, grad_dtype)).sum() + (
            vel * _upstream(B, vel.dtype, seed + 1, vel.device, grad_dtype)).sum()
    else:
        fn = vk.reprojection_loss if which == "pos" else vk.velocity_loss
        out = fn(*args, **kw)
        outs = [out]
        loss = (out * _upstream(B, out.dtype, seed, out.device, grad_dtype)).sum()
    loss.backward()
    return [o.detach() for o in outs] + _grads(q, requires_grad)


def run_velocity3d(backend, p, seed=1, grad_dtype=None):
    """With ``p["target"]`` that target, else the joints plus noise."""
    joints = p["joints"].detach().clone().requires_grad_(True)
    x = p["joints"]
    if p.get("target") is not None:
        target = p["target"].detach().clone().requires_grad_(True)
    else:
        target = (x.detach() + 0.05 * _upstream(x.shape, x.dtype, seed + 7, x.device)).requires_grad_(True)
    out = vk.velocity_loss_3d(joints, target, p["weights"], reduction="none", backend=backend)
    (out * _upstream(out.shape, out.dtype, seed, out.device, grad_dtype)).sum().backward()
    return [out.detach(), joints.grad, target.grad]


def run_ray_targets(backend, p, seed=1, grad_dtype=None):
    q = clone_inputs(p)
    out = vk.ray_targets(q["joints"], q["keypoints"], q["camera"], q["intrinsics"], backend=backend)
    (out * _upstream(out.shape, out.dtype, seed, out.device, grad_dtype)).sum().backward()
    return [out.detach()] + _grads(q)


def assert_all_close(actual: list, expected: list, rtol: float, names=None, floor: float = 1e-12):
    """Per-tensor closeness with an absolute tolerance scaled to the tensor's magnitude."""
    assert len(actual) == len(expected), f"{len(actual)} outputs vs {len(expected)} expected"
    for i, (a, e) in enumerate(zip(actual, expected)):
        name = names[i] if names else f"output {i}"
        assert a is not None and e is not None, f"{name}: missing ({a is None}, {e is None})"
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} vs {tuple(e.shape)}"
        a, e64 = a.detach().cpu(), e.detach().double().cpu()
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
        k, e, r = k.detach().cpu(), e.detach().cpu(), r.detach().double().cpu()
        k_err = (k.double() - r).abs().max().item() if r.numel() else 0.0
        e_err = (e.double() - r).abs().max().item() if r.numel() else 0.0
        floor = rel_floor * (r.abs().max().item() if r.numel() else 0.0)
        assert k_err <= factor * e_err + floor, (
            f"{name}: kernel error {k_err:.3e} > {factor} x eager error {e_err:.3e} (+ floor {floor:.1e})"
        )


def assert_same(a: list, b: list, names=None):
    """Bitwise equality (NaN equal to NaN)."""
    for i, (x, y) in enumerate(zip(a, b)):
        name = names[i] if names else f"output {i}"
        assert x.shape == y.shape and x.dtype == y.dtype, name
        same = (x == y) | (x.isnan() & y.isnan())
        assert bool(same.all()), f"{name}: {(~same).sum().item()} elements differ between two identical calls"


# --------------------------------------------------------------------------- kernel level

MODES = ["none", "sample", "point"]
REPROJ_NAMES = ["loss_pos", "loss_vel", "stats", "grad_joints", "grad_keypoints", "grad_camera", "grad_intrinsics"]
V3_NAMES = ["loss", "grad_joints", "grad_target"]
RAY_NAMES = ["targets", "grad_joints", "grad_keypoints", "grad_camera", "grad_intrinsics"]


def _tile(block_t):
    """``block_t`` pins the Triton kernels' frame tile (the compiled C++/CUDA ops take none)."""
    return {} if block_t is None else {"block_t": block_t}


def kernel_reproj(backend, p, depth_weight, *, power=None, z_min=0.5, with_pos=True, with_vel=True, seed=1,
                  need=(True, True, True), block_t=None):
    """Forward + backward through ``backend.kernels``:
    [loss_pos, loss_vel, stats, grad_joints, (grad_keypoints), (grad_camera), (grad_intrinsics)]."""
    kern = backend.kernels
    power = ref.default_depth_power(depth_weight) if power is None else power
    mode = MODES.index(depth_weight)
    args = (p["joints"], p["keypoints"], p["camera"], p["weights"], p["intrinsics"])
    B = p["joints"].shape[0]
    lp, lv, st = kern.reproj_vel_fwd(*args, mode, power, z_min, with_pos, with_vel, **_tile(block_t))
    gp = upstream(B, seed).to(lp.device, lp.dtype)
    gv = upstream(B, seed + 1).to(lv.device, lv.dtype)
    need_k, need_c, need_i = need
    need_i = need_i and p["intrinsics"] is not None
    grads = kern.reproj_vel_bwd(gp, gv, *args, st, mode, power, z_min, with_pos, with_vel, need_k, need_c, need_i,
                                **_tile(block_t))
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


def kernel_velocity3d(backend, p, seed=1, need_target=True, block_t=None):
    """([loss, grad_joints, (grad_target)], target) through ``backend.kernels``."""
    kern = backend.kernels
    joints, weights = p["joints"], p["weights"]
    target = joints + 0.05 * upstream(joints.shape, seed + 7).to(joints)
    loss = kern.velocity3d_fwd(joints, target, weights, **_tile(block_t))
    g = upstream(loss.shape, seed).to(loss)
    gj, gt = kern.velocity3d_bwd(g, joints, target, weights, need_target, **_tile(block_t))
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


def kernel_ray(backend, p, seed=1, need=(True, True, True), block_t=None):
    """[targets, grad_joints, (grad_keypoints), (grad_camera), (grad_intrinsics)] through ``backend.kernels``."""
    kern = backend.kernels
    args = (p["joints"], p["keypoints"], p["camera"], p["intrinsics"])
    out = kern.ray_targets_fwd(*args, **_tile(block_t))
    g = upstream(out.shape, seed).to(out)
    need_k, need_c, need_i = need
    need_i = need_i and p["intrinsics"] is not None
    grads = kern.ray_targets_bwd(g, *args, need_k, need_c, need_i, **_tile(block_t))
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
