"""The fused decoder (features -> joints) and its hand-written backward against the reference.

Forward and the features' gradient for one random upstream gradient, with and without
fused denormalisation, float64 gradcheck, the low-precision rule, awkward shapes (T = 1,
J = 1, extra channels, leading dims, non-contiguous input), the dispatch rules,
torch.library registration and bad input. C++ backend on CPU; CUDA where visible; Triton
compiled on a GPU, else under the interpreter on CPU (float32/float64; chunks of 32
frames there, pinned down to 2 where the chunk seams are tested).
"""

import pytest
import torch

import vmdm_kernels as vk
from vmdm_kernels.ref.recover_from_ric import recover_from_ric as reference

_TRITON = vk.backends()["triton"]
# Triton runs on CUDA tensors, or on CPU ones under the interpreter (tests/conftest.py).
TRITON_DEVICE = _TRITON.devices[0]
INTERPRETED = _TRITON.available and TRITON_DEVICE == "cpu"


def features(B=3, T=17, J=22, extra=None, seed=0, dtype=torch.float64):
    """Random features; by default the full 12 J - 1 channels (263 for J = 22)."""
    g = torch.Generator().manual_seed(seed)
    D = 4 + 3 * (J - 1) + (9 * J - 2 if extra is None else extra)
    f = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    f[..., 0] *= 0.2  # plausible turning rates, so headings wrap around over a clip
    return f.to(dtype)


def stats(D, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn(D, generator=g, dtype=torch.float64)).to(dtype), \
        (torch.rand(D, generator=g, dtype=torch.float64) + 0.5).to(dtype)


def run_both(backend, device, f, J, mean=None, std=None, seed=5):
    """(kernel out, kernel grad) and (reference out, reference grad) for one upstream gradient."""
    up = torch.randn(*f.shape[:-1], J, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    fk = f.detach().to(device).requires_grad_(True)
    mk = None if mean is None else mean.to(device)
    sk = None if std is None else std.to(device)
    out = vk.recover_from_ric(fk, J, mean=mk, std=sk, backend=backend)
    out.backward(up.to(device, out.dtype))
    fr = f.detach().double().requires_grad_(True)
    ref = reference(fr, J, None if mean is None else mean.double(), None if std is None else std.double())
    ref.backward(up)
    return (out.detach().cpu(), fk.grad.cpu()), (ref.detach(), fr.grad)


@pytest.mark.parametrize("normalised", [False, True], ids=["raw", "normalised"])
@pytest.mark.parametrize("shape", [(3, 17, 22, 0), (2, 1, 22, 0), (1, 5, 1, 0), (2, 9, 4, 7), (4, 197, 22, 0)],
                         ids=["B3T17J22", "T1", "J1", "extra_channels", "T197"])
def test_matches_reference_float64(backend, normalised, shape):
    backend, device = backend.name, backend.device
    B, T, J, extra = shape
    f = features(B, T, J, extra)
    mean, std = stats(f.shape[-1]) if normalised else (None, None)
    (out, grad), (want, want_grad) = run_both(backend, device, f, J, mean, std)
    assert out.shape == (B, T, J, 3)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-10)
    torch.testing.assert_close(grad, want_grad, rtol=0, atol=1e-10)
    # Channels the decoder does not read get no gradient.
    assert grad[..., 4 + 3 * (J - 1):].abs().max().item() == 0 if extra else True


def test_float32_matches_reference(backend):
    backend, device = backend.name, backend.device
    f = features(4, 60, 22, dtype=torch.float32)
    mean, std = stats(263, dtype=torch.float32)
    (out, grad), (want, want_grad) = run_both(backend, device, f, 22, mean, std)
    torch.testing.assert_close(out.double(), want, rtol=0, atol=2e-4 * want.abs().max().item())
    torch.testing.assert_close(grad.double(), want_grad, rtol=0, atol=2e-4 * want_grad.abs().max().item())


@pytest.mark.parametrize("normalised", [False, True], ids=["raw", "normalised"])
def test_gradcheck_float64(backend, normalised):
    backend, device = backend.name, backend.device
    f = features(2, 5, 3, extra=2).to(device).requires_grad_(True)
    mean, std = (t.to(device) for t in stats(f.shape[-1])) if normalised else (None, None)
    # The interpreter runs a kernel in ~0.1 s, too slow for one call per input element.
    assert torch.autograd.gradcheck(lambda x: vk.recover_from_ric(x, 3, mean=mean, std=std, backend=backend), (f,),
                                    fast_mode=backend == "triton" and INTERPRETED)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_within_twice_eager_error(backend, dtype):
    backend, device = backend.name, backend.device
    if backend == "triton" and INTERPRETED and dtype == torch.bfloat16:
        pytest.skip("the Triton interpreter truncates bfloat16 casts; compiled on a GPU it rounds")
    f = features(4, 40, 22, dtype=dtype)
    mean, std = stats(263, dtype=dtype)
    up = torch.randn(4, 40, 22, 3, generator=torch.Generator().manual_seed(9)).to(dtype)

    def grads(fn, x, m, s, u):
        x = x.detach().requires_grad_(True)
        out = fn(x, m, s)
        out.backward(u.to(out.dtype))
        return out.detach().double().cpu(), x.grad.double().cpu()

    exact = grads(lambda x, m, s: reference(x, 22, m, s), f.double(), mean.double(), std.double(), up.double())
    eager = grads(lambda x, m, s: reference(x, 22, m, s), f, mean, std, up)
    kern = grads(lambda x, m, s: vk.recover_from_ric(x, 22, mean=m, std=s, backend=backend), f.to(device),
                 mean.to(device), std.to(device), up.to(device))
    for name, k, e, x in zip(("joints", "grad"), kern, eager, exact):
        k_err, e_err = (k - x).abs().max().item(), (e - x).abs().max().item()
        assert k_err <= 2 * e_err, f"{name}: kernel error {k_err:.3g} > 2 x eager error {e_err:.3g} in {dtype}"


