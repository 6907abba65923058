"""Triton kernels: ``recover_from_ric`` (features -> joints) and its hand-written backward.

Same semantics as ``csrc/common/ric_math.h`` (math: :mod:`vmdm_kernels.ref.recover_from_ric`).
The heading and the root's ground position are running sums over time, so the compiled
C++/CUDA kernels scan each clip with one thread. Here one program owns one clip and walks
it in chunks of ``BLOCK_T`` frames: inside a chunk the running sums are block-wide scans
(``tl.cumsum``), between chunks a scalar carry; the joints of the chunk's frames are placed
from the same registers. One launch forward, one backward, no scratch memory.

Frame ``t`` (for ``t >= 1``) takes its turn and step from row ``t - 1``:
``yaw_t = -2 sum_{k<t} f_k[0]`` and ``root_t = sum_{k<t} R(yaw_{k+1}) (f_k[1], f_k[2])``.

Backward, the gradients of the running sums are suffix sums over later frames, so the
chunks are visited from the last to the first. The heading of a frame is needed there
too, before the frames before it have been visited; it is the whole clip's turn minus
the turn still to come, ``sum_{k<t} = H - sum_{k>=t}``, with ``H`` summed in a first,
cheap pass over channel 0 (one value per frame; the float error of the difference is that
of a sum of ``T`` terms, as for the forward's running sum).

Accumulation in float32 for float16/bfloat16/float32 inputs, float64 for float64 inputs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import Launcher, TileConfig, acc_tl_dtype, block_j, check_device

__all__ = ["recover_from_ric_fwd", "recover_from_ric_bwd", "recover_from_ric_fwd_kernel",
           "recover_from_ric_bwd_kernel"]


@triton.jit
def _channel(row_ptr, c, mask, MEAN_ptr, STD_ptr, HAS_STATS: tl.constexpr, ACC: tl.constexpr):
    """Channel(s) ``c`` at ``row_ptr`` (features of one frame, or a column of frames),
    denormalised when ``mean``/``std`` are given; 0 where ``mask`` is off."""
    x = tl.load(row_ptr + c, mask=mask, other=0.0).to(ACC)
    if HAS_STATS:
        c = c + tl.zeros(mask.shape, tl.int32)  # a block of channels even where c is one channel
        x = x * tl.load(STD_ptr + c, mask=mask, other=0.0).to(ACC) + tl.load(MEAN_ptr + c, mask=mask, other=0.0).to(ACC)
    return x


@triton.jit
def _turn_and_step(F_ptr, b64, t, T, D, MEAN_ptr, STD_ptr, HAS_STATS: tl.constexpr, ACC: tl.constexpr):
    """(turn, vx, vz) that frame ``t`` takes from row ``t - 1``: channels 0, 1, 2 of that
    row, 0 for frame 0 and for frames past the clip."""
    has_prev = (t >= 1) & (t < T)
    prev = F_ptr + (b64 * T + t - 1) * D
    r0 = _channel(prev, 0, has_prev, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
    vx = _channel(prev, 1, has_prev, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
    vz = _channel(prev, 2, has_prev, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
    return r0, vx, vz, has_prev


@triton.jit
def _local_joints(F_ptr, b64, t2, j, T, D, J, MEAN_ptr, STD_ptr, HAS_STATS: tl.constexpr, ACC: tl.constexpr):
    """``[BLOCK_T, BLOCK_J]`` local positions (rx, ry, rz) of frames ``t2``: the root's
    are (0, height, 0), joint j >= 1 reads channels ``4 + 3 (j - 1) .. + 2``."""
    row = F_ptr + (b64 * T + t2) * D
    inside = (t2 < T) & (j < J)
    ch = 4 + 3 * (j - 1)
    body = inside & (j >= 1)
    rx = _channel(row, ch, body, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
    ry = _channel(row, tl.where(j >= 1, ch + 1, 3), inside, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
    rz = _channel(row, ch + 2, body, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
    return rx, ry, rz, inside, body, ch


@triton.jit
def recover_from_ric_fwd_kernel(
    F_ptr, MEAN_ptr, STD_ptr, X_ptr,
    T, D, J,
    HAS_STATS: tl.constexpr, ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """One program per clip: joints ``[T, J, 3]`` of clip ``program_id(0)``."""
    b64 = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, BLOCK_T)
    j = tl.arange(0, BLOCK_J)[None, :]
    half = tl.zeros([], ACC)  # running sum of the turn channel (half the heading, negated)
    px = tl.zeros([], ACC)
    pz = tl.zeros([], ACC)
    for t0 in range(0, T, BLOCK_T):
        t = t0 + i
        r0, vx, vz, _ = _turn_and_step(F_ptr, b64, t, T, D, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
        h = half + tl.cumsum(r0, 0)
        yaw = -2.0 * h
        c = tl.cos(yaw)
        s = tl.sin(yaw)
        sx = c * vx + s * vz
        sz = -s * vx + c * vz
        x = px + tl.cumsum(sx, 0)
        z = pz + tl.cumsum(sz, 0)
        half += tl.sum(r0, 0)
        px += tl.sum(sx, 0)
        pz += tl.sum(sz, 0)

        t2 = t[:, None]
        rx, ry, rz, inside, _, _ = _local_joints(F_ptr, b64, t2, j, T, D, J, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
        c2 = c[:, None]
        s2 = s[:, None]
        out = X_ptr + ((b64 * T + t2) * J + j) * 3
        ty = X_ptr.dtype.element_ty
        tl.store(out + 0, (c2 * rx + s2 * rz + x[:, None]).to(ty), mask=inside)
        tl.store(out + 1, ry.to(ty), mask=inside)
        tl.store(out + 2, (-s2 * rx + c2 * rz + z[:, None]).to(ty), mask=inside)


@triton.jit
def _store_grad(GF_ptr, row_ptr_off, c, g, mask, STD_ptr, HAS_STATS: tl.constexpr, ACC: tl.constexpr):
    """dL/d(stored channel) = dL/d(value) * std."""
    if HAS_STATS:
        g = g * tl.load(STD_ptr + c + tl.zeros(mask.shape, tl.int32), mask=mask, other=0.0).to(ACC)
    tl.store(GF_ptr + row_ptr_off + c, g.to(GF_ptr.dtype.element_ty), mask=mask)


@triton.jit
def recover_from_ric_bwd_kernel(
    G_ptr, F_ptr, MEAN_ptr, STD_ptr, GF_ptr,
    T, D, J,
    HAS_STATS: tl.constexpr, ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """One program per clip: dL/dfeatures of clip ``program_id(0)`` for the channels the
    forward reads (the caller zero-fills the rest and channels 0..2 of the last row)."""
    b64 = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, BLOCK_T)
    j = tl.arange(0, BLOCK_J)[None, :]
    n_chunks = tl.cdiv(T, BLOCK_T)

    # The whole clip's turn H (see the module docstring).
    total = tl.zeros([BLOCK_T], ACC)
    for t0 in range(0, T, BLOCK_T):
        r0, _, _, _ = _turn_and_step(F_ptr, b64, t0 + i, T, D, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
        total += r0
    H = tl.sum(total, 0)

    # Sums over the frames after the current chunk.
    later_r0 = tl.zeros([], ACC)
    later_gx = tl.zeros([], ACC)
    later_gz = tl.zeros([], ACC)
    later_gyaw = tl.zeros([], ACC)
    for n in range(0, n_chunks):
        t = (n_chunks - 1 - n) * BLOCK_T + i
        r0, vx, vz, has_prev = _turn_and_step(F_ptr, b64, t, T, D, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
        from_here = later_r0 + tl.cumsum(r0, 0, reverse=True)  # sum over frames >= t
        yaw = -2.0 * (H - from_here + r0)
        c = tl.cos(yaw)
        s = tl.sin(yaw)

        # Placing the joints: rotate their gradients back into the local frame and collect
        # what reaches the frame's heading and root position.
        t2 = t[:, None]
        rx, _, rz, inside, body, ch = _local_joints(F_ptr, b64, t2, j, T, D, J, MEAN_ptr, STD_ptr, HAS_STATS, ACC)
        gp = G_ptr + ((b64 * T + t2) * J + j) * 3
        g0 = tl.load(gp + 0, mask=inside, other=0.0).to(ACC)
        g1 = tl.load(gp + 1, mask=inside, other=0.0).to(ACC)
        g2 = tl.load(gp + 2, mask=inside, other=0.0).to(ACC)
        c2 = c[:, None]
        s2 = s[:, None]
        row = (b64 * T + t2) * D
        _store_grad(GF_ptr, row, ch, c2 * g0 - s2 * g2, body, STD_ptr, HAS_STATS, ACC)
        _store_grad(GF_ptr, row, tl.where(j >= 1, ch + 1, 3), g1, inside, STD_ptr, HAS_STATS, ACC)
        _store_grad(GF_ptr, row, ch + 2, s2 * g0 + c2 * g2, body, STD_ptr, HAS_STATS, ACC)
        gyaw = tl.sum(g0 * (-s2 * rx + c2 * rz) + g2 * (-c2 * rx - s2 * rz), 1)
        gx = tl.sum(g0, 1)
        gz = tl.sum(g2, 1)

        # The running sums: frame t's step moves the root of every frame >= t, its turn the
        # heading of every frame >= t.
        SX = later_gx + tl.cumsum(gx, 0, reverse=True)
        SZ = later_gz + tl.cumsum(gz, 0, reverse=True)
        gyaw = gyaw + SX * (-s * vx + c * vz) + SZ * (-c * vx - s * vz)
        SY = later_gyaw + tl.cumsum(gyaw, 0, reverse=True)
        prev = (b64 * T + t - 1) * D
        _store_grad(GF_ptr, prev, 0, -2.0 * SY, has_prev, STD_ptr, HAS_STATS, ACC)
        _store_grad(GF_ptr, prev, 1, c * SX - s * SZ, has_prev, STD_ptr, HAS_STATS, ACC)
        _store_grad(GF_ptr, prev, 2, s * SX + c * SZ, has_prev, STD_ptr, HAS_STATS, ACC)

        later_r0 += tl.sum(r0, 0)
        later_gx += tl.sum(gx, 0)
        later_gz += tl.sum(gz, 0)
        later_gyaw += tl.sum(gyaw, 0)


# One program per clip, so BLOCK_T trades registers (the backward keeps ~10 [BLOCK_T,
# BLOCK_J] tiles live) against the number of chunk iterations; the autotuner picks per (T, J).
_GPU_CONFIGS = (TileConfig(16, 4), TileConfig(32, 4), TileConfig(32, 8), TileConfig(64, 8))
# The interpreter runs one chunk size, small enough that a 197-frame test clip spans
# several chunks (tests pin smaller ones to cross many seams in short clips).
_fwd = Launcher(recover_from_ric_fwd_kernel, halo=0, min_block_t=2, per_clip=True, configs=_GPU_CONFIGS,
                interpret_config=TileConfig(32, 4))
_bwd = Launcher(recover_from_ric_bwd_kernel, halo=0, min_block_t=2, per_clip=True, configs=_GPU_CONFIGS,
                interpret_config=TileConfig(32, 4))


def _check(op: str, features: torch.Tensor, J: int, mean, std):
    if features.dim() != 3:
        raise ValueError(f"{op}: features: expected shape [B, T, D], got {list(features.shape)}")
    B, T, D = features.shape
    if J < 1 or D < 4 + 3 * (J - 1):
        raise ValueError(f"{op}: features: expected D >= {4 + 3 * (max(J, 1) - 1)} for {J} joints, got D = {D}")
    if not features.dtype.is_floating_point:
        raise ValueError(f"{op}: features: expected a floating-point dtype, got {features.dtype}")
    if (mean is None) != (std is None):
        raise ValueError(f"{op}: mean and std: give both or neither")
    for name, t in (("mean", mean), ("std", std)):
        if t is not None and (tuple(t.shape) != (D,) or t.dtype != features.dtype or t.device != features.device):
            raise ValueError(f"{op}: {name}: expected [{D}] {features.dtype} on {features.device}, got "
                             f"{list(t.shape)} {t.dtype} on {t.device}")
    check_device(op, features)
    return B, T, D


def recover_from_ric_fwd(features, num_joints: int, mean=None, std=None, *, block_t: int | None = None,
                         _wrap: bool = False) -> torch.Tensor:
    """Joints ``[B, T, J, 3]`` (input dtype) as ``torch.ops.vmdm_C.recover_from_ric_fwd``."""
    J = int(num_joints)
    B, T, D = _check("recover_from_ric_fwd", features, J, mean, std)
    features = features.contiguous()
    out = features.new_empty((B, T, J, 3))
    if out.numel() == 0:
        return out
    has = mean is not None
    m, s = (mean.contiguous(), std.contiguous()) if has else (features, features)
    _fwd(B, T, (features, m, s, out, T, D, J),
         dict(HAS_STATS=has, ACC=acc_tl_dtype(features.dtype), BLOCK_J=block_j(J)), block_t=block_t, wrap=_wrap)
    return out


def recover_from_ric_bwd(grad, features, num_joints: int, mean=None, std=None, *, block_t: int | None = None,
                         _wrap: bool = False) -> torch.Tensor:
    """dL/dfeatures ``[B, T, D]`` as ``torch.ops.vmdm_C.recover_from_ric_bwd``."""
    op = "recover_from_ric_bwd"
    J = int(num_joints)
    B, T, D = _check(op, features, J, mean, std)
    if tuple(grad.shape) != (B, T, J, 3) or grad.device != features.device:
        raise ValueError(f"{op}: grad: expected [{B}, {T}, {J}, 3] on {features.device}, got {list(grad.shape)} "
                         f"on {grad.device}")
    features, grad = features.contiguous(), grad.contiguous().to(features.dtype)
    gfeat = torch.zeros_like(features)
    if features.numel() == 0:
        return gfeat
    has = mean is not None
    m, s = (mean.contiguous(), std.contiguous()) if has else (features, features)
    _bwd(B, T, (grad, features, m, s, gfeat, T, D, J),
         dict(HAS_STATS=has, ACC=acc_tl_dtype(features.dtype), BLOCK_J=block_j(J)), block_t=block_t, wrap=_wrap)
    return gfeat
