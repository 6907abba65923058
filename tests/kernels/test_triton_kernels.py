"""Triton-only machinery: the launchers' tile configs and autotuning buckets, the kernels'
own input checks, the compiler path (sm90 compile without register spills, checked in a
subprocess without the interpreter), and random shapes with random pinned tiles.

The per-op comparisons with the reference run for Triton through the ``backend`` fixture
in the per-op files (``test_reproj_vel.py``, ...).
"""

import math
import os

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed")

from .conftest import only  # noqa: E402
from .problems import make_problem  # noqa: E402
from .runners import (  # noqa: E402
    MODES,
    REPROJ_NAMES,
    V3_NAMES,
    assert_all_close,
    kernel_reproj,
    kernel_velocity3d,
    reference_reproj,
    reference_velocity3d,
)

# The interpreter evaluates masked-off lanes too (0/0 in padding); numpy warns about it.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@only("triton")
def test_bad_inputs_raise_clear_errors(backend):
    vt = backend.kernels
    p = backend.to(make_problem(2, 4, 3, seed=14, dtype=torch.float32))
    with pytest.raises(ValueError, match="keypoints: expected shape"):
        vt.reproj_vel_fwd(p["joints"], p["keypoints"][:, :, :2], p["camera"], p["weights"], None, 1, 1.0, 0.5,
                          True, True)
    with pytest.raises(ValueError, match="weights: expected dtype"):
        vt.velocity3d_fwd(p["joints"], p["joints"], p["weights"].double())
    with pytest.raises(ValueError, match="depth_mode"):
        vt.reproj_vel_fwd(p["joints"], p["keypoints"], p["camera"], p["weights"], None, 3, 1.0, 0.5, True, True)
    with pytest.raises(ValueError, match="need_intrinsics"):
        vt.ray_targets_bwd(p["joints"], p["joints"], p["keypoints"], p["camera"], None, False, False, True)
    with pytest.raises(ValueError, match="block_t"):
        vt.velocity3d_bwd(p["weights"][:, 0, 0], p["joints"], p["joints"], p["weights"], False, block_t=2)
    if not backend.interpreted:
        with pytest.raises(ValueError, match="CUDA tensors"):
            vt.velocity3d_fwd(p["joints"].cpu(), p["joints"].cpu(), p["weights"].cpu())


@only("triton")
def test_random_shapes_match_reference(backend):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=8 if backend.interpreted else 40, deadline=None, derandomize=True)
    @hypothesis.given(
        B=st.integers(1, 3), T=st.integers(1, 16 if backend.interpreted else 64), J=st.integers(1, 24),
        mode=st.sampled_from(MODES),
        per_frame=st.booleans(), intrinsics=st.booleans(), block_t=st.sampled_from([4, 8, 16]),
        seed=st.integers(0, 2**16),
    )
    def check(B, T, J, mode, per_frame, intrinsics, block_t, seed):
        p = backend.to(make_problem(B, T, J, per_frame=per_frame, intrinsics=intrinsics, seed=seed))
        assert_all_close(kernel_reproj(backend, p, mode, block_t=block_t), reference_reproj(p, mode), 1e-8, REPROJ_NAMES)
        got, target = kernel_velocity3d(backend, p, block_t=block_t)
        assert_all_close(got, reference_velocity3d(p, target), 1e-8, V3_NAMES)

    check()


