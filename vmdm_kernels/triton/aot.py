"""Compile the Triton kernels for a CUDA target without a GPU and report their resources.

``python -m vmdm_kernels.triton.aot [--quick] [--arch 90]`` compiles every kernel
variant (or, with ``--quick``, the largest reprojection and decoder variants only) through
Triton's full NVIDIA pipeline down to a cubin, and prints registers, register spill
stores and shared memory per kernel, read with the ``ptxas -v`` and ``cuobjdump``
shipped in the triton wheel. It exits non-zero if a kernel fails to compile or spills
more than :data:`SPILL_BUDGET` bytes.

This catches what the interpreter cannot: lowering failures (e.g. of ``tl.gather``
for a layout), register pressure of a tile config, and compile-time type errors
in branches the interpreter never takes. It must run without
``TRITON_INTERPRET=1`` (the interpreter replaces the compiler), so tests call it in
a subprocess.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

if os.environ.get("TRITON_INTERPRET", "0") == "1":  # pragma: no cover - guarded by the caller
    raise RuntimeError("vmdm_kernels.triton.aot compiles kernels; unset TRITON_INTERPRET")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from . import _common as cm  # noqa: E402
from . import ray_targets as rt  # noqa: E402
from . import recover_from_ric as rr  # noqa: E402
from . import reproj_vel as rv  # noqa: E402
from . import velocity3d as v3  # noqa: E402

_FLOAT_ARGS = {"z_min", "power"}
# A few bytes of spill (ptxas parks one value across a libdevice call) cost nothing
# measurable; a tile too big for the register file spills hundreds.
SPILL_BUDGET = 64
_ACC_PTRS = {"P_ptr", "S_ptr", "GP_ptr", "GV_ptr"}


def _signature(fn, consts: dict, in_dtype: str) -> dict:
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name == "NT_ptr":
            sig[name] = "*i32"
        elif name.endswith("_ptr"):
            sig[name] = "*fp32" if name in _ACC_PTRS else f"*{in_dtype}"
        elif name in _FLOAT_ARGS:
            sig[name] = "fp64"
        else:
            sig[name] = "i32"
    return sig


def _tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _cuobjdump() -> str:
    return _tool("cuobjdump")


def spill_bytes(ptx: str, arch: int) -> int:
    """Register spill stores of a PTX kernel, as ``ptxas -v`` reports them. (The cubin's
    ``LOCAL`` resource is 0 for Triton kernels, whose spills go to the stack frame, and the
    stack frame also holds libdevice's sin/cos slow path, so neither is a spill count.)"""
    with tempfile.NamedTemporaryFile(suffix=".ptx", mode="w") as f:
        f.write(ptx)
        f.flush()
        res = subprocess.run([_tool("ptxas"), "-v", f"--gpu-name=sm_{arch}a", f.name, "-o", os.devnull],
                             capture_output=True, text=True, check=True)
    found = [int(n) for n in re.findall(r"(\d+) bytes spill stores", res.stdout + res.stderr)]
    if not found:
        raise RuntimeError(f"ptxas -v printed no spill count:\n{res.stdout}{res.stderr}")
    return max(found)


def compile_kernel(fn, consts: dict, in_dtype: str = "fp32", num_warps: int = 4, arch: int = 90) -> dict:
    """Compile one variant for ``sm_<arch>``; returns its resource usage."""
    src = ASTSource(fn, _signature(fn, consts, in_dtype), constexprs=consts)
    kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(num_warps=num_warps))
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        out = subprocess.run([_cuobjdump(), "--dump-resource-usage", f.name], capture_output=True, text=True,
                             check=True).stdout

    def field(name):
        m = re.search(name + r":(\d+)", out)
        return int(m.group(1)) if m else -1

    return dict(kernel=fn.__name__, regs=field("REG"), spill=spill_bytes(kernel.asm["ptx"], arch),
                shared=field("SHARED"))


