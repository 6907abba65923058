"""Benchmark session setup: device facts for extra_info, and no Triton interpreter
(interpreted kernels are not timed)."""

import platform

import pytest
import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


# Peak DRAM bandwidth (GB/s) of the GPUs we report against, by name fragment.
PEAK_GBPS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 NVL": 3900.0, "H100 PCIe": 2000.0, "H100": 3350.0,
             "A100-SXM4-80GB": 2039.0, "A100": 1555.0}


def peak_bandwidth(name: str) -> float | None:
    for frag, gbps in PEAK_GBPS.items():
        if frag in name:
            return gbps
    return None


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the software the numbers were measured with (read by bench/summarize.py)."""
    machine_info["torch_version"] = torch.__version__
    machine_info["cuda_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    try:
        import triton

        machine_info["triton_version"] = triton.__version__
    except ImportError:
        machine_info["triton_version"] = None
