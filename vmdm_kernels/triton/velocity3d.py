"""Triton kernels: 3D finite-difference velocity loss (MDM's geometric velocity term).

Same semantics as ``csrc/velocity3d/velocity3d_cpu.cpp``:
``L[b] = sum(W_t W_t+1 |(X_t+1 - X_t) - (Y_t+1 - Y_t)|^2) / sum(W_t W_t+1)``; points with
weight 0 are never read and pairs with product weight 0 are ignored.

Launches: forward = ``velocity3d_fwd_kernel`` (per-tile partials) + ``velocity3d_finalize_kernel``;
backward = ``velocity3d_bwd_kernel`` only. The backward needs the per-sample
denominator before any gradient can be written and the forward signature does
not return it, so every backward program recomputes it from the sample's weights
(in a fixed loop order, so all programs of a sample get the same bits), in chunks
of up to 64 frames. The weights are 4 of the 52 bytes per point the backward
moves; the repeated reads of a sample's weights by its tile programs hit L2 (the
programs of one sample are adjacent on the grid). A separate denominator kernel
would avoid the re-reads at the cost of a second launch, which dominates at the
training batch size.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import FINALIZE_BLOCK_B, Launcher, acc_tl_dtype, acc_torch_dtype, block_j, check_device, check_joints, \
    check_same, launch_simple

__all__ = ["velocity3d_fwd", "velocity3d_bwd", "velocity3d_fwd_kernel", "velocity3d_bwd_kernel"]


@triton.jit
def _load_diff(X_ptr, Y_ptr, W_ptr, pt, pmask, ACC: tl.constexpr):
    """(w, X - Y) of a tile; X - Y is 0 where the weight is 0 (those points are never read)."""
    w = tl.load(W_ptr + pt, mask=pmask, other=0.0).to(ACC)
    active = w != 0
    d0 = tl.load(X_ptr + 3 * pt + 0, mask=active, other=0.0).to(ACC) - tl.load(
        Y_ptr + 3 * pt + 0, mask=active, other=0.0).to(ACC)
    d1 = tl.load(X_ptr + 3 * pt + 1, mask=active, other=0.0).to(ACC) - tl.load(
        Y_ptr + 3 * pt + 1, mask=active, other=0.0).to(ACC)
    d2 = tl.load(X_ptr + 3 * pt + 2, mask=active, other=0.0).to(ACC) - tl.load(
        Y_ptr + 3 * pt + 2, mask=active, other=0.0).to(ACC)
    return w, d0, d1, d2


@triton.jit
def velocity3d_fwd_kernel(
    X_ptr, Y_ptr, W_ptr, P_ptr, NT_ptr,
    B, T, J, NT_MAX,
    ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """One program: sample b, frames [tile * (BLOCK_T-1), +BLOCK_T); sums the pairs starting at its owned rows."""
    n_tiles = tl.cdiv(T, BLOCK_T - 1)
    pid = tl.program_id(0)
    b = pid // n_tiles
    tile = pid % n_tiles
    tl.store(NT_ptr, n_tiles, mask=pid == 0)
    b64 = b.to(tl.int64)
    i = tl.arange(0, BLOCK_T)[:, None]
    j = tl.arange(0, BLOCK_J)[None, :]
    rows = tile * (BLOCK_T - 1) + i
    pmask = (rows < T) & (j < J)
    pt = (b64 * T + rows) * J + j
    w, d0, d1, d2 = _load_diff(X_ptr, Y_ptr, W_ptr, pt, pmask, ACC)
    # Frame t+1 moved to row t inside the tile: every frame is loaded once per tile.
    nxt = tl.minimum(i + 1, BLOCK_T - 1) + tl.zeros([BLOCK_T, BLOCK_J], tl.int32)
    pw = w * tl.gather(w, nxt, 0)
    e0 = tl.gather(d0, nxt, 0) - d0
    e1 = tl.gather(d1, nxt, 0) - d1
    e2 = tl.gather(d2, nxt, 0) - d2
    pair_in = (i < BLOCK_T - 1) & (rows + 1 < T)
    den = tl.sum(tl.where(pair_in, pw, 0.0))
    num = tl.sum(tl.where(pair_in & (pw != 0), pw * (e0 * e0 + e1 * e1 + e2 * e2), 0.0))
    out = P_ptr + (b64 * NT_MAX + tile) * 2
    tl.store(out + 0, num)
    tl.store(out + 1, den)


@triton.jit
def velocity3d_finalize_kernel(P_ptr, NT_ptr, L_ptr, B, NT_MAX, ACC: tl.constexpr, BLOCK_B: tl.constexpr):
    b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = b < B
    n_tiles = tl.load(NT_ptr)
    num = tl.zeros([BLOCK_B], ACC)
    den = tl.zeros([BLOCK_B], ACC)
    base = P_ptr + b.to(tl.int64) * NT_MAX * 2
    for s in range(0, n_tiles):
        num += tl.load(base + 2 * s + 0, mask=bmask, other=0.0)
        den += tl.load(base + 2 * s + 1, mask=bmask, other=0.0)
    loss = tl.where(den != 0, num / tl.where(den != 0, den, 1.0), 0.0)
    tl.store(L_ptr + b, loss.to(L_ptr.dtype.element_ty), mask=bmask)


@triton.jit
def velocity3d_bwd_kernel(
    G_ptr, X_ptr, Y_ptr, W_ptr, GX_ptr, GY_ptr,
    B, T, J,
    NEED_Y: tl.constexpr, ACC: tl.constexpr, DEN_T: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """One program: sample b, frames [tile * (BLOCK_T-2) - 1, +BLOCK_T); owns rows 1..BLOCK_T-2."""
    n_tiles = tl.cdiv(T, BLOCK_T - 2)
    pid = tl.program_id(0)
    b = pid // n_tiles
    tile = pid % n_tiles
    b64 = b.to(tl.int64)
    i = tl.arange(0, BLOCK_T)[:, None]
    j = tl.arange(0, BLOCK_J)[None, :]
    jmask = j < J

    # Denominator sum(W_t W_t+1) of the whole sample, same loop in every program. Chunks of
    # DEN_T frames (up to 64) keep this to a few rounds of loads for typical clips.
    dr = tl.arange(0, DEN_T)[:, None]
    dacc = tl.zeros([DEN_T, BLOCK_J], ACC)
    for c in range(0, T - 1, DEN_T):
        r = c + dr
        m = (r + 1 < T) & jmask
        p = W_ptr + (b64 * T + r) * J + j
        dacc += tl.load(p, mask=m, other=0.0).to(ACC) * tl.load(p + J, mask=m, other=0.0).to(ACC)
    den = tl.sum(dacc)
    g = tl.load(G_ptr + b64).to(ACC)
    coef = tl.where(den != 0, 2.0 * g / tl.where(den != 0, den, 1.0), 0.0)

    rows = tile * (BLOCK_T - 2) - 1 + i
    row_in = (rows >= 0) & (rows < T)
    pmask = row_in & jmask
    own = pmask & (i >= 1) & (i < BLOCK_T - 1)
    pt = (b64 * T + rows) * J + j
    w, d0, d1, d2 = _load_diff(X_ptr, Y_ptr, W_ptr, pt, pmask, ACC)
    nxt = tl.minimum(i + 1, BLOCK_T - 1) + tl.zeros([BLOCK_T, BLOCK_J], tl.int32)
    prv = tl.maximum(i - 1, 0) + tl.zeros([BLOCK_T, BLOCK_J], tl.int32)
    pw = w * tl.gather(w, nxt, 0)
    pair = (rows + 1 < T) & (pw != 0)
    cpw = coef * pw
    # Per-pair term coef * pw * e at the pair's first row; frame t gets (pair t-1) - (pair t).
    p0 = tl.where(pair, cpw * (tl.gather(d0, nxt, 0) - d0), 0.0)
    p1 = tl.where(pair, cpw * (tl.gather(d1, nxt, 0) - d1), 0.0)
    p2 = tl.where(pair, cpw * (tl.gather(d2, nxt, 0) - d2), 0.0)
    g0 = tl.gather(p0, prv, 0) - p0
    g1 = tl.gather(p1, prv, 0) - p1
    g2 = tl.gather(p2, prv, 0) - p2
    ty = GX_ptr.dtype.element_ty
    tl.store(GX_ptr + 3 * pt + 0, g0.to(ty), mask=own)
    tl.store(GX_ptr + 3 * pt + 1, g1.to(ty), mask=own)
    tl.store(GX_ptr + 3 * pt + 2, g2.to(ty), mask=own)
    if NEED_Y:
        tl.store(GY_ptr + 3 * pt + 0, (-g0).to(ty), mask=own)
        tl.store(GY_ptr + 3 * pt + 1, (-g1).to(ty), mask=own)
        tl.store(GY_ptr + 3 * pt + 2, (-g2).to(ty), mask=own)


_fwd = Launcher(velocity3d_fwd_kernel, halo=1, min_block_t=2)
_bwd = Launcher(velocity3d_bwd_kernel, halo=2, min_block_t=4)


def _check(op, joints, target, weights):
    B, T, J = check_joints(op, joints)
    check_same(op, "target", target, joints, (B, T, J, 3))
    check_same(op, "weights", weights, joints, (B, T, J))
    check_device(op, joints)
    return B, T, J


def velocity3d_fwd(joints, target, weights, *, block_t: int | None = None, _wrap: bool = False) -> torch.Tensor:
    """Per-sample loss ``[B]`` (input dtype) as ``torch.ops.vmdm_C.velocity3d_fwd``."""
    B, T, J = _check("velocity3d_fwd", joints, target, weights)
    joints, target, weights = joints.contiguous(), target.contiguous(), weights.contiguous()
    loss = joints.new_empty((B,))
    if B == 0:
        return loss
    if T * J == 0:
        return loss.zero_()
    acc = acc_torch_dtype(joints.dtype)
    acc_tl = acc_tl_dtype(joints.dtype)
    nt_max = _fwd.max_tiles(T, block_t)
    partials = joints.new_empty((B, nt_max, 2), dtype=acc)
    ntiles = joints.new_empty((1,), dtype=torch.int32)
    _fwd(B, T, (joints, target, weights, partials, ntiles, B, T, J, nt_max),
         dict(ACC=acc_tl, BLOCK_J=block_j(J)), block_t=block_t, wrap=_wrap)
    launch_simple(velocity3d_finalize_kernel, (triton.cdiv(B, FINALIZE_BLOCK_B),),
                  (partials, ntiles, loss, B, nt_max), dict(ACC=acc_tl, BLOCK_B=FINALIZE_BLOCK_B), _wrap)
    return loss


def velocity3d_bwd(grad, joints, target, weights, need_target, *, block_t: int | None = None, _wrap: bool = False):
    """``(grad_joints, grad_target|empty)`` as ``torch.ops.vmdm_C.velocity3d_bwd``."""
    op = "velocity3d_bwd"
    B, T, J = _check(op, joints, target, weights)
    if tuple(grad.shape) != (B,):
        raise ValueError(f"{op}: grad: expected shape [{B}], got {list(grad.shape)}")
    if grad.device != joints.device:
        raise ValueError(f"{op}: grad: expected device {joints.device}, got {grad.device}")
    joints, target, weights, grad = joints.contiguous(), target.contiguous(), weights.contiguous(), grad.contiguous()
    grad_joints = torch.empty_like(joints)
    grad_target = torch.empty_like(target) if need_target else joints.new_empty((0,))
    if B * T * J == 0:
        return grad_joints.zero_(), grad_target.zero_()
    _bwd(B, T, (grad, joints, target, weights, grad_joints, grad_target if need_target else grad_joints, B, T, J),
         dict(NEED_Y=bool(need_target), ACC=acc_tl_dtype(joints.dtype), BLOCK_J=block_j(J),
              DEN_T=min(64, triton.next_power_of_2(max(T - 1, 1)))),
         block_t=block_t, wrap=_wrap)
    return grad_joints, grad_target
