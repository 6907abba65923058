"""Triton kernels: fused depth-weighted 2D reprojection + 2D velocity loss.

Same math and edge-case semantics as ``csrc/reproj_vel/reproj_vel_cpu.cpp``
(see ``vmdm_kernels/ref/reproj_vel.py`` for the formulas):

- a point with weight 0 is never read (masked loads), so NaN/Inf there cannot leak;
- the near-plane guard is ``not (z <= z_min)`` so a NaN depth propagates;
- guarded points contribute neither loss nor gradient, and divide by 1 instead of z.

Launches per pass:

- forward: ``reproj_vel_fwd_kernel`` (one program per (sample, time tile); each writes
  6 partial sums) + ``reproj_vel_finalize_kernel`` (one program per 32 samples; adds
  the partials in tile order, applies the sample depth weight and normalisation).
- backward: ``reproj_vel_bwd_kernel`` (writes joint/keypoint gradients and per-frame
  camera gradients directly) + ``sum_partials_kernel`` only when a per-clip camera or
  intrinsics gradient is wanted (those sum over time: per-tile partials, added in order).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    FINALIZE_BLOCK_B,
    PARTIAL_CAM,
    Launcher,
    acc_tl_dtype,
    acc_torch_dtype,
    block_j,
    check_camera,
    check_device,
    check_joints,
    check_same,
    depth_pow,
    finalize_camera_grads,
    launch_simple,
    load_camera,
    load_intrinsics,
    pow_kind,
    store_cam_partial,
    store_cam_rows,
)

__all__ = ["reproj_vel_fwd", "reproj_vel_bwd", "reproj_vel_fwd_kernel", "reproj_vel_bwd_kernel"]

DEPTH_NONE, DEPTH_SAMPLE, DEPTH_POINT = 0, 1, 2
N_FWD_PARTIALS = 8  # num_pos, den_pos, num_vel, den_vel, z_sum, z_count (+2 padding)


@triton.jit
def _observe(
    X_ptr, K_ptr, W_ptr, pt, pmask,
    r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2,
    fx, fy, cx, cy, z_min,
    ACC: tl.constexpr,
):
    """Projects a tile of points. Mirrors observe_point in csrc/common/camera_math.h.

    Returns (w, valid, z, ru, rv, xc, yc, X0, X1, X2) with ``(ru, rv)`` the residual
    projection - keypoint; every value is 0 (z: 1) where the point is not valid.
    """
    w = tl.load(W_ptr + pt, mask=pmask, other=0.0).to(ACC)
    active = w != 0
    # Ignored points are never read: their inputs may be NaN (missing detections).
    X0 = tl.load(X_ptr + 3 * pt + 0, mask=active, other=0.0).to(ACC)
    X1 = tl.load(X_ptr + 3 * pt + 1, mask=active, other=0.0).to(ACC)
    X2 = tl.load(X_ptr + 3 * pt + 2, mask=active, other=0.0).to(ACC)
    xc = r00 * X0 + r01 * X1 + r02 * X2 + t0
    yc = r10 * X0 + r11 * X1 + r12 * X2 + t1
    z = r20 * X0 + r21 * X1 + r22 * X2 + t2
    # Written as not (z <= z_min) so a NaN depth is "valid" and propagates.
    behind = z <= z_min
    valid = active & (behind == 0)
    z = tl.where(valid, z, 1.0)
    inv_z = 1.0 / z
    ku = tl.load(K_ptr + 2 * pt + 0, mask=valid, other=0.0).to(ACC)
    kv = tl.load(K_ptr + 2 * pt + 1, mask=valid, other=0.0).to(ACC)
    ru = tl.where(valid, fx * xc * inv_z + cx - ku, 0.0)
    rv = tl.where(valid, fy * yc * inv_z + cy - kv, 0.0)
    return w, valid, z, ru, rv, xc, yc, X0, X1, X2


@triton.jit
def _axis_weights(z, power, fx, fy, MODE: tl.constexpr, POW_KIND: tl.constexpr):
    """(ax, ay): z**p / f**2 in point mode, 1 otherwise (sample mode weighs per clip)."""
    if MODE == 2:
        zp = depth_pow(z, power, POW_KIND)
        return zp / (fx * fx), zp / (fy * fy)
    else:
        one = tl.full(z.shape, 1.0, z.dtype)
        return one, one


@triton.jit
def reproj_vel_fwd_kernel(
    X_ptr, K_ptr, C_ptr, W_ptr, I_ptr,
    P_ptr, NT_ptr,
    B, T, J, NT_MAX, z_min: tl.float64, power: tl.float64,
    PER_FRAME: tl.constexpr, HAS_INTR: tl.constexpr,
    MODE: tl.constexpr, POW_KIND: tl.constexpr,
    WITH_POS: tl.constexpr, WITH_VEL: tl.constexpr,
    ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """One program: sample b, frames [tile * (BLOCK_T-1), +BLOCK_T); owns all but the last row.

    Writes (num_pos, den_pos, num_vel, den_vel, z_sum, z_count) of its owned frames
    and of the pairs starting at them to P[b, tile, :].
    """
    # The scalars arrive as float64 (a plain Python float would be passed as float32 and
    # round z_min and p for float64 inputs); the math runs in the accumulation dtype.
    z_min = tl.full((), z_min, ACC)
    power = tl.full((), power, ACC)
    n_tiles = tl.cdiv(T, BLOCK_T - 1)
    pid = tl.program_id(0)
    b = pid // n_tiles
    tile = pid % n_tiles
    tl.store(NT_ptr, n_tiles, mask=pid == 0)
    b64 = b.to(tl.int64)

    i = tl.arange(0, BLOCK_T)[:, None]
    j = tl.arange(0, BLOCK_J)[None, :]
    rows = tile * (BLOCK_T - 1) + i
    row_in = rows < T
    pmask = row_in & (j < J)
    pt = (b64 * T + rows) * J + j
    own = row_in & (i < BLOCK_T - 1)

    r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2 = load_camera(C_ptr, b64, rows, row_in, T, PER_FRAME, ACC)
    fx, fy, cx, cy = load_intrinsics(I_ptr, b64, HAS_INTR, ACC)
    w, valid, z, ru, rv, xc, yc, X0, X1, X2 = _observe(
        X_ptr, K_ptr, W_ptr, pt, pmask, r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2,
        fx, fy, cx, cy, z_min, ACC,
    )

    vown = valid & own
    den_pos = tl.sum(tl.where(own, w, 0.0))
    z_sum = tl.sum(tl.where(vown, z, 0.0))
    z_cnt = tl.sum(vown.to(ACC))
    num_pos = den_pos * 0.0
    if WITH_POS:
        ax, ay = _axis_weights(z, power, fx, fy, MODE, POW_KIND)
        num_pos = tl.sum(tl.where(vown, w * (ax * ru * ru + ay * rv * rv), 0.0))

    num_vel = den_pos * 0.0
    den_vel = den_pos * 0.0
    if WITH_VEL:
        # Frame t+1's values moved to row t: the next frame is projected once, by this tile.
        nxt = tl.minimum(i + 1, BLOCK_T - 1) + tl.zeros([BLOCK_T, BLOCK_J], tl.int32)
        w_n = tl.gather(w, nxt, 0)
        valid_n = tl.gather(valid.to(tl.int32), nxt, 0) != 0
        ru_n = tl.gather(ru, nxt, 0)
        rv_n = tl.gather(rv, nxt, 0)
        pair_in = own & (rows + 1 < T)
        pw = w * w_n
        den_vel = tl.sum(tl.where(pair_in, pw, 0.0))
        pv = pair_in & valid & valid_n
        eu = ru_n - ru
        ev = rv_n - rv
        if MODE == 2:
            z_n = tl.gather(z, nxt, 0)
            vx, vy = _axis_weights(0.5 * (z + z_n), power, fx, fy, MODE, POW_KIND)
            num_vel = tl.sum(tl.where(pv, pw * (vx * eu * eu + vy * ev * ev), 0.0))
        else:
            num_vel = tl.sum(tl.where(pv, pw * (eu * eu + ev * ev), 0.0))

    out = P_ptr + (b64 * NT_MAX + tile) * 8
    tl.store(out + 0, num_pos)
    tl.store(out + 1, den_pos)
    tl.store(out + 2, num_vel)
    tl.store(out + 3, den_vel)
    tl.store(out + 4, z_sum)
    tl.store(out + 5, z_cnt)


@triton.jit
def reproj_vel_finalize_kernel(
    P_ptr, NT_ptr, LP_ptr, LV_ptr, S_ptr,
    B, NT_MAX, power: tl.float64,
    MODE: tl.constexpr, POW_KIND: tl.constexpr,
    WITH_POS: tl.constexpr, WITH_VEL: tl.constexpr,
    ACC: tl.constexpr, BLOCK_B: tl.constexpr,
):
    """Adds each sample's tile partials in tile order; writes losses and stats (w_b, sum W, sum pair W)."""
    power = tl.full((), power, ACC)
    b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = b < B
    n_tiles = tl.load(NT_ptr)
    num_pos = tl.zeros([BLOCK_B], ACC)
    den_pos = tl.zeros([BLOCK_B], ACC)
    num_vel = tl.zeros([BLOCK_B], ACC)
    den_vel = tl.zeros([BLOCK_B], ACC)
    z_sum = tl.zeros([BLOCK_B], ACC)
    z_cnt = tl.zeros([BLOCK_B], ACC)
    base = P_ptr + b.to(tl.int64) * NT_MAX * 8
    for s in range(0, n_tiles):
        p = base + s * 8
        num_pos += tl.load(p + 0, mask=bmask, other=0.0)
        den_pos += tl.load(p + 1, mask=bmask, other=0.0)
        num_vel += tl.load(p + 2, mask=bmask, other=0.0)
        den_vel += tl.load(p + 3, mask=bmask, other=0.0)
        z_sum += tl.load(p + 4, mask=bmask, other=0.0)
        z_cnt += tl.load(p + 5, mask=bmask, other=0.0)
    if MODE == 1:
        has_z = z_cnt > 0
        wb = tl.where(has_z, depth_pow(z_sum / tl.where(has_z, z_cnt, 1.0), power, POW_KIND), 0.0)
    else:
        wb = tl.full([BLOCK_B], 1.0, ACC)
    zero = tl.zeros([BLOCK_B], ACC)
    pos = zero
    vel = zero
    if WITH_POS:
        pos = tl.where(den_pos != 0, wb * num_pos / tl.where(den_pos != 0, den_pos, 1.0), 0.0)
    if WITH_VEL:
        vel = tl.where(den_vel != 0, wb * num_vel / tl.where(den_vel != 0, den_vel, 1.0), 0.0)
    tl.store(LP_ptr + b, pos.to(LP_ptr.dtype.element_ty), mask=bmask)
    tl.store(LV_ptr + b, vel.to(LV_ptr.dtype.element_ty), mask=bmask)
    tl.store(S_ptr + 3 * b + 0, wb, mask=bmask)
    tl.store(S_ptr + 3 * b + 1, den_pos, mask=bmask)
    tl.store(S_ptr + 3 * b + 2, den_vel, mask=bmask)


