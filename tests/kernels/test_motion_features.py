"""The fused motion-feature encoder against its float64 reference.

Covers three skeletons, clip lengths (padding rows), fused normalisation, a bone exactly
opposite its rest direction (the half-turn branch) and a zero-length bone, float32 and
half precision against the low-precision rule, non-contiguous input, the dispatch rules
(forward-only kernels, gradients through the reference), torch.library registration and
bad input. Runs for the C++ backend on CPU and for the CUDA backend where one is visible.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vmdm_kernels as vk
from vmdm.motion.representation import encode
from vmdm.motion.skeleton import DETECTOR16, KIT21, SMPL22, feature_skeleton
from vmdm_kernels.ref.motion_features import motion_features as reference

from .conftest import only

SKELETONS = [SMPL22, KIT21, DETECTOR16]


def walking_joints(skeleton, B=3, T=17, seed=0, dtype=torch.float64):
    """Rest pose plus a smooth random walk of every joint, turning about y, above the floor."""
    g = torch.Generator().manual_seed(seed)
    off = skeleton.offsets_tensor(torch.float64)
    rest = torch.zeros(skeleton.num_joints, 3, dtype=torch.float64)
    for j in range(1, skeleton.num_joints):
        rest[j] = rest[skeleton.parents[j]] + off[j]
    angle = torch.linspace(0, 2.5, T, dtype=torch.float64)[None, :, None] * torch.rand(B, 1, 1, generator=g,
                                                                                          dtype=torch.float64)
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = rest.unbind(-1)
    turned = torch.stack((c * x + s * z, y.expand_as(c * x), -s * x + c * z), dim=-1)
    noise = 0.03 * torch.randn(B, T, skeleton.num_joints, 3, generator=g, dtype=torch.float64).cumsum(1)
    X = turned + noise + torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    return X.to(dtype)


def _run(backend, device, X, fs, lengths=None, **kw):
    kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    return vk.motion_features(X.to(device), fs, None if lengths is None else lengths.to(device), backend=backend,
                              **kw).cpu()


@only("cpp", "cuda")
@pytest.mark.parametrize("skeleton", SKELETONS, ids=lambda s: s.name)
@pytest.mark.parametrize("normalised", [False, True], ids=["raw", "normalised"])
def test_matches_reference_float64(backend, skeleton, normalised):
    backend, device = backend.name, backend.device
    fs = feature_skeleton(skeleton)
    X = walking_joints(skeleton)
    lengths = torch.tensor([17, 9, 2])
    kw = {}
    if normalised:
        g = torch.Generator().manual_seed(1)
        kw = dict(mean=torch.randn(fs.feature_dim, generator=g, dtype=torch.float64),
                  std=torch.rand(fs.feature_dim, generator=g, dtype=torch.float64) + 0.5)
    want = reference(X, lengths, fs, **kw)
    got = _run(backend, device, X, fs, lengths, **kw)
    assert got.shape == (3, 16, fs.feature_dim) and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # Rows at or past lengths - 1 are zero features.
    pad = got[1, 8:] if not normalised else got[1, 8:] * kw["std"] + kw["mean"]
    assert pad.abs().max() < 1e-12
    assert got[1, :8].abs().amax(-1).min() > 0


# A small user-defined body: pelvis, hips, spine, shoulders, a left leg. It faces +z
# exactly (right - left = -x), so at rest every bone frame is the identity.
TOY = vk.FeatureSkeleton(
    parents=(-1, 0, 0, 0, 3, 3, 2, 6),
    offsets=((0, 0, 0), (-0.1, 0, 0), (0.1, 0, 0), (0, 0.3, 0), (-0.15, 0, 0), (0.15, 0, 0), (0, -0.4, 0),
             (0, -0.4, 0)),
    facing_joints=(1, 2, 4, 5), feet_left=(7,), feet_right=(),
)


def _toy_rest_pose(T=3):
    pose = torch.zeros(8, 3, dtype=torch.float64)
    off = torch.tensor(TOY.offsets, dtype=torch.float64)
    for j in range(1, 8):
        pose[j] = pose[TOY.parents[j]] + off[j]
    return pose.expand(1, T, 8, 3).clone()


@only("cpp", "cuda")
def test_bone_opposite_its_rest_direction_is_a_half_turn(backend):
    backend, device = backend.name, backend.device
    X = _toy_rest_pose()
    X[..., 7, :] = X[..., 6, :] + torch.tensor([0.0, 0.4, 0.0], dtype=torch.float64)  # the shin points up
    got = _run(backend, device, X, TOY)
    torch.testing.assert_close(got, reference(X, torch.tensor([3]), TOY), rtol=0, atol=1e-12)
    rot0 = 4 + 3 * 7
    six = got[0, :, rot0:rot0 + 6 * 7].reshape(2, 7, 6)
    # Half turn about z (u = -y: x is the first least-aligned axis, perp = u x x = +z).
    assert torch.equal(six[:, 6], torch.tensor([-1.0, 0, 0, 0, -1, 0], dtype=torch.float64).expand(2, 6))
    assert torch.equal(six[:, :6], torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64).expand(2, 6, 6))
    assert got.shape[-1] == TOY.feature_dim == 12 * 8 - 5 + 1


@only("cpp", "cuda")
def test_zero_length_bone_stays_finite(backend):
    backend, device = backend.name, backend.device
    fs = feature_skeleton(SMPL22)
    X = walking_joints(SMPL22, B=2, T=5)
    X[1, :, SMPL22.index("neck")] = X[1, :, SMPL22.index("spine3")]
    got = _run(backend, device, X, fs)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, reference(X, torch.tensor([5, 5]), fs), rtol=0, atol=1e-10)


@only("cpp", "cuda")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_within_twice_eager_error(backend, dtype):
    backend, device = backend.name, backend.device
    fs = feature_skeleton(SMPL22)
    X64 = walking_joints(SMPL22, B=4, T=30, seed=3)
    X = X64.to(dtype)
    exact = reference(X.double(), torch.full((4,), 30), fs)  # the rounded inputs, exactly
    eager = reference(X, torch.full((4,), 30), fs).double()
    got = _run(backend, device, X, fs).double()
    assert got.dtype == torch.float64 and torch.isfinite(got).all()
    # Contacts are thresholds: compare the continuous channels.
    cont = slice(0, fs.feature_dim - len(fs.feet))
    k_err = (got - exact)[..., cont].abs().max().item()
    e_err = (eager - exact)[..., cont].abs().max().item()
    assert k_err <= 2 * e_err, f"kernel error {k_err:.3g} > 2 x eager error {e_err:.3g} in {dtype}"


@only("cpp", "cuda")
def test_agrees_with_encode_on_corpus_motion(backend):
    backend, device = backend.name, backend.device
    import numpy as np

    from vmdm.data.build.synth.clip import generate_clip
    from vmdm.data.build.synth.corpus import plan_corpus

    clips = [generate_clip(p, np.random.default_rng(i))[0] for i, p in enumerate(plan_corpus(5, seed=3))]
    T = max(len(c) for c in clips)
    X = torch.zeros(len(clips), T, 22, 3, dtype=torch.float64)
    for i, c in enumerate(clips):
        X[i, :len(c)] = torch.from_numpy(c.astype(np.float64))
    lengths = torch.tensor([len(c) for c in clips])
    want = encode(X, SMPL22, lengths, backend="reference")
    got = encode(X.to(device), SMPL22, lengths.to(device), backend=backend).cpu()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@only("cpp", "cuda")
def test_non_contiguous_input(backend):
    backend, device = backend.name, backend.device
    fs = feature_skeleton(KIT21)
    X = walking_joints(KIT21, B=2, T=9)
    strided = torch.empty(9, 2, KIT21.num_joints, 3, dtype=X.dtype).transpose(0, 1)
    strided.copy_(X)
    assert not strided.is_contiguous()
    torch.testing.assert_close(_run(backend, device, strided, fs), reference(X, torch.tensor([9, 9]), fs),
                               rtol=0, atol=1e-10)


@only("cpp", "cuda")
def test_empty_batch_and_two_frames(backend):
    backend, device = backend.name, backend.device
    fs = feature_skeleton(SMPL22)
    assert _run(backend, device, torch.zeros(0, 5, 22, 3), fs).shape == (0, 4, 263)
    X = walking_joints(SMPL22, B=1, T=2)
    torch.testing.assert_close(_run(backend, device, X, fs), reference(X, torch.tensor([2]), fs), rtol=0, atol=1e-10)


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(2, 24), seed=st.integers(0, 10_000), data=st.data())
def test_property_random_lengths_match_reference(B, T, seed, data):
    if not vk.backends()["cpp"].available:
        pytest.skip(str(vk.backends()["cpp"]))
    lengths = torch.tensor(data.draw(st.lists(st.integers(2, T), min_size=B, max_size=B)))
    fs = feature_skeleton(SMPL22)
    X = walking_joints(SMPL22, B=B, T=T, seed=seed)
    torch.testing.assert_close(vk.motion_features(X, fs, lengths, backend="cpp"), reference(X, lengths, fs),
                               rtol=0, atol=1e-10)


@only("cpp", "cuda")
def test_long_padded_batch_with_smoothing_window_at_both_edges(backend):
    """T = 197 (longer than the 161-tap window), lengths that cut the window on either side."""
    backend, device = backend.name, backend.device
    fs = feature_skeleton(SMPL22)
    X = walking_joints(SMPL22, B=4, T=197, seed=5)
    lengths = torch.tensor([197, 100, 81, 3])
    want = reference(X, lengths, fs)
    got = _run(backend, device, X, fs, lengths)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # Padding a clip changes nothing in its valid rows: the smoothing's edge is its last valid frame.
    alone = _run(backend, device, X[1:2, :100], fs)
    torch.testing.assert_close(got[1:2, :99], alone, rtol=0, atol=1e-12)


@only("cpp", "cuda")
def test_window_encoded_on_its_own_matches_reference(backend):
    """The release re-encodes per training window: a window's features are its own (they
    differ from the clip's features near the window's edges) and kernel and reference agree."""
    backend, device = backend.name, backend.device
    fs = feature_skeleton(SMPL22)
    X = walking_joints(SMPL22, B=1, T=240, seed=7)
    window = X[:, 60:180]
    got = _run(backend, device, window, fs)
    torch.testing.assert_close(got, reference(window, torch.tensor([120]), fs), rtol=0, atol=1e-10)
    whole = reference(X, torch.tensor([240]), fs)[:, 60:179]
    rot_vel = slice(0, 1)
    assert (got[..., rot_vel] - whole[..., rot_vel]).abs().max() > 1e-6  # the crop is not the clip's features


@only("cpp", "cuda", "reference")
def test_heading_through_half_turn_keeps_its_velocity_sign(backend):
    """A body turning steadily by 1.5 turns: the root's angular velocity keeps one sign
    (quaternion continuity) and decoding integrates the whole turn back."""
    backend, device = backend.name, backend.device
    from vmdm.motion.representation import decode

    T = 160
    X = walking_joints(SMPL22, B=1, T=T, seed=2) * torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    X = X[:, :1].expand(1, T, 22, 3).clone()  # one pose
    angle = torch.linspace(0, 3 * torch.pi, T, dtype=torch.float64)[None, :, None]
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = X.unbind(-1)
    X = torch.stack((c * x + s * z, y, -s * x + c * z), dim=-1)
    fs = feature_skeleton(SMPL22)
    got = _run(backend, device, X, fs)
    rot_vel = got[0, 1:, 0]  # row 0 turns from the identity to the smoothed facing of frame 1
    assert (rot_vel < 0).all() or (rot_vel > 0).all(), rot_vel
    back = decode(got, SMPL22)
    assert abs(2 * float(got[0, :, 0].sum())) > 2 * torch.pi  # more than a whole turn integrated
    assert torch.isfinite(back).all()


# --------------------------------------------------------------------------- dispatch and autograd


def test_gradients_go_through_the_reference():
    fs = feature_skeleton(DETECTOR16)
    X = walking_joints(DETECTOR16, B=1, T=4).requires_grad_(True)
    feats = vk.motion_features(X, fs)  # automatic: the reference, differentiable
    assert feats.requires_grad
    cont = slice(0, fs.feature_dim - len(fs.feet))

    def f(x):
        return vk.motion_features(x, fs)[..., cont]

    assert torch.autograd.gradcheck(f, (X,), eps=1e-6, atol=1e-5)


@pytest.mark.skipif(not vk.backends()["cpp"].available, reason=str(vk.backends()["cpp"]))
def test_forward_only_kernel_refuses_gradients():
    fs = feature_skeleton(SMPL22)
    X = walking_joints(SMPL22, B=1, T=4).requires_grad_(True)
    with pytest.raises(ValueError, match="forward-only"):
        vk.motion_features(X, fs, backend="cpp")
    with torch.no_grad():
        assert not vk.motion_features(X, fs, backend="cpp").requires_grad


@pytest.mark.skipif(not vk.backends()["cpp"].available, reason=str(vk.backends()["cpp"]))
def test_opcheck_and_compile_fullgraph():
    fs = feature_skeleton(SMPL22)
    X = walking_joints(SMPL22, B=2, T=6).float()
    lengths = torch.tensor([6, 4])
    mean, std = torch.zeros(263), torch.ones(263)
    child, parent, frame, rest, facing, feet = fs.kernel_tables
    args = (X, lengths, child, parent, frame, rest, facing, feet, 0.002, 20.0, mean, std, "cpp")
    torch.library.opcheck(torch.ops.vmdm.motion_features_fwd.default, args)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def targets(x, n):
        return vk.motion_features(x * 1.0, fs, n, mean=mean, std=std, backend="cpp")

    with torch.no_grad():
        torch.testing.assert_close(targets(X, lengths), vk.motion_features(X, fs, lengths, mean=mean, std=std))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call,match", [
    (lambda fs, X: vk.motion_features(X[..., :21, :], fs), "expected 22 joints"),
    (lambda fs, X: vk.motion_features(X[:, :1], fs), "at least 2 frames"),
    (lambda fs, X: vk.motion_features(X, fs, torch.tensor([4])), r"lengths: expected an integer tensor of shape \[2\]"),
    (lambda fs, X: vk.motion_features(X, fs, torch.tensor([4.0, 4.0])), "lengths: expected an integer"),
    (lambda fs, X: vk.motion_features(X, fs, torch.tensor([1, 4])), r"lengths: each must be in \[2, 4\]"),
    (lambda fs, X: vk.motion_features(X, fs, torch.tensor([5, 4])), r"lengths: each must be in \[2, 4\]"),
    (lambda fs, X: vk.motion_features(X, fs, mean=torch.zeros(263)), "give both or neither"),
    (lambda fs, X: vk.motion_features(X, fs, mean=torch.zeros(262), std=torch.ones(262)), r"mean: expected shape \[D=263\]"),
    (lambda fs, X: vk.motion_features(X, "smpl22"), "expected a vmdm_kernels.FeatureSkeleton"),
    (lambda fs, X: vk.motion_features(X, fs, facing_sigma=-2.0), r"facing_sigma: expected a number of frames"),
])
def test_bad_inputs_name_the_argument(call, match):
    fs = feature_skeleton(SMPL22)
    X = walking_joints(SMPL22, B=2, T=4)
    with pytest.raises((ValueError, TypeError), match=match):
        call(fs, X)


def test_bad_skeletons():
    off = ((0.0, 0.0, 0.0), (0.1, 0.0, 0.0), (0.0, 0.1, 0.0))
    with pytest.raises(ValueError, match="parents must precede"):
        vk.FeatureSkeleton((-1, 2, 0), off, (0, 1, 0, 1), (), ())
    with pytest.raises(ValueError, match=r"feet_left: joints \[7\]"):
        vk.FeatureSkeleton((-1, 0, 1), off, (0, 1, 0, 1), (7,), ())
    with pytest.raises(ValueError, match="offsets: expected 3 triples"):
        vk.FeatureSkeleton((-1, 0, 1), off[:2], (0, 1, 0, 1), (), ())
    with pytest.raises(ValueError, match=r"chains: \(0, 2\) has 0 -> 2, which is not a bone"):
        vk.FeatureSkeleton((-1, 0, 1), off, (0, 1, 0, 1), (), (), ((0, 2),))
    with pytest.raises(ValueError, match=r"chains: joints \[2\] are on no chain"):
        vk.FeatureSkeleton((-1, 0, 1), off, (0, 1, 0, 1), (), (), ((0, 1),))


@pytest.mark.skipif(not vk.backends()["cpp"].available, reason=str(vk.backends()["cpp"]))
def test_kernel_checks_its_tables():
    import vmdm_kernels._C  # noqa: F401

    fs = feature_skeleton(SMPL22)
    X = walking_joints(SMPL22, B=1, T=3).float()
    child, parent, frame, rest, facing, feet = fs.kernel_tables
    op = torch.ops.vmdm_C.motion_features_fwd
    n = torch.tensor([3])
    with pytest.raises(ValueError, match="every parent before its children"):
        op(X, n, child[::-1], parent[::-1], frame[::-1], rest, facing, feet, 0.002, 20.0, None, None)
    with pytest.raises(ValueError, match="rest: expected 66 values"):
        op(X, n, child, parent, frame, rest[:-3], facing, feet, 0.002, 20.0, None, None)
    with pytest.raises(ValueError, match="bone_frame: expected 21 entries"):
        op(X, n, child, parent, frame[:-1], rest, facing, feet, 0.002, 20.0, None, None)
    with pytest.raises(ValueError, match=r"bone_frame\[0\] = 5"):
        op(X, n, child, parent, (5,) + frame[1:], rest, facing, feet, 0.002, 20.0, None, None)
    with pytest.raises(ValueError, match="facing_sigma: expected 0..1000"):
        op(X, n, child, parent, frame, rest, facing, feet, 0.002, -1.0, None, None)
    with pytest.raises(ValueError, match="expected 2..64 joints"):
        op(torch.zeros(1, 3, 65, 3), n, list(range(1, 65)), [0] * 64, [-1] * 64, [0.1] * 195, facing, feet,
           0.002, 20.0, None, None)
