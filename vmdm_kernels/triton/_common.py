"""Shared pieces of the Triton backend: launch plumbing, camera loads, deterministic finalisation.

Tiling used by every op: one program owns a tile of ``BLOCK_T`` frames x
``BLOCK_J`` joints of one sample (``BLOCK_J`` = J rounded up to a power of
two, the padding masked). Programs are laid out on a 1-D grid,
``pid = b * n_tiles + tile``, so the tiles of one sample run next to each other
and ``B`` is not limited by the 65535 cap of the second grid axis.

Velocity terms pair frame ``t`` with ``t + 1``. Instead of projecting every
frame twice (once per pair), the tile is projected once and the next frame's
values are moved one row up inside the tile with ``tl.gather`` (registers /
shared memory on the GPU). Tiles overlap by a one-frame halo so that every pair
has both frames inside some tile: the forward tile owns its first
``BLOCK_T - 1`` rows (the last row is the halo), the backward tile owns rows
``1 .. BLOCK_T - 2`` (one halo row on each side, because a frame's gradient
needs the pair before and the pair after it).

Reductions are deterministic: each program reduces its tile with ``tl.sum``
(a fixed tree for a given compiled config) and writes one partial per
(sample, tile); a small finalisation kernel adds the partials of each sample
in tile order. No atomics are used anywhere, so two calls with the same inputs
and the same config give bit-identical results. (The autotuner may pick a
different ``BLOCK_T`` in a different process, or for a size whose bucket was
first tuned at another size (see :class:`Launcher`), which changes the summation
tree and therefore the last bits; under ``torch.use_deterministic_algorithms``
the tile is fixed instead.)

The partial buffers are allocated before the autotuner has chosen ``BLOCK_T``,
so they are sized for the smallest candidate (``NT_MAX`` tiles per sample) and
the main kernel writes the tile count it actually used into a one-element int32
buffer that the finaliser reads. This keeps everything inside kernels (no host
sync), which is also what ``torch.compile`` needs to trace the launches.

Accumulation is float32 for float16/bfloat16/float32 inputs and float64 for
float64 inputs (every load is cast first: bf16 arithmetic is never done); outputs
are cast to the input dtype on store, ``stats`` stay in the accumulation dtype.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

# triton.jit reads TRITON_INTERPRET when each kernel is decorated, i.e. when this
# package is imported; reading it here gives the answer the decorators below see.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@dataclass(frozen=True)
class TileConfig:
    block_t: int
    num_warps: int


# Candidates for the GPU autotuner: 2-4 tile elements per thread for J <= 32. Compiled
# for sm_90, the backward kernels need 95-170 registers at 4 elements per thread and
# ~250 at 8 (e.g. BLOCK_T = 32 with 4 warps), which halves occupancy of a kernel that
# lives on memory latency, so those shapes are not offered.
GPU_CONFIGS = (
    TileConfig(8, 2),
    TileConfig(8, 4),
    TileConfig(16, 4),
    TileConfig(16, 8),
    TileConfig(32, 8),
)
# The interpreter cannot autotune over several configs and costs ~1-2 ms per
# program, so it runs one small config that still exercises multi-tile halos
# with the tiny sequences used in tests.
INTERPRET_CONFIG = TileConfig(8, 4)
# Used on the GPU when a caller pins BLOCK_T without a warp count.
_WARPS_FOR_BLOCK_T = {4: 1, 8: 2, 16: 4, 32: 8, 64: 16}

PARTIAL_CAM = 16  # per-tile partial row of the backward: 12 camera + 4 intrinsics values


def acc_torch_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 for float64 inputs, float32 otherwise (as the C++ kernels)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def acc_tl_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def pow_kind(power: float) -> int:
    """Compile-time specialisation of z ** p: 0 -> 1, 1 -> z, 2 -> z*z, 3 -> exp2(p log2 z)."""
    p = float(power)
    return {0.0: 0, 1.0: 1, 2.0: 2}.get(p, 3)


def block_j(J) -> int:
    # At least 2 lanes: size-1 tensor dimensions buy nothing and are the least
    # exercised layout in the compiler. int() because BLOCK_J is a compile-time
    # constant even when torch.compile traces with a symbolic J.
    return max(2, triton.next_power_of_2(max(int(J), 1)))


def check_device(op: str, t: torch.Tensor) -> None:
    if INTERPRET:
        return
    if t.device.type != "cuda":
        raise ValueError(
            f"{op}: the Triton backend runs on CUDA tensors, got tensors on {t.device} "
            "(set TRITON_INTERPRET=1 before importing triton to run it on CPU with the interpreter)"
        )


def check_same(op: str, name: str, t: torch.Tensor, like: torch.Tensor, shape: tuple) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name}: expected shape {list(shape)}, got {list(t.shape)}")
    if t.dtype != like.dtype:
        raise ValueError(f"{op}: {name}: expected dtype {like.dtype} (the dtype of joints), got {t.dtype}")
    if t.device != like.device:
        raise ValueError(f"{op}: {name}: expected device {like.device} (the device of joints), got {t.device}")


def check_camera(op: str, joints: torch.Tensor, camera: torch.Tensor, intrinsics) -> bool:
    """Validates camera/intrinsics against joints; returns True for per-frame cameras."""
    B, T = joints.shape[:2]
    if camera.dim() == 3:
        check_same(op, "camera", camera, joints, (B, 3, 4))
    else:
        check_same(op, "camera", camera, joints, (B, T, 3, 4))
    if intrinsics is not None:
        check_same(op, "intrinsics", intrinsics, joints, (B, 4))
    return camera.dim() == 4


def check_joints(op: str, joints: torch.Tensor) -> tuple[int, int, int]:
    if joints.dim() != 4 or joints.shape[-1] != 3:
        raise ValueError(f"{op}: joints: expected shape [B, T, J, 3], got {list(joints.shape)}")
    if not joints.dtype.is_floating_point:
        raise ValueError(f"{op}: joints: expected a floating-point dtype, got {joints.dtype}")
    B, T, J, _ = joints.shape
    return B, T, J


def size_bucket(n: int) -> int:
    """Autotuning bucket of a size: the next power of two (0 and 1 share bucket 1)."""
    return triton.next_power_of_2(max(int(n), 1))


class Launcher:
    """One kernel with its GPU autotuner, or a pinned config.

    ``@triton.autotune`` is applied only when not interpreting (the interpreter
    fails with more than one config). ``halo`` is the number of overlapping rows
    between consecutive tiles, which fixes the grid: ``B * cdiv(T, BLOCK_T - halo)``
    programs; ``per_clip`` kernels instead run one program per sample (grid ``B``)
    and walk its frames in chunks of ``BLOCK_T``. ``configs`` / ``interpret_config``
    replace the shared candidates for kernels whose tiles cost differently.

    The autotuner is keyed on whichever of ``(B, T, J)`` the kernel takes, exactly;
    in eager calls the launcher adds a coarser cache on top: the config tuned for one
    call is reused, pinned, for every later call whose ``B`` and ``T`` fall in the
    same power-of-two buckets with the same compile-time constants (``BLOCK_J``
    buckets ``J``) and dtypes. Clip lengths vary from batch to batch (padding goes to
    the batch's longest clip) and lifting or evaluation meets a new ``T`` per clip;
    without the buckets each new size compiles and times every candidate again
    (Triton's default benchmark: ~0.1 s per candidate). Launches being traced by
    ``torch.compile`` hand it the autotuner, which it tunes at compile time. (So on a
    GPU the tile size, and with it the last bits of a reduction, can depend on which
    size of a bucket came first in the process; pin ``block_t`` for bit-exact
    comparisons.) Under ``torch.use_deterministic_algorithms(True)`` nothing is timed:
    every call runs :meth:`deterministic_config`, so results are bit-identical across
    processes and runs, traced or not.

    Launches run on the tensors' GPU (made current for the call), whatever the
    caller's current device.
    """

    def __init__(self, kernel, halo: int, min_block_t: int, *, per_clip: bool = False,
                 configs: tuple[TileConfig, ...] | None = None, interpret_config: TileConfig | None = None):
        self.kernel = kernel
        self.halo = halo
        self.min_block_t = min_block_t
        self.per_clip = per_clip
        self.configs = tuple(c for c in (configs or GPU_CONFIGS) if c.block_t >= min_block_t)
        self.interpret_config = interpret_config or INTERPRET_CONFIG
        # (bucketed sizes, constants, dtypes) -> the config the autotuner chose there.
        self.chosen: dict[tuple, TileConfig] = {}
        self._tuning = threading.Lock()
        self.autotune = not INTERPRET
        self._tuners: dict[int, object] = {}

    def configs_for(self, block_j: int) -> tuple[TileConfig, ...]:
        """Candidates for a ``BLOCK_J``-wide tile.

        The configs are chosen for skeletons of up to 32 joints; a wider tile (SMPL-X's 55
        joints: 64) holds more elements per thread and runs out of registers (255, i.e.
        one block per SM, then spills), so wider tiles get more warps (up to 8) and keep
        only candidates within the per-thread load of the 32-joint ones.
        """
        if block_j <= 32:
            return self.configs

        def per_thread(c: TileConfig, bj: int) -> float:
            return c.block_t * bj / (32 * c.num_warps)

        lo = min(per_thread(c, 32) for c in self.configs)
        hi = max(per_thread(c, 32) for c in self.configs)
        scale = block_j // 32
        out: list[TileConfig] = []
        # At most 8 warps: with 16 (512 threads) the register file allows 128 per thread.
        for c in list(self.configs) + [TileConfig(c.block_t, min(8, c.num_warps * scale)) for c in self.configs]:
            if lo <= per_thread(c, block_j) <= hi and c not in out:
                out.append(c)
        return tuple(out) or (min(self.configs, key=lambda c: per_thread(c, block_j)),)

    def deterministic_config(self, block_j: int = 32) -> TileConfig:
        """The fixed tile run under deterministic algorithms: a middle-sized one, never the
        fastest by much, never bad (see GPU_CONFIGS)."""
        configs = self.configs_for(block_j)
        return next((c for c in configs if c.block_t == 16), configs[0])

    def tuner(self, block_j: int):
        """The Triton autotuner over :meth:`configs_for` ``block_j`` (made on first use)."""
        if block_j not in self._tuners:
            self._tuners[block_j] = triton.autotune(
                configs=[triton.Config({"BLOCK_T": c.block_t}, num_warps=c.num_warps)
                         for c in self.configs_for(block_j)],
                key=[k for k in ("B", "T", "J") if k in self.kernel.arg_names],
            )(self.kernel)
        return self._tuners[block_j]

    def _pinned(self, block_t: int | None, block_j: int = 32) -> TileConfig | None:
        if block_t is not None:
            if block_t < self.min_block_t or block_t & (block_t - 1):
                raise ValueError(
                    f"block_t: expected a power of two >= {self.min_block_t} for this kernel, got {block_t}"
                )
            return TileConfig(block_t, _WARPS_FOR_BLOCK_T.get(block_t, 4))
        if not self.autotune:
            return self.interpret_config
        if torch.are_deterministic_algorithms_enabled():
            return self.deterministic_config(block_j)
        return None

    def max_tiles(self, T: int, block_t: int | None) -> int:
        """Upper bound on tiles per sample over every config this call may run (sizes partial buffers)."""
        if block_t is not None:
            smallest = self._pinned(block_t).block_t
        elif not self.autotune:
            smallest = self.interpret_config.block_t
        else:  # every candidate (and the deterministic tile) at any BLOCK_J has one of these
            smallest = min(c.block_t for c in self.configs)
        return triton.cdiv(T, smallest - self.halo)

    def tune_key(self, B: int, T: int, args: tuple, consts: dict) -> tuple:
        """The bucket a call's autotuned config is shared within (see the class doc)."""
        dtypes = tuple(str(a.dtype) for a in args if isinstance(a, torch.Tensor))
        return (size_bucket(B), size_bucket(T), tuple(sorted((k, repr(v)) for k, v in consts.items())), dtypes)

    def __call__(self, B: int, T: int, args: tuple, consts: dict, block_t: int | None = None, wrap: bool = False):
        block_j = int(consts.get("BLOCK_J", 32))
        pinned = self._pinned(block_t, block_j)
        halo = self.halo
        bucket = None
        traced = wrap and _tracing_triton()
        if pinned is None and not traced:
            bucket = self.tune_key(B, T, args, consts)
            pinned = self.chosen.get(bucket)

        def programs(bt: int) -> int:
            return B if self.per_clip else B * triton.cdiv(T, bt - halo)

        if pinned is not None:
            kernel = self.kernel
            grid = (programs(pinned.block_t),)
            kwargs = dict(consts, BLOCK_T=pinned.block_t, num_warps=pinned.num_warps)
        else:
            tuner = kernel = self.tuner(block_j)

            def grid(meta):
                return (programs(meta["BLOCK_T"]),)

            kwargs = dict(consts)
        if wrap:
            from torch.library import wrap_triton

            kernel = wrap_triton(kernel)
        with _on_device_of(args, traced):
            if bucket is None or pinned is not None:
                kernel[grid](*args, **kwargs)
                return
            # The autotuner leaves its choice in an attribute shared by every caller: read it
            # before another thread's launch of this kernel can replace it. Its own cache is
            # keyed on exact (B, T, J) and dtypes only, not on the compile-time options or
            # this launcher's buckets, so it is emptied first: a new bucket is always timed.
            with self._tuning:
                tuner.cache.clear()
                kernel[grid](*args, **kwargs)
                best = tuner.best_config
        self.chosen[bucket] = TileConfig(best.kwargs["BLOCK_T"], best.num_warps)


def _tracing_triton() -> bool:
    """Whether a ``wrap_triton`` launch is being traced (``torch.compile``, ``make_fx``)
    rather than run: then the autotuner is handed to the compiler and never runs here."""
    try:
        from torch._library.triton import is_wrap_triton_enabled
    except ImportError:  # older torch: assume tracing, i.e. leave tuning to the autotuner
        return True
    return is_wrap_triton_enabled()


def _on_device_of(args: tuple, traced: bool):
    """Make the GPU of the first tensor argument current: Triton launches (and times its
    candidates) on the current device and stream, not on the tensors' device."""
    if INTERPRET or traced:
        return contextlib.nullcontext()
    dev = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
    if dev is None or dev.type != "cuda":
        return contextlib.nullcontext()
    return torch.cuda.device(dev)


def launch_simple(kernel, grid, args: tuple, consts: dict, wrap: bool = False):
    """Launch a kernel without autotuning (finalisation kernels)."""
    traced = wrap and _tracing_triton()
    if wrap:
        from torch.library import wrap_triton

        kernel = wrap_triton(kernel)
    with _on_device_of(args, traced):
        kernel[grid](*args, **consts)


FINALIZE_BLOCK_B = 32


# --------------------------------------------------------------------------- device helpers


@triton.jit
def depth_pow(z, power, POW_KIND: tl.constexpr):
    """z ** p for z > 0 (or NaN), specialised like the C++ depth_pow for p in {0, 1, 2}."""
    if POW_KIND == 0:
        return tl.full(z.shape, 1.0, z.dtype)
    elif POW_KIND == 1:
        return z
    elif POW_KIND == 2:
        return z * z
    else:
        # libdevice.pow is unavailable in the interpreter; z > z_min >= 0 here.
        return tl.exp2(power * tl.log2(z))


@triton.jit
def load_camera(C_ptr, b64, rows, row_mask, T, PER_FRAME: tl.constexpr, ACC: tl.constexpr):
    """[R|t] as 12 values: [BLOCK_T, 1] columns for per-frame cameras, scalars per clip."""
    if PER_FRAME:
        base = C_ptr + (b64 * T + rows) * 12
        r00 = tl.load(base + 0, mask=row_mask, other=0.0).to(ACC)
        r01 = tl.load(base + 1, mask=row_mask, other=0.0).to(ACC)
        r02 = tl.load(base + 2, mask=row_mask, other=0.0).to(ACC)
        t0 = tl.load(base + 3, mask=row_mask, other=0.0).to(ACC)
        r10 = tl.load(base + 4, mask=row_mask, other=0.0).to(ACC)
        r11 = tl.load(base + 5, mask=row_mask, other=0.0).to(ACC)
        r12 = tl.load(base + 6, mask=row_mask, other=0.0).to(ACC)
        t1 = tl.load(base + 7, mask=row_mask, other=0.0).to(ACC)
        r20 = tl.load(base + 8, mask=row_mask, other=0.0).to(ACC)
        r21 = tl.load(base + 9, mask=row_mask, other=0.0).to(ACC)
        r22 = tl.load(base + 10, mask=row_mask, other=0.0).to(ACC)
        t2 = tl.load(base + 11, mask=row_mask, other=0.0).to(ACC)
    else:
        base = C_ptr + b64 * 12
        r00 = tl.load(base + 0).to(ACC)
        r01 = tl.load(base + 1).to(ACC)
        r02 = tl.load(base + 2).to(ACC)
        t0 = tl.load(base + 3).to(ACC)
        r10 = tl.load(base + 4).to(ACC)
        r11 = tl.load(base + 5).to(ACC)
        r12 = tl.load(base + 6).to(ACC)
        t1 = tl.load(base + 7).to(ACC)
        r20 = tl.load(base + 8).to(ACC)
        r21 = tl.load(base + 9).to(ACC)
        r22 = tl.load(base + 10).to(ACC)
        t2 = tl.load(base + 11).to(ACC)
    return r00, r01, r02, t0, r10, r11, r12, t1, r20, r21, r22, t2


@triton.jit
def load_intrinsics(I_ptr, b64, HAS_INTR: tl.constexpr, ACC: tl.constexpr):
    """(fx, fy, cx, cy); without intrinsics f = 1, c = 0 (normalised camera coordinates)."""
    if HAS_INTR:
        fx = tl.load(I_ptr + b64 * 4 + 0).to(ACC)
        fy = tl.load(I_ptr + b64 * 4 + 1).to(ACC)
        cx = tl.load(I_ptr + b64 * 4 + 2).to(ACC)
        cy = tl.load(I_ptr + b64 * 4 + 3).to(ACC)
    else:
        fx = 1.0
        fy = 1.0
        cx = 0.0
        cy = 0.0
    return fx, fy, cx, cy


@triton.jit
def store_cam_rows(GC_ptr, b64, rows, row_mask, T, g0, g1, g2, X0, X1, X2):
    """Per-frame camera gradient of each row: d/dR_ik = g_i X_k, d/dt_i = g_i, summed over joints.

    ``g0..g2``/``X0..X2`` are [BLOCK_T, BLOCK_J] and already zero where a point does not count.
    """
    base = GC_ptr + (b64 * T + rows) * 12
    ty = GC_ptr.dtype.element_ty
    tl.store(base + 0, tl.sum(g0 * X0, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 1, tl.sum(g0 * X1, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 2, tl.sum(g0 * X2, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 3, tl.sum(g0, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 4, tl.sum(g1 * X0, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 5, tl.sum(g1 * X1, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 6, tl.sum(g1 * X2, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 7, tl.sum(g1, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 8, tl.sum(g2 * X0, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 9, tl.sum(g2 * X1, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 10, tl.sum(g2 * X2, axis=1)[:, None].to(ty), mask=row_mask)
    tl.store(base + 11, tl.sum(g2, axis=1)[:, None].to(ty), mask=row_mask)


@triton.jit
def store_cam_partial(P_ptr, g0, g1, g2, X0, X1, X2):
    """Per-clip camera gradient of one tile (12 values at P_ptr), same layout as store_cam_rows."""
    tl.store(P_ptr + 0, tl.sum(g0 * X0))
    tl.store(P_ptr + 1, tl.sum(g0 * X1))
    tl.store(P_ptr + 2, tl.sum(g0 * X2))
    tl.store(P_ptr + 3, tl.sum(g0))
    tl.store(P_ptr + 4, tl.sum(g1 * X0))
    tl.store(P_ptr + 5, tl.sum(g1 * X1))
    tl.store(P_ptr + 6, tl.sum(g1 * X2))
    tl.store(P_ptr + 7, tl.sum(g1))
    tl.store(P_ptr + 8, tl.sum(g2 * X0))
    tl.store(P_ptr + 9, tl.sum(g2 * X1))
    tl.store(P_ptr + 10, tl.sum(g2 * X2))
    tl.store(P_ptr + 11, tl.sum(g2))


@triton.jit
def sum_partials_kernel(
    P_ptr,
    NT_ptr,
    GC_ptr,
    GI_ptr,
    B,
    NT_MAX,
    HAS_CAM: tl.constexpr,
    HAS_INTR: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_B: tl.constexpr,
):
    """Per-sample sums of the backward's per-tile partials, in tile order (deterministic).

    P: [B, NT_MAX, 16] (12 camera + 4 intrinsics values per tile); NT: the number
    of tiles the main kernel actually used (written by it, because the autotuner
    chooses BLOCK_T after the buffers were allocated). Writes the per-clip camera
    gradient [B, 12] and/or the intrinsics gradient [B, 4] in the output dtype.
    """
    b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)[:, None]
    bmask = b < B
    k = tl.arange(0, 16)[None, :]
    n_tiles = tl.load(NT_ptr)
    acc = tl.zeros([BLOCK_B, 16], ACC)
    base = P_ptr + b.to(tl.int64) * NT_MAX * 16 + k
    for s in range(0, n_tiles):
        acc += tl.load(base + s * 16, mask=bmask, other=0.0).to(ACC)
    if HAS_CAM:
        tl.store(GC_ptr + b * 12 + k, acc.to(GC_ptr.dtype.element_ty), mask=bmask & (k < 12))
    if HAS_INTR:
        tl.store(GI_ptr + b * 4 + (k - 12), acc.to(GI_ptr.dtype.element_ty), mask=bmask & (k >= 12))


def finalize_camera_grads(partials, ntiles, B, nt_max, grad_cam, grad_intr, acc_dtype, wrap):
    """Launch :func:`sum_partials_kernel` for whichever of the two gradients is wanted."""
    has_cam, has_intr = grad_cam is not None, grad_intr is not None
    if not (has_cam or has_intr):
        return
    dummy = partials
    launch_simple(
        sum_partials_kernel,
        (triton.cdiv(B, FINALIZE_BLOCK_B),),
        (partials, ntiles, grad_cam if has_cam else dummy, grad_intr if has_intr else dummy, B, nt_max),
        dict(HAS_CAM=has_cam, HAS_INTR=has_intr, ACC=acc_dtype, BLOCK_B=FINALIZE_BLOCK_B),
        wrap,
    )