@triton.jit
def reproj_vel_bwd_kernel(
    GP_ptr, GV_ptr, X_ptr, K_ptr, C_ptr, W_ptr, I_ptr, S_ptr,
    GX_ptr, GK_ptr, GC_ptr, P_ptr, NT_ptr,
    B, T, J, NT_MAX, z_min: tl.float64, power: tl.float64,
    PER_FRAME: tl.constexpr, HAS_INTR: tl.constexpr,
    MODE: tl.constexpr, POW_KIND: tl.constexpr,
    WITH_POS: tl.constexpr, WITH_VEL: tl.constexpr,
    NEED_K: tl.constexpr, NEED_CAM: tl.constexpr, NEED_INTR: tl.constexpr,
    ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """One program: sample b, frames [tile * (BLOCK_T-2) - 1, +BLOCK_T); owns rows 1..BLOCK_T-2.

    A frame's gradient needs the pair before it and the pair after it, hence one halo
    row on each side. Per-pair gradient terms are formed once at the pair's first
    row and moved one row down for the second frame.
    """
    z_min = tl.full((), z_min, ACC)
    power = tl.full((), power, ACC)
    n_tiles = tl.cdiv(T, BLOCK_T - 2)
    pid = tl.program_id(0)
    b = pid // n_tiles
    tile = pid % n_tiles
    tl.store(NT_ptr, n_tiles, mask=pid == 0)
    b64 = b.to(tl.int64)

    # dL/d(term) = upstream * w_b / denominator (the 2 of the square folded in).
    wb = tl.load(S_ptr + 3 * b64 + 0).to(ACC)
    if WITH_POS:
        gp = tl.load(GP_ptr + b64).to(ACC)
        dp = tl.load(S_ptr + 3 * b64 + 1).to(ACC)
        cpos = tl.where(dp != 0, 2.0 * gp * wb / tl.where(dp != 0, dp, 1.0), 0.0)
    if WITH_VEL:
        gv = tl.load(GV_ptr + b64).to(ACC)
        dv = tl.load(S_ptr + 3 * b64 + 2).to(ACC)
        cvel = tl.where(dv != 0, 2.0 * gv * wb / tl.where(dv != 0, dv, 1.0), 0.0)

    i = tl.arange(0, BLOCK_T)[:, None]
    j = tl.arange(0, BLOCK_J)[None, :]
    rows = tile * (BLOCK_T - 2) - 1 + i
    row_in = (rows >= 0) & (rows < T)
    pmask = row_in & (j < J)
    pt = (b64 * T + rows) * J + j
    own_row = row_in & (i >= 1) & (i < BLOCK_T - 1)
    own = own_row & (j < J)

    r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2 = load_camera(C_ptr, b64, rows, row_in, T, PER_FRAME, ACC)
    fx, fy, cx, cy = load_intrinsics(I_ptr, b64, HAS_INTR, ACC)
    w, valid, z, ru, rv, xc, yc, X0, X1, X2 = _observe(
        X_ptr, K_ptr, W_ptr, pt, pmask, r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2,
        fx, fy, cx, cy, z_min, ACC,
    )

    gu = tl.zeros([BLOCK_T, BLOCK_J], ACC)
    gv_ = tl.zeros([BLOCK_T, BLOCK_J], ACC)
    if WITH_POS:
        ax, ay = _axis_weights(z, power, fx, fy, MODE, POW_KIND)
        gu = tl.where(valid, cpos * w * ax * ru, 0.0)
        gv_ = tl.where(valid, cpos * w * ay * rv, 0.0)
    if WITH_VEL:
        nxt = tl.minimum(i + 1, BLOCK_T - 1) + tl.zeros([BLOCK_T, BLOCK_J], tl.int32)
        prv = tl.maximum(i - 1, 0) + tl.zeros([BLOCK_T, BLOCK_J], tl.int32)
        w_n = tl.gather(w, nxt, 0)
        valid_n = tl.gather(valid.to(tl.int32), nxt, 0) != 0
        ru_n = tl.gather(ru, nxt, 0)
        rv_n = tl.gather(rv, nxt, 0)
        # Pair (row, row+1) is real only when both frames exist; the last tile row has no
        # next frame in the tile, but it is never owned and its pair is never needed.
        pv = valid & valid_n & (rows >= 0) & (rows + 1 < T)
        c = cvel * w * w_n
        if MODE == 2:
            z_n = tl.gather(z, nxt, 0)
            vx, vy = _axis_weights(0.5 * (z + z_n), power, fx, fy, MODE, POW_KIND)
            pu = tl.where(pv, c * vx * (ru_n - ru), 0.0)
            pvv = tl.where(pv, c * vy * (rv_n - rv), 0.0)
        else:
            pu = tl.where(pv, c * (ru_n - ru), 0.0)
            pvv = tl.where(pv, c * (rv_n - rv), 0.0)
        # Pair (t, t+1) pulls frame t along -e and frame t+1 along +e.
        gu = gu - pu + tl.gather(pu, prv, 0)
        gv_ = gv_ - pvv + tl.gather(pvv, prv, 0)

    # project_backward of the C++ kernels, only for valid points.
    inv_z = 1.0 / z
    m = valid & own
    gxc = tl.where(m, gu * fx * inv_z, 0.0)
    gyc = tl.where(m, gv_ * fy * inv_z, 0.0)
    gz = tl.where(m, -(gu * fx * xc + gv_ * fy * yc) * inv_z * inv_z, 0.0)
    gX0 = r00 * gxc + r10 * gyc + r20 * gz
    gX1 = r01 * gxc + r11 * gyc + r21 * gz
    gX2 = r02 * gxc + r12 * gyc + r22 * gz
    ty = GX_ptr.dtype.element_ty
    tl.store(GX_ptr + 3 * pt + 0, gX0.to(ty), mask=own)
    tl.store(GX_ptr + 3 * pt + 1, gX1.to(ty), mask=own)
    tl.store(GX_ptr + 3 * pt + 2, gX2.to(ty), mask=own)
    if NEED_K:
        # The loss depends on keypoints only through (projection - keypoint).
        tl.store(GK_ptr + 2 * pt + 0, (-gu).to(ty), mask=own)
        tl.store(GK_ptr + 2 * pt + 1, (-gv_).to(ty), mask=own)
    part = P_ptr + (b64 * NT_MAX + tile) * 16
    if NEED_CAM:
        if PER_FRAME:
            store_cam_rows(GC_ptr, b64, rows, own_row, T, gxc, gyc, gz, X0, X1, X2)
        else:
            store_cam_partial(part, gxc, gyc, gz, X0, X1, X2)
    if NEED_INTR:
        tl.store(part + 12, tl.sum(tl.where(m, gu * xc * inv_z, 0.0)))
        tl.store(part + 13, tl.sum(tl.where(m, gv_ * yc * inv_z, 0.0)))
        tl.store(part + 14, tl.sum(tl.where(m, gu, 0.0)))
        tl.store(part + 15, tl.sum(tl.where(m, gv_, 0.0)))


_fwd = Launcher(reproj_vel_fwd_kernel, halo=1, min_block_t=2)
_bwd = Launcher(reproj_vel_bwd_kernel, halo=2, min_block_t=4)


def _check(op, joints, keypoints, camera, weights, intrinsics, depth_mode, z_min):
    B, T, J = check_joints(op, joints)
    check_same(op, "keypoints", keypoints, joints, (B, T, J, 2))
    check_same(op, "weights", weights, joints, (B, T, J))
    per_frame = check_camera(op, joints, camera, intrinsics)
    if depth_mode not in (DEPTH_NONE, DEPTH_SAMPLE, DEPTH_POINT):
        raise ValueError(f"{op}: depth_mode: expected 0 (none), 1 (sample) or 2 (point), got {depth_mode}")
    if not z_min >= 0:
        raise ValueError(f"{op}: z_min: expected a non-negative near-plane depth, got {z_min}")
    check_device(op, joints)
    return B, T, J, per_frame


def reproj_vel_fwd(
    joints: torch.Tensor,
    keypoints: torch.Tensor,
    camera: torch.Tensor,
    weights: torch.Tensor,
    intrinsics: torch.Tensor | None,
    depth_mode: int,
    depth_power: float,
    z_min: float,
    with_pos: bool,
    with_vel: bool,
    *,
    block_t: int | None = None,
    _wrap: bool = False,
):
    """``(loss_pos [B], loss_vel [B], stats [B, 3])`` as ``torch.ops.vmdm_C.reproj_vel_fwd``.

    ``block_t`` pins the tile height (tests, benchmarks); None lets the GPU autotuner choose.
    """
    B, T, J, per_frame = _check("reproj_vel_fwd", joints, keypoints, camera, weights, intrinsics, depth_mode, z_min)
    joints, keypoints, camera, weights = (t.contiguous() for t in (joints, keypoints, camera, weights))
    intrinsics = None if intrinsics is None else intrinsics.contiguous()
    acc = acc_torch_dtype(joints.dtype)
    loss_pos = joints.new_empty((B,))
    loss_vel = joints.new_empty((B,))
    stats = joints.new_empty((B, 3), dtype=acc)
    if B == 0:
        return loss_pos, loss_vel, stats
    nt_max = _fwd.max_tiles(max(T, 1), block_t)
    partials = joints.new_zeros((B, nt_max, N_FWD_PARTIALS), dtype=acc) if T * J == 0 else joints.new_empty(
        (B, nt_max, N_FWD_PARTIALS), dtype=acc
    )
    ntiles = joints.new_empty((1,), dtype=torch.int32)
    acc_tl = acc_tl_dtype(joints.dtype)
    common = dict(MODE=int(depth_mode), POW_KIND=pow_kind(depth_power), WITH_POS=bool(with_pos),
                  WITH_VEL=bool(with_vel), ACC=acc_tl)
    if T * J == 0:
        # Nothing to project: the finaliser sees zero sums (loss 0, w_b as for an empty clip).
        ntiles.fill_(1)
    else:
        _fwd(
            B, T,
            (joints, keypoints, camera, weights, intrinsics if intrinsics is not None else joints,
             partials, ntiles, B, T, J, nt_max, float(z_min), float(depth_power)),
            dict(PER_FRAME=per_frame, HAS_INTR=intrinsics is not None, BLOCK_J=block_j(J), **common),
            block_t=block_t, wrap=_wrap,
        )
    launch_simple(
        reproj_vel_finalize_kernel,
        (triton.cdiv(B, FINALIZE_BLOCK_B),),
        (partials, ntiles, loss_pos, loss_vel, stats, B, nt_max, float(depth_power)),
        dict(BLOCK_B=FINALIZE_BLOCK_B, **common),
        _wrap,
    )
    return loss_pos, loss_vel, stats


def reproj_vel_bwd(
    grad_pos: torch.Tensor,
    grad_vel: torch.Tensor,
    joints: torch.Tensor,
    keypoints: torch.Tensor,
    camera: torch.Tensor,
    weights: torch.Tensor,
    intrinsics: torch.Tensor | None,
    stats: torch.Tensor,
    depth_mode: int,
    depth_power: float,
    z_min: float,
    with_pos: bool,
    with_vel: bool,
    need_keypoints: bool,
    need_camera: bool,
    need_intrinsics: bool,
    *,
    block_t: int | None = None,
    _wrap: bool = False,
):
    """``(grad_joints, grad_keypoints|empty, grad_camera|empty, grad_intrinsics|empty)``."""
    op = "reproj_vel_bwd"
    B, T, J, per_frame = _check(op, joints, keypoints, camera, weights, intrinsics, depth_mode, z_min)
    for name, t, shape in (("grad_pos", grad_pos, (B,)), ("grad_vel", grad_vel, (B,)), ("stats", stats, (B, 3))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{op}: {name}: expected shape {list(shape)}, got {list(t.shape)}")
        if t.device != joints.device:
            raise ValueError(f"{op}: {name}: expected device {joints.device}, got {t.device}")
    if need_intrinsics and intrinsics is None:
        raise ValueError(f"{op}: need_intrinsics is true but no intrinsics were given")
    joints, keypoints, camera, weights = (t.contiguous() for t in (joints, keypoints, camera, weights))
    intrinsics = None if intrinsics is None else intrinsics.contiguous()
    grad_pos, grad_vel, stats = grad_pos.contiguous(), grad_vel.contiguous(), stats.contiguous()
    acc = acc_torch_dtype(joints.dtype)
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
    nt_max = _bwd.max_tiles(T, block_t)
    partials = joints.new_empty((B, nt_max, PARTIAL_CAM) if (clip_cam or need_intrinsics) else (1,), dtype=acc)
    ntiles = joints.new_empty((1,), dtype=torch.int32)
    acc_tl = acc_tl_dtype(joints.dtype)
    _bwd(
        B, T,
        (grad_pos, grad_vel, joints, keypoints, camera, weights, intrinsics if intrinsics is not None else joints,
         stats, grad_joints, grad_keypoints if need_keypoints else grad_joints,
         grad_camera if need_camera else grad_joints, partials, ntiles,
         B, T, J, nt_max, float(z_min), float(depth_power)),
        dict(PER_FRAME=per_frame, HAS_INTR=intrinsics is not None, MODE=int(depth_mode),
             POW_KIND=pow_kind(depth_power), WITH_POS=bool(with_pos), WITH_VEL=bool(with_vel),
             NEED_K=bool(need_keypoints), NEED_CAM=bool(need_camera), NEED_INTR=bool(need_intrinsics),
             ACC=acc_tl, BLOCK_J=block_j(J)),
        block_t=block_t, wrap=_wrap,
    )
    finalize_camera_grads(
        partials, ntiles, B, nt_max, grad_camera if clip_cam else None,
        grad_intrinsics if need_intrinsics else None, acc_tl, _wrap,
    )
    return grad_joints, grad_keypoints, grad_camera, grad_intrinsics
