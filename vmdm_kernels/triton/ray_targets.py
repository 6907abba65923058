"""Triton kernels: ray-projection pseudo-targets (closest point on each keypoint's camera ray).

Same math as ``ray_forward``/``ray_backward`` in ``csrc/common/camera_math.h``::

    d = ((u - cx) / fx, (v - cy) / fy, 1),  r = R^T d,  C = -R^T t,
    s = (X - C) . r / |r|^2,  P = C + s r

Per point, no time coupling: tiles of BLOCK_T frames x BLOCK_J joints without halo.
Launches: forward = ``ray_targets_fwd_kernel``; backward = ``ray_targets_bwd_kernel``
(+ ``sum_partials_kernel`` when a per-clip camera or intrinsics gradient is wanted;
per-frame camera gradients are summed over joints inside the tile and written directly).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    PARTIAL_CAM,
    Launcher,
    acc_tl_dtype,
    acc_torch_dtype,
    block_j,
    check_camera,
    check_device,
    check_joints,
    check_same,
    finalize_camera_grads,
    load_camera,
    load_intrinsics,
)

__all__ = ["ray_targets_fwd", "ray_targets_bwd", "ray_targets_fwd_kernel", "ray_targets_bwd_kernel"]


@triton.jit
def _ray(
    X_ptr, K_ptr, pt, pmask,
    r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2,
    fx, fy, cx, cy,
    ACC: tl.constexpr,
):
    """Returns (d0, d1, r0, r1, r2, a0, a1, a2, inv_rr, s, C0, C1, C2) for a tile of points."""
    ku = tl.load(K_ptr + 2 * pt + 0, mask=pmask, other=0.0).to(ACC)
    kv = tl.load(K_ptr + 2 * pt + 1, mask=pmask, other=0.0).to(ACC)
    X0 = tl.load(X_ptr + 3 * pt + 0, mask=pmask, other=0.0).to(ACC)
    X1 = tl.load(X_ptr + 3 * pt + 1, mask=pmask, other=0.0).to(ACC)
    X2 = tl.load(X_ptr + 3 * pt + 2, mask=pmask, other=0.0).to(ACC)
    d0 = (ku - cx) / fx
    d1 = (kv - cy) / fy
    # r = R^T d with d2 = 1; C = -R^T t.
    r0 = r00 * d0 + r10 * d1 + r20
    r1 = r01 * d0 + r11 * d1 + r21
    r2 = r02 * d0 + r12 * d1 + r22
    C0 = -(r00 * t0 + r10 * t1 + r20 * t2)
    C1 = -(r01 * t0 + r11 * t1 + r21 * t2)
    C2 = -(r02 * t0 + r12 * t1 + r22 * t2)
    a0 = X0 - C0
    a1 = X1 - C1
    a2 = X2 - C2
    rr = r0 * r0 + r1 * r1 + r2 * r2
    s = (a0 * r0 + a1 * r1 + a2 * r2) / rr
    return d0, d1, r0, r1, r2, a0, a1, a2, rr, s, C0, C1, C2


@triton.jit
def ray_targets_fwd_kernel(
    X_ptr, K_ptr, C_ptr, I_ptr, O_ptr,
    B, T, J,
    PER_FRAME: tl.constexpr, HAS_INTR: tl.constexpr,
    ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
):
    n_tiles = tl.cdiv(T, BLOCK_T)
    pid = tl.program_id(0)
    b = pid // n_tiles
    tile = pid % n_tiles
    b64 = b.to(tl.int64)
    i = tl.arange(0, BLOCK_T)[:, None]
    j = tl.arange(0, BLOCK_J)[None, :]
    rows = tile * BLOCK_T + i
    row_in = rows < T
    pmask = row_in & (j < J)
    pt = (b64 * T + rows) * J + j
    r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2 = load_camera(C_ptr, b64, rows, row_in, T, PER_FRAME, ACC)
    fx, fy, cx, cy = load_intrinsics(I_ptr, b64, HAS_INTR, ACC)
    d0, d1, r0, r1, r2, a0, a1, a2, rr, s, C0, C1, C2 = _ray(
        X_ptr, K_ptr, pt, pmask, r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2, fx, fy, cx, cy, ACC
    )
    ty = O_ptr.dtype.element_ty
    tl.store(O_ptr + 3 * pt + 0, (C0 + s * r0).to(ty), mask=pmask)
    tl.store(O_ptr + 3 * pt + 1, (C1 + s * r1).to(ty), mask=pmask)
    tl.store(O_ptr + 3 * pt + 2, (C2 + s * r2).to(ty), mask=pmask)


@triton.jit
def ray_targets_bwd_kernel(
    G_ptr, X_ptr, K_ptr, C_ptr, I_ptr,
    GX_ptr, GK_ptr, GC_ptr, P_ptr, NT_ptr,
    B, T, J, NT_MAX,
    PER_FRAME: tl.constexpr, HAS_INTR: tl.constexpr,
    NEED_K: tl.constexpr, NEED_CAM: tl.constexpr, NEED_INTR: tl.constexpr,
    ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
):
    n_tiles = tl.cdiv(T, BLOCK_T)
    pid = tl.program_id(0)
    b = pid // n_tiles
    tile = pid % n_tiles
    tl.store(NT_ptr, n_tiles, mask=pid == 0)
    b64 = b.to(tl.int64)
    i = tl.arange(0, BLOCK_T)[:, None]
    j = tl.arange(0, BLOCK_J)[None, :]
    rows = tile * BLOCK_T + i
    row_in = rows < T
    pmask = row_in & (j < J)
    pt = (b64 * T + rows) * J + j
    r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2 = load_camera(C_ptr, b64, rows, row_in, T, PER_FRAME, ACC)
    fx, fy, cx, cy = load_intrinsics(I_ptr, b64, HAS_INTR, ACC)
    d0, d1, r0, r1, r2, a0, a1, a2, rr, s, C0, C1, C2 = _ray(
        X_ptr, K_ptr, pt, pmask, r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2, fx, fy, cx, cy, ACC
    )
    G0 = tl.load(G_ptr + 3 * pt + 0, mask=pmask, other=0.0).to(ACC)
    G1 = tl.load(G_ptr + 3 * pt + 1, mask=pmask, other=0.0).to(ACC)
    G2 = tl.load(G_ptr + 3 * pt + 2, mask=pmask, other=0.0).to(ACC)

    inv_rr = 1.0 / rr
    Gr = G0 * r0 + G1 * r1 + G2 * r2
    gX0 = Gr * r0 * inv_rr
    gX1 = Gr * r1 * inv_rr
    gX2 = Gr * r2 * inv_rr
    ty = GX_ptr.dtype.element_ty
    tl.store(GX_ptr + 3 * pt + 0, gX0.to(ty), mask=pmask)
    tl.store(GX_ptr + 3 * pt + 1, gX1.to(ty), mask=pmask)
    tl.store(GX_ptr + 3 * pt + 2, gX2.to(ty), mask=pmask)
    if NEED_K or NEED_CAM or NEED_INTR:
        gC0 = G0 - gX0
        gC1 = G1 - gX1
        gC2 = G2 - gX2
        gr0 = s * G0 + Gr * (a0 - 2.0 * s * r0) * inv_rr
        gr1 = s * G1 + Gr * (a1 - 2.0 * s * r1) * inv_rr
        gr2 = s * G2 + Gr * (a2 - 2.0 * s * r2) * inv_rr
        # r = R^T d  ->  dL/dd = R dL/dr (the third component, d2 = 1, is a constant)
        gd0 = r00 * gr0 + r01 * gr1 + r02 * gr2
        gd1 = r10 * gr0 + r11 * gr1 + r12 * gr2
        if NEED_K:
            tl.store(GK_ptr + 2 * pt + 0, (gd0 / fx).to(ty), mask=pmask)
            tl.store(GK_ptr + 2 * pt + 1, (gd1 / fy).to(ty), mask=pmask)
        part = P_ptr + (b64 * NT_MAX + tile) * 16
        if NEED_CAM:
            # dR_ik = d_i gr_k - t_i gC_k ; dt_i = -(R gC)_i. Out-of-range lanes hold
            # garbage (R = 0 -> |r| = 0) and are zeroed before the sums.
            gC0 = tl.where(pmask, gC0, 0.0)
            gC1 = tl.where(pmask, gC1, 0.0)
            gC2 = tl.where(pmask, gC2, 0.0)
            gr0 = tl.where(pmask, gr0, 0.0)
            gr1 = tl.where(pmask, gr1, 0.0)
            gr2 = tl.where(pmask, gr2, 0.0)
            e00 = d0 * gr0 - t0 * gC0
            e01 = d0 * gr1 - t0 * gC1
            e02 = d0 * gr2 - t0 * gC2
            e03 = -(r00 * gC0 + r01 * gC1 + r02 * gC2)
            e10 = d1 * gr0 - t1 * gC0
            e11 = d1 * gr1 - t1 * gC1
            e12 = d1 * gr2 - t1 * gC2
            e13 = -(r10 * gC0 + r11 * gC1 + r12 * gC2)
            e20 = gr0 - t2 * gC0
            e21 = gr1 - t2 * gC1
            e22 = gr2 - t2 * gC2
            e23 = -(r20 * gC0 + r21 * gC1 + r22 * gC2)
            if PER_FRAME:
                base = GC_ptr + (b64 * T + rows) * 12
                cty = GC_ptr.dtype.element_ty
                tl.store(base + 0, tl.sum(e00, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 1, tl.sum(e01, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 2, tl.sum(e02, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 3, tl.sum(e03, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 4, tl.sum(e10, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 5, tl.sum(e11, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 6, tl.sum(e12, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 7, tl.sum(e13, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 8, tl.sum(e20, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 9, tl.sum(e21, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 10, tl.sum(e22, axis=1)[:, None].to(cty), mask=row_in)
                tl.store(base + 11, tl.sum(e23, axis=1)[:, None].to(cty), mask=row_in)
            else:
                tl.store(part + 0, tl.sum(e00))
                tl.store(part + 1, tl.sum(e01))
                tl.store(part + 2, tl.sum(e02))
                tl.store(part + 3, tl.sum(e03))
                tl.store(part + 4, tl.sum(e10))
                tl.store(part + 5, tl.sum(e11))
                tl.store(part + 6, tl.sum(e12))
                tl.store(part + 7, tl.sum(e13))
                tl.store(part + 8, tl.sum(e20))
                tl.store(part + 9, tl.sum(e21))
                tl.store(part + 10, tl.sum(e22))
                tl.store(part + 11, tl.sum(e23))
        if NEED_INTR:
            hu = tl.where(pmask, gd0 / fx, 0.0)
            hv = tl.where(pmask, gd1 / fy, 0.0)
            tl.store(part + 12, -tl.sum(hu * d0))
            tl.store(part + 13, -tl.sum(hv * d1))
            tl.store(part + 14, -tl.sum(hu))
            tl.store(part + 15, -tl.sum(hv))


_fwd = Launcher(ray_targets_fwd_kernel, halo=0, min_block_t=1)
_bwd = Launcher(ray_targets_bwd_kernel, halo=0, min_block_t=1)


def _check(op, joints, keypoints, camera, intrinsics):
    B, T, J = check_joints(op, joints)
    check_same(op, "keypoints", keypoints, joints, (B, T, J, 2))
    per_frame = check_camera(op, joints, camera, intrinsics)
    check_device(op, joints)
    return B, T, J, per_frame


def ray_targets_fwd(joints, keypoints, camera, intrinsics, *, block_t: int | None = None, _wrap: bool = False):
    """``[B, T, J, 3]`` closest points, as ``torch.ops.vmdm_C.ray_targets_fwd``."""
    B, T, J, per_frame = _check("ray_targets_fwd", joints, keypoints, camera, intrinsics)
    joints, keypoints, camera = joints.contiguous(), keypoints.contiguous(), camera.contiguous()
    intrinsics = None if intrinsics is None else intrinsics.contiguous()
    out = torch.empty_like(joints)
    if B * T * J == 0:
        return out
    _fwd(B, T, (joints, keypoints, camera, intrinsics if intrinsics is not None else joints, out, B, T, J),
         dict(PER_FRAME=per_frame, HAS_INTR=intrinsics is not None, ACC=acc_tl_dtype(joints.dtype),
              BLOCK_J=block_j(J)), block_t=block_t, wrap=_wrap)
    return out


def ray_targets_bwd(grad, joints, keypoints, camera, intrinsics, need_keypoints, need_camera, need_intrinsics, *,
                    block_t: int | None = None, _wrap: bool = False):
    """``(grad_joints, grad_keypoints|empty, grad_camera|empty, grad_intrinsics|empty)``."""
    op = "ray_targets_bwd"
    B, T, J, per_frame = _check(op, joints, keypoints, camera, intrinsics)
    if tuple(grad.shape) != (B, T, J, 3):
        raise ValueError(f"{op}: grad: expected shape {[B, T, J, 3]}, got {list(grad.shape)}")
    if grad.device != joints.device:
        raise ValueError(f"{op}: grad: expected device {joints.device}, got {grad.device}")
    if need_intrinsics and intrinsics is None:
        raise ValueError(f"{op}: need_intrinsics is true but no intrinsics were given")
    # Read in the input dtype, as the C++ op does (grad.to(joints.dtype)).
    grad = grad.to(joints.dtype).contiguous()
    joints, keypoints, camera = joints.contiguous(), keypoints.contiguous(), camera.contiguous()
    intrinsics = None if intrinsics is None else intrinsics.contiguous()
    empty = joints.new_empty((0,))
    grad_joints = torch.empty_like(joints)
    grad_keypoints = torch.empty_like(keypoints) if need_keypoints else empty
    grad_camera = torch.empty_like(camera) if need_camera else empty
    grad_intrinsics = joints.new_empty((B, 4)) if need_intrinsics else empty
    if B * T * J == 0:
        for g in (grad_joints, grad_keypoints, grad_camera, grad_intrinsics):
            g.zero_()
        return grad_joints, grad_keypoints, grad_camera, grad_intrinsics
    clip_cam = need_camera and not per_frame
    acc = acc_torch_dtype(joints.dtype)
    acc_tl = acc_tl_dtype(joints.dtype)
    nt_max = _bwd.max_tiles(T, block_t)
    partials = joints.new_empty((B, nt_max, PARTIAL_CAM) if (clip_cam or need_intrinsics) else (1,), dtype=acc)
    ntiles = joints.new_empty((1,), dtype=torch.int32)
    _bwd(B, T,
         (grad, joints, keypoints, camera, intrinsics if intrinsics is not None else joints,
          grad_joints, grad_keypoints if need_keypoints else grad_joints,
          grad_camera if need_camera else grad_joints, partials, ntiles, B, T, J, nt_max),
         dict(PER_FRAME=per_frame, HAS_INTR=intrinsics is not None, NEED_K=bool(need_keypoints),
              NEED_CAM=bool(need_camera), NEED_INTR=bool(need_intrinsics), ACC=acc_tl, BLOCK_J=block_j(J)),
         block_t=block_t, wrap=_wrap)
    finalize_camera_grads(partials, ntiles, B, nt_max, grad_camera if clip_cam else None,
                          grad_intrinsics if need_intrinsics else None, acc_tl, _wrap)
    return grad_joints, grad_keypoints, grad_camera, grad_intrinsics