def variants(quick: bool):
    """(kernel, constexprs, input dtype, num_warps, label) for every shipped variant."""
    acc = tl.float32
    configs = [cm.TileConfig(16, 4)] if quick else list(cm.GPU_CONFIGS)
    dtypes = ["fp32"] if quick else ["fp32", "bf16"]
    for c in configs:
        for dt in dtypes:
            base = dict(ACC=acc, BLOCK_T=c.block_t, BLOCK_J=32)
            label = f"BLOCK_T={c.block_t} warps={c.num_warps} {dt}"
            for mode, per_frame, intr in ([(2, True, True)] if quick else [(0, False, False), (1, False, True),
                                                                            (2, True, True)]):
                common = dict(base, PER_FRAME=per_frame, HAS_INTR=intr, MODE=mode, POW_KIND=mode, WITH_POS=True,
                              WITH_VEL=True)
                tag = f"{label} mode={mode} per_frame={per_frame} intr={intr}"
                yield rv.reproj_vel_fwd_kernel, common, dt, c.num_warps, tag
                yield (rv.reproj_vel_bwd_kernel, dict(common, NEED_K=True, NEED_CAM=True, NEED_INTR=intr), dt,
                       c.num_warps, tag)
            if quick:
                continue
            yield v3.velocity3d_fwd_kernel, base, dt, c.num_warps, label
            yield v3.velocity3d_bwd_kernel, dict(base, NEED_Y=True, DEN_T=64), dt, c.num_warps, label
            for per_frame in (False, True):
                yield (rt.ray_targets_fwd_kernel, dict(base, PER_FRAME=per_frame, HAS_INTR=True), dt, c.num_warps,
                       f"{label} per_frame={per_frame}")
                yield (rt.ray_targets_bwd_kernel, dict(base, PER_FRAME=per_frame, HAS_INTR=True, NEED_K=True,
                                                       NEED_CAM=True, NEED_INTR=True), dt, c.num_warps,
                       f"{label} per_frame={per_frame}")
    for bt, warps in ((c.block_t, c.num_warps) for c in (rr._GPU_CONFIGS[-1:] if quick else rr._GPU_CONFIGS)):
        for dt in ("fp32",) if quick else ("fp32", "bf16", "fp64"):
            acc_r = tl.float64 if dt == "fp64" else acc
            for stats in (True,) if quick else (False, True):
                consts = dict(HAS_STATS=stats, ACC=acc_r, BLOCK_T=bt, BLOCK_J=32)
                label = f"BLOCK_T={bt} warps={warps} {dt} stats={stats}"
                yield rr.recover_from_ric_fwd_kernel, consts, dt, warps, label
                yield rr.recover_from_ric_bwd_kernel, consts, dt, warps, label
    yield (rv.reproj_vel_finalize_kernel, dict(MODE=1, POW_KIND=3, WITH_POS=True, WITH_VEL=True, ACC=acc,
                                               BLOCK_B=cm.FINALIZE_BLOCK_B), "fp16", 4, "finalize")
    if not quick:
        yield v3.velocity3d_finalize_kernel, dict(ACC=acc, BLOCK_B=cm.FINALIZE_BLOCK_B), "fp16", 4, "finalize"
        yield (cm.sum_partials_kernel, dict(HAS_CAM=True, HAS_INTR=True, ACC=acc, BLOCK_B=cm.FINALIZE_BLOCK_B),
               "fp16", 4, "finalize")
        for bj in (64, 128):  # wide skeletons (SMPL-X: 55 joints) get their own candidates
            for c in rv._bwd.configs_for(bj):
                yield (rv.reproj_vel_bwd_kernel, dict(ACC=acc, BLOCK_T=c.block_t, BLOCK_J=bj, PER_FRAME=True,
                                                      HAS_INTR=True, MODE=2, POW_KIND=3, WITH_POS=True, WITH_VEL=True,
                                                      NEED_K=True, NEED_CAM=True, NEED_INTR=True), "fp32", c.num_warps,
                       f"BLOCK_J={bj} BLOCK_T={c.block_t} warps={c.num_warps}")
            for c in rr._bwd.configs_for(bj):
                yield (rr.recover_from_ric_bwd_kernel, dict(HAS_STATS=True, ACC=acc, BLOCK_T=c.block_t, BLOCK_J=bj),
                       "fp32", c.num_warps, f"BLOCK_J={bj} BLOCK_T={c.block_t} warps={c.num_warps}")
        yield (rv.reproj_vel_bwd_kernel, dict(ACC=tl.float64, BLOCK_T=16, BLOCK_J=32, PER_FRAME=True, HAS_INTR=True,
                                              MODE=2, POW_KIND=3, WITH_POS=True, WITH_VEL=True, NEED_K=True,
                                              NEED_CAM=True, NEED_INTR=True), "fp64", 4, "float64 general power")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the largest reprojection and decoder variants")
    ap.add_argument("--arch", type=int, default=90, help="SM architecture, e.g. 90 for H100/H200")
    args = ap.parse_args(argv)
    bad = 0
    for fn, consts, dt, warps, label in variants(args.quick):
        try:
            r = compile_kernel(fn, consts, dt, warps, args.arch)
        except Exception as e:  # report every failure, then exit non-zero
            bad += 1
            print(f"FAIL {fn.__name__} [{label}]: {type(e).__name__}: {e}")
            continue
        spill = r["spill"] > SPILL_BUDGET
        bad += spill
        print(f"{'SPILL' if spill else 'ok   '} {r['kernel']:28s} regs={r['regs']:3d} spill={r['spill']:4d} "
              f"smem={r['shared']:5d}  [{label}]")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