def test_leading_dims_and_non_contiguous(backend):
    backend, device = backend.name, backend.device
    f = features(6, 11, 22)
    want = reference(f, 22)
    torch.testing.assert_close(vk.recover_from_ric(f[0].to(device), 22, backend=backend).cpu(), want[0],
                               rtol=0, atol=1e-10)
    torch.testing.assert_close(vk.recover_from_ric(f.reshape(2, 3, 11, 263).to(device), 22, backend=backend).cpu(),
                               want.reshape(2, 3, 11, 22, 3), rtol=0, atol=1e-10)
    strided = f.transpose(0, 1).contiguous().transpose(0, 1).to(device)
    assert not strided.is_contiguous()
    torch.testing.assert_close(vk.recover_from_ric(strided, 22, backend=backend).cpu(), want, rtol=0, atol=1e-10)


def test_empty_batch(backend):
    backend, device = backend.name, backend.device
    f = torch.zeros(0, 7, 263, device=device, requires_grad=True)
    out = vk.recover_from_ric(f, 22, backend=backend)
    assert out.shape == (0, 7, 22, 3)
    out.sum().backward()
    assert f.grad.shape == f.shape


@pytest.mark.skipif(not vk.backends()["cpp"].available, reason=str(vk.backends()["cpp"]))
def test_statistics_that_require_grad_go_through_the_reference():
    f = features(2, 6, 22)
    mean, std = stats(263)
    mean.requires_grad_(True)
    vk.recover_from_ric(f, 22, mean=mean, std=std).sum().backward()
    assert mean.grad is not None and mean.grad[:67].abs().sum() > 0


@pytest.mark.skipif(not vk.backends()["cpp"].available, reason=str(vk.backends()["cpp"]))
def test_opcheck_and_compile_fullgraph():
    f = features(2, 6, 22, dtype=torch.float32).requires_grad_(True)
    mean, std = stats(263, dtype=torch.float32)
    torch.library.opcheck(torch.ops.vmdm.recover_from_ric_fwd.default, (f, 22, mean, std, "cpp"))
    torch.library.opcheck(torch.ops.vmdm.recover_from_ric_bwd.default,
                          (torch.randn(2, 6, 22, 3), f.detach(), 22, mean, std, "cpp"))

    @torch.compile(fullgraph=True, backend="aot_eager")
    def loss(x):
        return (vk.recover_from_ric(x, 22, mean=mean, std=std, backend="cpp") ** 2).sum()

    got = torch.autograd.grad(loss(f), f)[0]
    want = torch.autograd.grad((vk.recover_from_ric(f, 22, mean=mean, std=std) ** 2).sum(), f)[0]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("call,match", [
    (lambda f: vk.recover_from_ric(f[..., :60], 22), r"expected shape \[..., T >= 1, D >= 67\]"),
    (lambda f: vk.recover_from_ric(f, 0), "num_joints: expected a positive int"),
    (lambda f: vk.recover_from_ric(f.long(), 22), "expected a floating-point dtype"),
    (lambda f: vk.recover_from_ric(f, 22, mean=torch.zeros(263)), "give both or neither"),
    (lambda f: vk.recover_from_ric(f, 22, mean=torch.zeros(9), std=torch.ones(9)), r"mean: expected shape \[D=263\]"),
    (lambda f: vk.recover_from_ric(f[0, 0], 22), r"expected shape \[..., T >= 1"),
])
def test_bad_inputs_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(features(2, 4, 22, dtype=torch.float32))


@pytest.mark.skipif(not _TRITON.available, reason=str(_TRITON))
@pytest.mark.parametrize("block_t", [2, 4, 32])
def test_triton_chunk_sizes_agree(block_t):
    """Any chunk size gives the same joints and gradient: the carries across chunk seams
    (forward prefix sums, backward suffix sums) are exact."""
    from vmdm_kernels.triton import recover_from_ric_bwd, recover_from_ric_fwd

    f = features(2, 13, 22).to(TRITON_DEVICE)
    mean, std = (t.to(TRITON_DEVICE) for t in stats(263))
    up = torch.randn(2, 13, 22, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fr = f.detach().cpu().requires_grad_(True)
    want = reference(fr, 22, mean.cpu(), std.cpu())
    want.backward(up)
    out = recover_from_ric_fwd(f, 22, mean, std, block_t=block_t)
    grad = recover_from_ric_bwd(up.to(TRITON_DEVICE), f, 22, mean, std, block_t=block_t)
    torch.testing.assert_close(out.cpu(), want.detach(), rtol=0, atol=1e-10)
    torch.testing.assert_close(grad.cpu(), fr.grad, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="block_t: expected a power of two"):
        recover_from_ric_fwd(f, 22, mean, std, block_t=3)


def test_triton_backend_runs_motion_features_on_the_cuda_kernel_or_the_reference():
    """motion_features has no Triton kernel: asking for ``triton`` runs the CUDA kernel where
    the extension has one, else the reference (never an error when Triton itself can run)."""
    from vmdm.motion.skeleton import SMPL22, feature_skeleton

    if not _TRITON.available:
        pytest.skip(str(_TRITON))
    f = features(2, 6, 22).to(TRITON_DEVICE)
    joints = vk.recover_from_ric(f, 22, backend="triton")
    fs = feature_skeleton(SMPL22)
    want = vk.motion_features(joints.cpu(), fs, backend="reference")
    torch.testing.assert_close(vk.motion_features(joints, fs, backend="triton").cpu(), want, rtol=0, atol=1e-10)
