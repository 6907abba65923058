"""Backend selection: explicit, inspectable, loud."""

import warnings

import pytest
import torch

import vmdm_kernels as vk
from vmdm_kernels import dispatch

from .problems import make_problem


def test_backends_report_every_backend_with_a_reason():
    report = vk.backends()
    assert set(report) == set(vk.BACKENDS)
    assert report["reference"].available
    for name, info in report.items():
        assert info.reason, name
        assert name in str(report)


@pytest.mark.skipif(not vk.backends()["cpp"].available, reason="C++ extension not built")
def test_cpu_default_is_cpp_and_env_override_is_honoured(monkeypatch):
    monkeypatch.delenv("VMDM_BACKEND", raising=False)
    assert vk.choose_backend(torch.device("cpu")) == "cpp"
    monkeypatch.setenv("VMDM_BACKEND", "reference")
    assert vk.choose_backend(torch.device("cpu")) == "reference"
    # An explicit argument wins over the environment.
    assert vk.choose_backend(torch.device("cpu"), "cpp") == "cpp"
    monkeypatch.setenv("VMDM_BACKEND", "bogus")
    with pytest.raises(ValueError, match=r"VMDM_BACKEND: expected one of"):
        vk.choose_backend(torch.device("cpu"))


def test_env_override_reaches_the_ops(monkeypatch):
    p = make_problem(1, 3, 2, seed=0)
    monkeypatch.setenv("VMDM_BACKEND", "cuda")
    if not vk.backends()["cuda"].available:
        with pytest.raises(vk.BackendUnavailableError, match=r"backend 'cuda' \(VMDM_BACKEND\) is unavailable"):
            vk.reprojection_loss(p["joints"], p["keypoints"], p["camera"], backend=None)
    else:
        with pytest.raises(vk.BackendUnavailableError, match=r"runs on cuda tensors, got tensors on cpu"):
            vk.reprojection_loss(p["joints"], p["keypoints"], p["camera"], backend=None)


def test_missing_extension_falls_back_to_reference_with_a_warning(monkeypatch):
    monkeypatch.delenv("VMDM_BACKEND", raising=False)
    fake = lambda: (None, "compiled extension not importable (test)")  # noqa: E731
    fake.cache_clear = lambda: None
    monkeypatch.setattr(dispatch, "_extension", fake)
    monkeypatch.setattr(dispatch, "_warned_fallback", set())
    dispatch._report.cache_clear()
    with pytest.warns(RuntimeWarning, match=r"no compiled kernels for cpu tensors .*using the pure-PyTorch reference"):
        assert dispatch.choose_backend(torch.device("cpu")) == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        assert dispatch.choose_backend(torch.device("cpu")) == "reference"
    with pytest.raises(vk.BackendUnavailableError, match=r"backend 'cpp' \(backend= argument\) is unavailable: "
                                                         r"compiled extension not importable \(test\)"):
        dispatch.choose_backend(torch.device("cpu"), "cpp")
    monkeypatch.undo()
    dispatch.refresh()
    assert dispatch.backends()["cpp"].available == vk.backends()["cpp"].available


@pytest.mark.skipif(not vk.backends()["cpp"].available, reason="C++ extension not built")
def test_autocast_computes_in_float32():
    p = make_problem(2, 4, 3, dtype=torch.float32, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vk.reprojection_loss(p["joints"].bfloat16(), p["keypoints"], p["camera"], p["weights"],
                                   p["intrinsics"], backend="cpp")
    assert out.dtype == torch.float32
    ref = vk.reprojection_loss(p["joints"].bfloat16().float(), p["keypoints"], p["camera"], p["weights"],
                               p["intrinsics"], backend="reference")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=0)
