"""Low precision on every compiled backend: flash-attention's rule,
``|kernel - ref64| <= 2 |eager - ref64|`` for every output and gradient, where eager is the
reference in the same low-precision dtype (on the same device) and ref64 the reference in
float64. Also :func:`check_against_reference`, the float64/float32 check of the public API
that the per-op files use."""

import pytest
import torch

from .conftest import only
from .problems import make_problem
from .runners import (
    MODES,
    REPROJ_NAMES,
    RAY_NAMES,
    V3_NAMES,
    assert_all_close,
    assert_within_eager_error,
    run_ray_targets,
    run_reproj_vel,
    run_velocity3d,
    upstream,
)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def check_against_reference(backend, run, p64, dtype, names=None):
    """float64: tight agreement. Lower precision: error within 2x eager PyTorch's in that dtype."""
    ref64 = run("reference", p64)
    if dtype == torch.float64:
        assert_all_close(run(backend.name, backend.to(p64)), ref64, 1e-9, names)
        return
    plow = {k: (v.to(dtype) if v is not None else None) for k, v in p64.items()}
    assert_within_eager_error(run(backend.name, backend.to(plow)), run("reference", plow), ref64, names)


RUNS = {"reproj_vel": lambda b, p: run_reproj_vel(b, p, "sample"), "ray_targets": run_ray_targets,
        "velocity3d": run_velocity3d}


@only("cpp")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("op", ["reproj_vel", "ray_targets", "velocity3d"])
def test_public_api_within_twice_eager(backend, dtype, op):
    """|kernel_lowp - ref_f64| <= 2 |eager_lowp - ref_f64| for every output and gradient."""
    # Normalised coordinates keep float16 in range; the rule is about accuracy, not overflow.
    check_against_reference(backend, RUNS[op], make_problem(2, 24, 22, intrinsics=False, seed=21), dtype)


@only("cuda")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("depth_weight", MODES)
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_every_op_within_twice_eager_on_device(backend, dtype, depth_weight, per_frame):
    """Eager is the reference in the same low-precision dtype on the same device."""
    p64 = make_problem(4, 40, 22, per_frame=per_frame, seed=20)
    ref64 = run_reproj_vel("reference", p64, depth_weight)
    plow = backend.to(p64, dtype)
    name = backend.name
    assert_within_eager_error(run_reproj_vel(name, plow, depth_weight),
                              run_reproj_vel("reference", plow, depth_weight), ref64, REPROJ_NAMES[:2] +
                              REPROJ_NAMES[3:], rel_floor=1e-3)
    assert_within_eager_error(run_velocity3d(name, plow), run_velocity3d("reference", plow),
                              run_velocity3d("reference", p64), V3_NAMES, rel_floor=1e-3)
    assert_within_eager_error(run_ray_targets(name, plow), run_ray_targets("reference", plow),
                              run_ray_targets("reference", p64), RAY_NAMES, rel_floor=1e-3)


ON_GPU = torch.cuda.is_available()
# The interpreter's float32 -> bfloat16 cast truncates instead of rounding to nearest
# (the compiled cast rounds), which alone can exceed the rule; bfloat16 is GPU-only.
TRITON_LOW = [torch.float16, torch.bfloat16] if ON_GPU else [torch.float16]


@only("triton")
@pytest.mark.parametrize("dtype", TRITON_LOW, ids=str)
@pytest.mark.parametrize("depth_weight", MODES if ON_GPU else ["point"])
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
def test_every_op_within_twice_eager_on_rounded_inputs(backend, dtype, depth_weight, per_frame):
    """ref64 is the reference in float64 on the same rounded inputs and upstream gradients,
    so the rule compares arithmetic, not input rounding. The interpreter casts every
    load to float32 like the compiled kernel, so the rule is checked on CPU too (tiny shape)."""
    shape = backend.pick(cuda=None, triton=(3, 12, 6) if backend.interpreted else (4, 40, 22))
    p64 = make_problem(*shape, per_frame=per_frame, seed=20)
    p64["target"] = p64["joints"] + 0.05 * upstream(p64["joints"].shape, 21)
    plow = backend.to(p64, dtype)
    pref = {k: (None if v is None else v.double()) for k, v in plow.items()}
    for run, kw in ((run_reproj_vel, dict(depth_weight=depth_weight)), (run_velocity3d, {}), (run_ray_targets, {})):
        assert_within_eager_error(run(backend.name, plow, grad_dtype=dtype, **kw),
                                  run("reference", plow, grad_dtype=dtype, **kw),
                                  run("reference", pref, grad_dtype=dtype, **kw), rel_floor=1e-3)
