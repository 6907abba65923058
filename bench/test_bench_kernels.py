"""Kernel throughput: implementation x op x workload x mode.

Each ``benchmark.group`` ranks implementations on one (op, mode, workload).
``eager`` is the pure-PyTorch reference, ``compile`` is torch.compile of that
reference; ``cpp``, ``cuda`` and ``triton`` are the vmdm_kernels backends.
Run: ``pytest bench/ --benchmark-only`` (normal test runs skip these).
"""

from __future__ import annotations

import pytest
import torch

import vmdm_kernels as vk
from vmdm_kernels import ref

from .conftest import device_name, peak_bandwidth
from .workloads import WORKLOADS, bytes_moved, make_inputs

IMPLS = ["eager", "compile", "cpp", "cuda", "triton"]
OPS = ["reproj_vel", "velocity3d", "ray_targets"]
MODES = ["fwd", "fwd+bwd"]


def _skip_reason(impl: str, device: torch.device, workload) -> str | None:
    if workload.gpu_only and device.type != "cuda":
        return f"workload {workload.name} (B={workload.B}) is measured on GPU only"
    if impl == "compile" and workload.name not in ("train", "large"):
        # Each shape is a fresh Inductor compile (tens of seconds); the targets are stated
        # against compile on the training and large workloads, so measure it there.
        return "compile baseline is measured on the train and large workloads only"
    if impl in ("eager", "compile"):
        return None
    info = vk.backends()[impl]
    if not info.available:
        return f"{impl}: {info.reason}"
    if device.type not in info.devices:
        return f"{impl} runs on {'/'.join(info.devices)}; benchmarking on {device.type}"
    return None


def _time_and_record_bandwidth(benchmark, run, nbytes: int, device: torch.device) -> None:
    benchmark(run)
    if benchmark.stats is None:  # --benchmark-disable: run once as a test, nothing timed
        return
    gbps = nbytes / benchmark.stats.stats.mean / 1e9
    benchmark.extra_info["GB/s"] = round(gbps, 2)
    peak = peak_bandwidth(device_name(device)) if device.type == "cuda" else None
    if peak:
        benchmark.extra_info["fraction_of_peak_bw"] = round(gbps / peak, 4)


def _loss_fn(op: str, impl: str):
    """A callable(inputs) -> scalar loss, for the implementation under test."""
    if impl in ("eager", "compile"):
        if op == "reproj_vel":
            def f(x):
                pos, vel = ref.reproj_vel_loss(x["joints"], x["keypoints"], x["camera"], x["weights"],
                                               x["intrinsics"], depth_weight="sample", depth_power=1.0, z_min=0.5)
                return 7 * pos.mean() + 50 * vel.mean()
        elif op == "velocity3d":
            def f(x):
                return ref.velocity3d_loss(x["joints"], x["target"], x["weights"]).mean()
        else:
            def f(x):
                return (ref.ray_targets(x["joints"], x["keypoints"], x["camera"], x["intrinsics"]) * x["grad"]).sum()
        return torch.compile(f, fullgraph=True) if impl == "compile" else f
    if op == "reproj_vel":
        def f(x):
            pos, vel = vk.reprojection_velocity_loss(x["joints"], x["keypoints"], x["camera"], x["weights"],
                                                     x["intrinsics"], reduction="mean", backend=impl)
            return 7 * pos + 50 * vel
    elif op == "velocity3d":
        def f(x):
            return vk.velocity_loss_3d(x["joints"], x["target"], x["weights"], backend=impl)
    else:
        def f(x):
            return (vk.ray_targets(x["joints"], x["keypoints"], x["camera"], x["intrinsics"], backend=impl)
                    * x["grad"]).sum()
    return f


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.name)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("impl", IMPLS)
def test_kernel(benchmark, device, impl, op, workload, mode):
    reason = _skip_reason(impl, device, workload)
    if reason:
        pytest.skip(reason)
    x = make_inputs(workload, device)
    x["target"] = x["joints"].flip(1).contiguous()
    x["grad"] = torch.randn_like(x["joints"])
    fn = _loss_fn(op, impl)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    if mode == "fwd":
        def run():
            with torch.no_grad():
                out = fn(x)
            sync()
            return out
    else:
        x["joints"].requires_grad_(True)

        def run():
            x["joints"].grad = None
            out = fn(x)
            out.backward()
            sync()
            return out

    run()  # warm-up: compilation, autotuning, caches
    benchmark.group = f"{op}-{mode}-{workload.name}"
    nbytes = bytes_moved(op, mode, workload)
    benchmark.extra_info.update(device=device_name(device), bytes=nbytes, B=workload.B, T=workload.T, J=workload.J,
                                impl=impl, op=op, mode=mode, workload=workload.name)
    _time_and_record_bandwidth(benchmark, run, nbytes, device)


