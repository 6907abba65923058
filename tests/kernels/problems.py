"""Random but realistic loss inputs: a body-sized point cloud moving in front of
cameras placed around it, keypoints near the projections, mixed weights."""

from __future__ import annotations

import math

import torch

from vmdm_kernels.ref import project


def look_at(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 4]`` extrinsics of cameras at ``eye`` looking at ``target`` (y up, image y down)."""
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype).expand_as(fwd)
    right = torch.nn.functional.normalize(torch.linalg.cross(up, fwd), dim=-1)
    down = torch.linalg.cross(fwd, right)
    R = torch.stack((right, down, fwd), dim=-2)
    t = -(R @ eye[..., None])[..., 0]
    return torch.cat((R, t[..., None]), dim=-1)


def make_problem(
    B: int = 2,
    T: int = 6,
    J: int = 5,
    *,
    dtype: torch.dtype = torch.float64,
    per_frame: bool = False,
    intrinsics: bool = True,
    zero_weight_frac: float = 0.2,
    noise_px: float = 4.0,
    distance: float = 4.0,
    seed: int = 0,
) -> dict:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    body = torch.randn(B, 1, J, 3, generator=g, dtype=f64) * torch.tensor([0.25, 0.5, 0.2], dtype=f64)
    body[..., 1] += 0.9
    drift = torch.cumsum(torch.randn(B, T, 1, 3, generator=g, dtype=f64) * 0.03, dim=1)
    joints = body + drift + torch.randn(B, T, J, 3, generator=g, dtype=f64) * 0.02
    az = torch.rand(B, generator=g, dtype=f64) * 2 * math.pi
    el = (torch.rand(B, generator=g, dtype=f64) - 0.75) * 0.5
    d = distance * (1 + 0.2 * torch.rand(B, generator=g, dtype=f64))
    eye = torch.stack((d * torch.cos(el) * torch.sin(az), 0.9 - d * torch.sin(el), d * torch.cos(el) * torch.cos(az)), -1)
    target = torch.tensor([0.0, 0.9, 0.0], dtype=f64).expand(B, 3)
    if per_frame:
        pan = torch.linspace(0, 0.3, T, dtype=f64)[None, :, None] * torch.tensor([1.0, 0.0, 0.0], dtype=f64)
        camera = look_at(eye[:, None] + pan, target[:, None].expand(B, T, 3))
    else:
        camera = look_at(eye, target)
    intr = None
    if intrinsics:
        f = 800 + 400 * torch.rand(B, 1, generator=g, dtype=f64)
        intr = torch.cat((f, f * (1 + 0.05 * torch.rand(B, 1, generator=g, dtype=f64)),
                          torch.full((B, 2), 500.0, dtype=f64)), dim=1)
    uv, _, _ = project(joints, camera, intr)
    scale = noise_px if intrinsics else noise_px / 1000.0
    keypoints = uv + torch.randn(uv.shape, generator=g, dtype=f64) * scale
    weights = torch.rand(B, T, J, generator=g, dtype=f64)
    weights = torch.where(torch.rand(B, T, J, generator=g, dtype=f64) < zero_weight_frac, 0.0, weights)
    out = dict(joints=joints, keypoints=keypoints, camera=camera, weights=weights, intrinsics=intr)
    return {k: (v.to(dtype) if v is not None else None) for k, v in out.items()}


def clone_inputs(p: dict, requires_grad=("joints", "keypoints", "camera", "intrinsics")) -> dict:
    out = {}
    for k, v in p.items():
        if v is None:
            out[k] = None
            continue
        v = v.detach().clone()
        if k in requires_grad:
            v.requires_grad_(True)
        out[k] = v
    return out


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    """Human-readable mismatch summary: count, worst index and values."""
    diff = (a.double() - b.double()).abs()
    worst = int(diff.flatten().nan_to_num(float("inf")).argmax())
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape)) if diff.dim() else ()
    return f"max |diff| {diff.max().item():.3e} at {idx}: {a.flatten()[worst].item()!r} vs {b.flatten()[worst].item()!r}"
