"""Benchmark workloads: realistic inputs at the shapes the project runs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Workload:
    name: str
    B: int
    T: int
    J: int = 22
    gpu_only: bool = False


WORKLOADS = [
    Workload("train", 64, 196),  # a VideoMDM training batch
    Workload("small", 8, 60),
    Workload("lifting", 7, 120),  # MAS-like camera fitting: many small optimisation steps
    Workload("large", 1024, 196, gpu_only=True),
]


def make_inputs(w: Workload, device, dtype=torch.float32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    B, T, J = w.B, w.T, w.J
    joints = torch.randn(B, 1, J, 3, generator=g) * torch.tensor([0.25, 0.5, 0.2])
    joints = joints + torch.cumsum(torch.randn(B, T, 1, 3, generator=g) * 0.02, 1) + torch.tensor([0, 0.9, 0])
    az = torch.rand(B, generator=g) * 2 * math.pi
    c, s = torch.cos(az), torch.sin(az)
    R = torch.zeros(B, 3, 3)
    R[:, 0, 0], R[:, 0, 2], R[:, 1, 1], R[:, 2, 0], R[:, 2, 2] = c, -s, -1.0, s, c
    t = torch.stack((torch.zeros(B), torch.full((B,), 0.9), torch.full((B,), 4.0)), -1)
    camera = torch.cat((R, t[..., None]), -1)
    intrinsics = torch.tensor([1000.0, 1000.0, 500.0, 500.0]).expand(B, 4).contiguous()
    xc = (R[:, None, None] @ joints[..., None])[..., 0] + t[:, None, None]
    keypoints = 1000 * xc[..., :2] / xc[..., 2:] + 500 + torch.randn(B, T, J, 2, generator=g) * 3
    weights = torch.rand(B, T, J, generator=g)
    out = dict(joints=joints, keypoints=keypoints, camera=camera, weights=weights, intrinsics=intrinsics)
    return {k: v.to(device=device, dtype=dtype).contiguous() for k, v in out.items()}


def bytes_moved(op: str, mode: str, w: Workload, itemsize: int = 4) -> int:
    """Compulsory DRAM traffic of a kernel pass: each input read once, each output written once."""
    n = w.B * w.T * w.J
    if op == "reproj_vel":
        fwd = n * (3 + 2 + 1) * itemsize
        bwd = fwd + n * 3 * itemsize  # re-read inputs, write grad_joints
    elif op == "velocity3d":
        fwd = n * (3 + 3 + 1) * itemsize
        bwd = fwd + n * 3 * itemsize
    else:  # ray_targets
        fwd = n * (3 + 2 + 3) * itemsize
        bwd = n * (3 + 2 + 3 + 3) * itemsize
    return fwd if mode == "fwd" else fwd + bwd
