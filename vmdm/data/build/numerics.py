"""Pinned numerics: the shared data come out bit-identical on every machine.

The built-in corpus, the teacher lifter and the 2D-only dataset are inputs of every
experiment, so results tables are only comparable if those bytes are the same wherever
the README is followed. Three things make float results depend on the machine:

- vector math libraries pick code paths by CPU (numpy's AVX-512 ``sin``/``exp``, ATen's
  vectorised kernels, MKL's and oneDNN's GEMM and convolution kernels) and round the last
  bit differently;
- reductions split over another number of threads add in another order;
- over thousands of optimiser steps such last-bit differences grow into another teacher.

Two remedies, both cheap:

- the data are built in a process whose torch numerics are pinned (:data:`PINNED_ENV`:
  ATen's AVX2 kernels and MKL's AVX2 branch, whatever the CPU offers beyond; one thread;
  oneDNN off, so convolutions are MKL matrix products) and whose numpy takes no AVX-512
  code paths (:func:`numpy_pin`);
- every float the data pipeline stores is rounded to :data:`STORED_BITS` significant bits
  (:func:`round_significand`), so a last-bit difference of numpy's transcendental
  functions on another CPU (which cannot be pinned from Python) almost never reaches a
  file: it changes a stored value only when the exact result lies within a few ULPs of a
  rounding boundary, about 1e-10 per value.

The guarantee holds on x86-64 CPUs with AVX2 (Intel since 2013, every AMD Zen); elsewhere
the data are still deterministic run to run on that machine, and ``python -m
vmdm.data.build.prepare check`` says whether they match the published hashes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np

__all__ = ["PINNED_ENV", "STORED_BITS", "round_significand", "pinned_torch", "numerics_pinned",
           "numerics_record", "numpy_pin", "run_pinned"]

PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VMDM_PINNED_NUMERICS": "1",
}

# 18 bits: 4e-6 relative, i.e. 4 micrometres on a 1 m coordinate, far below motion capture
# accuracy; float32 keeps 24, float64 results differ across CPUs in the last 1-3 of 53.
STORED_BITS = 18


def round_significand(x, bits: int = STORED_BITS) -> np.ndarray:
    """``x`` rounded (half to even) to ``bits`` significant bits, as float32."""
    a = np.asarray(x, dtype=np.float64)
    if not 1 <= bits <= 24:
        raise ValueError(f"bits: expected 1..24 (float32 keeps 24), got {bits}")
    mant, exp = np.frexp(a)  # a = mant * 2**exp, 0.5 <= |mant| < 1
    scale = float(2**bits)
    return np.ldexp(np.round(mant * scale) / scale, exp).astype(np.float32)


def numerics_pinned() -> bool:
    """True in a process started with :data:`PINNED_ENV` (see :func:`run_pinned`)."""
    return all(os.environ.get(k) == v for k, v in PINNED_ENV.items())


@contextlib.contextmanager
def pinned_torch():
    """One torch thread and no oneDNN for the enclosed block (restored afterwards)."""
    import torch

    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = mkldnn


def numerics_record() -> dict:
    """What the stored bytes may depend on beyond the code: recorded with every data hash."""
    import scipy
    import torch

    return {
        "pinned": numerics_pinned(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
        "torch": torch.__version__.split("+")[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "stored_bits": STORED_BITS,
    }


def numpy_pin() -> dict[str, str]:
    """``NPY_DISABLE_CPU_FEATURES`` naming numpy's AVX-512 code paths this CPU would take
    (empty without AVX-512): above AVX2 numpy's SIMD math leaves last-bit differences in
    values that cancel to about zero (1e-16 in velocity channels of still joints), which
    significand rounding cannot remove; numpy reads the variable at import, so it only
    acts in a child process. A value already in the environment is kept."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    above = [f for f in __cpu_dispatch__ if __cpu_features__.get(f) and (f == "X86_V4" or f.startswith("AVX512"))]
    return {"NPY_DISABLE_CPU_FEATURES": " ".join(above)} if above else {}


def run_pinned(module: str, args: list[str]) -> None:
    """``python -m module *args`` in a child process with pinned numerics.

    ATen reads its CPU capability and MKL its branch once, at their first use, so this
    cannot be switched inside a process that has already computed anything.
    """
    env = {**numpy_pin(), **os.environ, **PINNED_ENV}
    proc = subprocess.run([sys.executable, "-m", module, *args], env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m {module} {' '.join(args)} failed with exit code {proc.returncode} "
                           "(its output is above)")
