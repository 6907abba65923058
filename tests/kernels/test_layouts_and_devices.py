"""Memory layouts and devices: non-contiguous and expanded inputs through the public API;
CUDA kernels against the C++ CPU kernels on the same inputs; the current stream, a second
device, and the Triton autotuner on a GPU."""

import pytest
import torch

import vmdm_kernels as vk

from .conftest import only
from .problems import make_problem
from .runners import (
    RAY_NAMES,
    REPROJ_NAMES,
    V3_NAMES,
    assert_all_close,
    assert_same,
    kernel_ray,
    kernel_reproj,
    kernel_velocity3d,
    reference_ray,
    reference_reproj,
    reference_velocity3d,
    run_ray_targets,
    run_reproj_vel,
    run_velocity3d,
    upstream,
)

RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}
gpu_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cpu(p):
    return {k: (None if v is None else v.cpu()) for k, v in p.items()}


def _views(p):
    """The same values as non-contiguous / expanded tensors."""
    B, T, J, _ = p["joints"].shape
    joints = p["joints"].transpose(1, 2).contiguous().transpose(1, 2)
    keypoints = p["keypoints"].permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)
    weights = p["weights"][:, :1].expand(B, T, J)
    camera = p["camera"][:, None].expand(B, T, 3, 4)
    intr = p["intrinsics"].t().contiguous().t()
    assert not joints.is_contiguous() and not keypoints.is_contiguous() and weights.stride(1) == 0
    return dict(joints=joints, keypoints=keypoints, camera=camera, weights=weights, intrinsics=intr)


@only("cpp")
def test_non_contiguous_and_expanded_inputs(backend):
    p = _views(make_problem(2, 8, 5, seed=2))
    dense = {k: v.contiguous() for k, v in p.items()}
    assert_all_close(run_reproj_vel(backend.name, p, "sample"), run_reproj_vel("reference", dense, "sample"), 1e-9)
    assert_all_close(run_ray_targets(backend.name, p), run_ray_targets("reference", dense), 1e-9)
    assert_all_close(run_velocity3d(backend.name, p), run_velocity3d("reference", dense), 1e-9)


@only("cpp", "cuda")
def test_public_api_non_contiguous_inputs(backend):
    views = _views(backend.to(make_problem(2, 19, 22, seed=16)))
    assert not views["camera"].is_contiguous()
    dense = {k: v.contiguous() for k, v in views.items()}
    assert_all_close(run_reproj_vel(backend.name, views, "point"), run_reproj_vel("reference", _cpu(dense), "point"),
                     RTOL[torch.float64])
    assert_all_close(run_ray_targets(backend.name, views), run_ray_targets("reference", _cpu(dense)),
                     RTOL[torch.float64])


# --------------------------------------------------------------------------- CUDA vs C++ CPU


LOW = [torch.float16, torch.bfloat16]
CPU_RTOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


@only("cuda")
@pytest.mark.parametrize("depth_weight", ["none", "sample", "point"])
@pytest.mark.parametrize("per_frame", [False, True], ids=["clip_cam", "frame_cam"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64] + LOW, ids=str)
def test_matches_cpp_cpu_kernels(backend, depth_weight, per_frame, dtype):
    """Same formulas (camera_math.h) on both devices: agreement to accumulation-order rounding
    (one unit in the last place of the output dtype for float16/bfloat16)."""
    if not vk.backends()["cpp"].available:
        pytest.skip(str(vk.backends()["cpp"]))
    from .conftest import Backend

    C, dev, cpu = backend.kernels, backend.device, Backend("cpp", "cpu")
    p = make_problem(3, 41, 22, per_frame=per_frame, seed=30, dtype=dtype)
    p["weights"][0, 5] = 0
    p["joints"][0, 5, :3] = float("nan")
    assert_all_close(kernel_reproj(backend, backend.to(p), depth_weight), kernel_reproj(cpu, p, depth_weight),
                     CPU_RTOL[dtype], REPROJ_NAMES)
    if depth_weight == "none":
        target = p["joints"].nan_to_num(0.0) + 0.1
        cuda_v = [C.velocity3d_fwd(*(x.to(dev) for x in (p["joints"], target, p["weights"])))]
        cpu_v = [C.velocity3d_fwd(p["joints"], target, p["weights"])]
        g = upstream(3, 2).to(_acc_dtype(dtype))
        cuda_v += C.velocity3d_bwd(g.to(dev), *(x.to(dev) for x in (p["joints"], target, p["weights"])), True)
        cpu_v += C.velocity3d_bwd(g, p["joints"], target, p["weights"], True)
        assert_all_close(cuda_v, cpu_v, CPU_RTOL[dtype], V3_NAMES)
        q = make_problem(3, 41, 22, per_frame=per_frame, seed=31, dtype=dtype)
        args = (q["joints"], q["keypoints"], q["camera"], q["intrinsics"])
        G = upstream(q["joints"].shape, 3).to(dtype)
        cuda_r = [C.ray_targets_fwd(*(x.to(dev) for x in args))]
        cuda_r += C.ray_targets_bwd(G.to(dev), *(x.to(dev) for x in args), True, True, True)
        cpu_r = [C.ray_targets_fwd(*args)] + list(C.ray_targets_bwd(G, *args, True, True, True))
        assert_all_close(cuda_r, cpu_r, CPU_RTOL[dtype], RAY_NAMES)