def test_kernels_compile_for_sm90_without_spills():
    """The interpreter never runs Triton's compiler; compile the largest variants for H100/H200
    (reprojection and the recover_from_ric decoder).

    Catches lowering failures (tl.gather of the time shift, constexpr branches the
    interpreter does not take) and register spills of the tile configs, on any machine.
    Runs in a subprocess because this process has the interpreter switched on.
    """
    import subprocess
    import sys

    import triton

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(cuobjdump):
        pytest.skip("triton's NVIDIA backend tools (ptxas/cuobjdump) are not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-m", "vmdm_kernels.triton.aot", "--quick"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    # The largest reprojection pair, its finaliser and the largest decoder pair.
    assert res.stdout.count("ok ") == 5, res.stdout
    assert res.stdout.count("recover_from_ric_") == 2, res.stdout


def test_spill_check_catches_an_oversized_tile():
    """The spill count the check above relies on is real: a 16 x 128 backward tile on 4 warps
    (a wide skeleton on a 32-joint config) spills, and the check reports it."""
    import subprocess
    import sys

    import triton

    if not os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")):
        pytest.skip("triton's NVIDIA backend tools (ptxas/cuobjdump) are not installed")
    code = (
        "import triton.language as tl\n"
        "from vmdm_kernels.triton import aot, reproj_vel as rv\n"
        "c = dict(ACC=tl.float32, BLOCK_T=16, BLOCK_J=128, PER_FRAME=True, HAS_INTR=True, MODE=2, POW_KIND=3,\n"
        "         WITH_POS=True, WITH_VEL=True, NEED_K=True, NEED_CAM=True, NEED_INTR=True)\n"
        "r = aot.compile_kernel(rv.reproj_vel_bwd_kernel, c, 'fp32', 4)\n"
        "print(r['spill'], aot.SPILL_BUDGET)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    spill, budget = map(int, res.stdout.split()[-2:])
    assert spill > budget


def test_wide_skeletons_get_tiles_within_the_register_budget():
    from vmdm_kernels.triton import _common, ray_targets, recover_from_ric, reproj_vel, velocity3d

    def per_thread(c, bj):
        return c.block_t * bj / (32 * c.num_warps)

    for launcher in (reproj_vel._fwd, reproj_vel._bwd, velocity3d._fwd, velocity3d._bwd, ray_targets._fwd,
                     ray_targets._bwd, recover_from_ric._fwd, recover_from_ric._bwd):
        assert launcher.configs_for(32) == launcher.configs_for(16) == launcher.configs
        most = max(per_thread(c, 32) for c in launcher.configs)
        for bj in (64, 128):
            wide = launcher.configs_for(bj)
            assert wide, bj
            for c in wide:
                # No more work per thread than the 32-joint candidates, and <= 8 warps (with 16,
                # the register file allows only 128 registers per thread).
                assert per_thread(c, bj) <= most and c.num_warps <= 8, (bj, c)
                assert c.block_t >= launcher.min_block_t
            assert launcher.deterministic_config(bj) in wide
    assert _common.GPU_CONFIGS == reproj_vel._fwd.configs


def test_launcher_reuses_a_tuned_config_within_a_size_bucket(monkeypatch):
    """Eager launches tune once per (power-of-two B and T bucket, constants, dtypes) and
    run the chosen config pinned for every other size in that bucket."""
    import triton

    from vmdm_kernels.triton import _common

    launches = []

    class FakeKernel:  # stands in for the jitted kernel and for its autotuner
        arg_names = ["X_ptr", "B", "T", "J"]

        def __init__(self, name):
            self.name, self.best_config, self.cache = name, None, {}

        def __getitem__(self, grid):
            def launch(*args, **kw):
                if self.name == "tuned":
                    # Triton's own cache (exact sizes, no constants) never carries over to a new bucket.
                    assert not self.cache
                    self.cache[args[1:]] = "config"
                    self.best_config = triton.Config({"BLOCK_T": 16}, num_warps=8)
                    launches.append(("tuned", grid(dict(BLOCK_T=16))[0]))
                else:
                    launches.append(("pinned", grid[0], kw["BLOCK_T"], kw["num_warps"]))
            return launch

    monkeypatch.setattr(_common, "INTERPRET", True)  # build without triton.autotune, then swap in the fakes
    launcher = _common.Launcher(FakeKernel("raw"), halo=1, min_block_t=2)
    launcher.kernel, tuned = FakeKernel("raw"), FakeKernel("tuned")
    launcher.autotune, launcher.tuner = True, lambda block_j: tuned
    x32, x64 = torch.zeros(1), torch.zeros(1, dtype=torch.float64)

    def call(B, T, x=x32, block_j=32, block_t=None):
        launches.clear()
        launcher(B, T, (x, B, T, 22), dict(BLOCK_J=block_j), block_t=block_t)
        return launches[0]

    assert call(8, 100) == ("tuned", 8 * 7)  # cdiv(100, 16 - 1)
    assert call(8, 120) == ("pinned", 8 * 8, 16, 8)  # same buckets (8, 128): no new tuning
    assert call(7, 65) == ("pinned", 7 * 5, 16, 8)
    assert call(8, 130)[0] == "tuned"  # T bucket 256
    assert call(9, 120)[0] == "tuned"  # B bucket 16
    assert call(8, 120, block_j=64)[0] == "tuned"  # other compile-time constants
    assert call(8, 120, x=x64)[0] == "tuned"  # other dtypes
    assert call(8, 120, block_t=4) == ("pinned", 8 * 40, 4, 1)  # an explicit block_t wins
    assert len(launcher.chosen) == 5
    assert [_common.size_bucket(n) for n in (0, 1, 2, 3, 196, 1024)] == [1, 1, 2, 4, 256, 1024]

    # Deterministic algorithms: nothing is timed, every size runs one fixed tile.
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        fixed = launcher.deterministic_config()
        assert fixed.block_t == 16
        assert call(8, 500) == ("pinned", 8 * math.ceil(500 / 15), 16, fixed.num_warps)  # a bucket never tuned
        assert call(8, 100) == ("pinned", 8 * 7, 16, fixed.num_warps)  # not the bucket's tuned (16, 8)
    finally:
        torch.use_deterministic_algorithms(before)
    assert len(launcher.chosen) == 5