FEATURE_IMPLS = ["eager", "compile", "cpp", "cuda"]  # motion_features has no Triton kernel
RIC_IMPLS = FEATURE_IMPLS + ["triton"]


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.name)
@pytest.mark.parametrize("impl", FEATURE_IMPLS)
def test_motion_features(benchmark, device, impl, workload):
    """The 263-dim feature encoder (alignment targets, data preparation): forward only."""
    from vmdm.motion.skeleton import SMPL22, feature_skeleton

    reason = _skip_reason(impl, device, workload)
    if reason:
        pytest.skip(reason)
    fs = feature_skeleton(SMPL22)
    x = make_inputs(workload, device)
    lengths = torch.full((workload.B,), workload.T, dtype=torch.long, device=device)
    if impl in ("eager", "compile"):
        fn = ref.motion_features.motion_features
        fn = torch.compile(fn) if impl == "compile" else fn

        def f():
            return fn(x["joints"], lengths, fs)
    else:
        def f():
            return vk.motion_features(x["joints"], fs, lengths, backend=impl)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run():
        with torch.no_grad():
            out = f()
        sync()
        return out

    run()
    benchmark.group = f"motion_features-fwd-{workload.name}"
    n = workload.B * workload.T * workload.J
    nbytes = (n * 3 + workload.B * (workload.T - 1) * fs.feature_dim) * 4
    benchmark.extra_info.update(device=device_name(device), bytes=nbytes, B=workload.B, T=workload.T,
                                J=workload.J, impl=impl, op="motion_features", mode="fwd", workload=workload.name)
    _time_and_record_bandwidth(benchmark, run, nbytes, device)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.name)
@pytest.mark.parametrize("impl", RIC_IMPLS)
def test_recover_from_ric(benchmark, device, impl, workload, mode):
    """The decoder of the 2D objective (features -> joints, denormalisation fused)."""
    reason = _skip_reason(impl, device, workload)
    if reason:
        pytest.skip(reason)
    g = torch.Generator().manual_seed(0)
    B, T, J = workload.B, workload.T, workload.J
    D = 12 * J - 1
    x = torch.randn(B, T, D, generator=g).to(device)
    mean, std = (0.1 * torch.randn(D, generator=g)).to(device), (torch.rand(D, generator=g) + 0.5).to(device)
    up = torch.randn(B, T, J, 3, generator=g).to(device)
    if impl in ("eager", "compile"):
        fn = ref.recover_from_ric.recover_from_ric
        fn = torch.compile(fn, fullgraph=True) if impl == "compile" else fn

        def f(v):
            return fn(v, J, mean, std)
    else:
        def f(v):
            return vk.recover_from_ric(v, J, mean=mean, std=std, backend=impl)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if mode == "fwd":
        def run():
            with torch.no_grad():
                out = f(x)
            sync()
            return out
    else:
        x.requires_grad_(True)

        def run():
            x.grad = None
            f(x).backward(up)
            sync()
    run()
    benchmark.group = f"recover_from_ric-{mode}-{workload.name}"
    n = B * T
    fwd_bytes = n * (4 + 3 * (J - 1)) * 4 + n * J * 3 * 4
    nbytes = fwd_bytes if mode == "fwd" else fwd_bytes + n * J * 3 * 4 + n * D * 4
    benchmark.extra_info.update(device=device_name(device), bytes=nbytes, B=B, T=T, J=J, impl=impl,
                                op="recover_from_ric", mode=mode, workload=workload.name)
    _time_and_record_bandwidth(benchmark, run, nbytes, device)