@only("cuda")
def test_large_batch_matches_cpp_cpu_kernels(backend):
    """B = 1024, T = 196 (the benchmark's large workload): the biggest grids and the most
    tiles per launch, against the C++ kernels."""
    if not vk.backends()["cpp"].available:
        pytest.skip(str(vk.backends()["cpp"]))
    from .conftest import Backend

    p = make_problem(1024, 196, 22, per_frame=False, seed=32, dtype=torch.float32)
    assert_all_close(kernel_reproj(backend, backend.to(p), "sample"), kernel_reproj(Backend("cpp", "cpu"), p, "sample"),
                     CPU_RTOL[torch.float32], REPROJ_NAMES)


# --------------------------------------------------------------------------- streams and devices


@only("cuda")
def test_runs_on_the_current_stream(backend):
    p = backend.to(make_problem(8, 196, 22, seed=17, dtype=torch.float32))
    expected = kernel_reproj(backend, p, "sample")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        # Inputs produced on the side stream just before the kernels read them.
        q = {k: (None if v is None else v * 1.0) for k, v in p.items()}
        got = kernel_reproj(backend, q, "sample")
    side.synchronize()
    assert_same(got, expected, REPROJ_NAMES)


@only("cuda")
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device(backend):
    p = {k: (None if v is None else v.to("cuda:1")) for k, v in make_problem(2, 40, 22, seed=18).items()}
    got = kernel_reproj(backend, p, "point")
    assert all(x.device == torch.device("cuda:1") for x in got)
    assert_all_close(got, reference_reproj(p, "point"), RTOL[torch.float64], REPROJ_NAMES)


@only("triton")
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device_while_another_is_current(backend):
    # Triton launches on the current device; the launcher must switch to the tensors' GPU.
    p = backend.to(make_problem(2, 40, 22, seed=18), torch.float32)
    p = {k: (None if v is None else v.to("cuda:1")) for k, v in p.items()}
    with torch.cuda.device(0):
        got = kernel_reproj(backend, p, "point")
        rays = kernel_ray(backend, p)
        torch.cuda.synchronize(1)
    assert all(x.device == torch.device("cuda:1") for x in got + rays)
    assert_all_close(got, reference_reproj(p, "point"), RTOL[torch.float32], REPROJ_NAMES)
    assert_all_close(rays, reference_ray(p), RTOL[torch.float32], RAY_NAMES)


@only("triton")
@gpu_only
@pytest.mark.parametrize("dtype", [torch.float32] + LOW, ids=str)
def test_autotuned_kernels_match_reference(backend, dtype):
    # No pinned block_t: the autotuner picks among the GPU configs for the training shape;
    # the second length falls in the same size bucket and runs the chosen config pinned.
    tol = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype]
    for T in (196, 180):
        p = backend.to(make_problem(8, T, 22, seed=21), dtype)
        assert_all_close(kernel_reproj(backend, p, "sample"), reference_reproj(p, "sample"), tol, REPROJ_NAMES)
        got, target = kernel_velocity3d(backend, p)
        assert_all_close(got, reference_velocity3d(p, target), tol, V3_NAMES)
        assert_all_close(kernel_ray(backend, p), reference_ray(p), tol, RAY_NAMES)
    from vmdm_kernels.triton import reproj_vel

    assert reproj_vel._fwd.chosen and reproj_vel._bwd.chosen
