import math

import numpy as np
import pytest
import torch

from vmdm.motion.kinematics import axis_angle_to_matrix, rotation_about_y
from vmdm.motion.representation import (
    Normalizer,
    canonicalize,
    channel_groups,
    compute_mean_std,
    decode,
    encode,
    facing_yaw,
    feature_dim,
    redundant_slice,
)
from vmdm.motion.skeleton import DETECTOR16, KIT21, SMPL22, forward_kinematics


def smooth_motion(B=2, T=50, seed=0, turn=4.0, dtype=torch.float64, skeleton=SMPL22):
    """Random smooth FK motion walking along a curve and turning."""
    g = torch.Generator().manual_seed(seed)
    J = skeleton.num_joints
    t = torch.linspace(0, 1, T, dtype=dtype)
    basis = torch.stack([torch.sin((k + 1) * math.pi * t) for k in range(3)], -1)
    coef = torch.randn(B, 3, J, 3, generator=g, dtype=dtype) * 0.3
    aa = torch.einsum("tk,bkjc->btjc", basis, coef)
    aa[..., 0, :] = 0
    aa[..., 0, 1] = turn * t + torch.rand(B, 1, generator=g, dtype=dtype) * 6
    root = torch.stack([torch.sin(3 * t), 0.9 + 0.05 * torch.sin(9 * t), 2 * t], -1)
    root = root + torch.randn(B, 1, 3, generator=g, dtype=dtype)
    return forward_kinematics(axis_angle_to_matrix(aa), root, skeleton)


def test_channel_layout_matches_humanml3d():
    g = channel_groups(SMPL22)
    assert feature_dim(SMPL22) == SMPL22.feature_dim == 263
    assert (g["ric"].start, g["ric"].stop) == (4, 67)
    assert (g["rot"].start, g["rot"].stop) == (67, 193)
    assert (g["local_vel"].start, g["local_vel"].stop) == (193, 259)
    assert (g["contacts"].start, g["contacts"].stop) == (259, 263)
    assert g["redundant"] == redundant_slice(SMPL22) == slice(67, 263)
    assert feature_dim(KIT21) == 251
    # One foot joint per side: two contact channels.
    assert feature_dim(DETECTOR16) == 12 * 16 - 5 + 2 == channel_groups(DETECTOR16)["contacts"].stop


@pytest.mark.parametrize("skeleton", [SMPL22, KIT21], ids=lambda s: s.name)
def test_round_trip_random_smooth_motion(skeleton):
    joints = smooth_motion(skeleton=skeleton)
    feats = encode(joints, skeleton)
    assert feats.shape == (2, 49, feature_dim(skeleton))
    canon, _ = canonicalize(joints, skeleton)
    assert (decode(feats, skeleton) - canon[:, :-1]).abs().max() < 1e-6


def test_round_trip_float32_and_numpy():
    joints = smooth_motion(B=1, T=120, turn=9.0)[0]
    canon, _ = canonicalize(joints, SMPL22)
    f32 = encode(joints.float(), SMPL22)
    assert f32.dtype == torch.float32
    assert (decode(f32, SMPL22) - canon[:-1]).abs().max() < 1e-4
    f_np = encode(joints.numpy(), SMPL22)
    assert isinstance(f_np, np.ndarray) and f_np.shape == (119, 263)
    assert np.abs(decode(f_np, SMPL22) - canon[:-1].numpy()).max() < 1e-6


def test_canonical_frame():
    joints = smooth_motion()
    canon, tf = canonicalize(joints, SMPL22)
    assert torch.allclose(canon[..., 1].amin(dim=(1, 2)), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(canon[:, 0, 0, [0, 2]], torch.zeros(2, 2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(facing_yaw(canon[:, 0], SMPL22), torch.zeros(2, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(tf.apply_points(joints), canon)
    assert torch.allclose(tf.inverse_points(canon), joints, atol=1e-12)


def test_features_ignore_global_placement():
    joints = smooth_motion()
    R = rotation_about_y(torch.tensor(2.1, dtype=torch.float64))
    moved = (R @ joints[..., None])[..., 0] + torch.tensor([3.0, 0.4, -7.0], dtype=torch.float64)
    assert torch.allclose(encode(moved, SMPL22), encode(joints, SMPL22), atol=1e-9)


@pytest.mark.parametrize("sigma", [0.0, 20.0])
def test_root_channels_follow_humanml3d_conventions(sigma):
    # Turning left at a constant rate while walking forward in the body frame.
    T, w, v = 200, 0.05, 0.04
    yaw = w * torch.arange(T, dtype=torch.float64)
    rot = torch.eye(3, dtype=torch.float64).repeat(T, 22, 1, 1)
    rot[:, 0] = rotation_about_y(yaw)
    # The SMPL rest pose faces a little off +z; walk where the body faces.
    rest = forward_kinematics(torch.eye(3, dtype=torch.float64).repeat(22, 1, 1), torch.zeros(3, dtype=torch.float64), SMPL22)
    face = yaw + facing_yaw(rest, SMPL22)
    fwd = torch.stack([torch.sin(face), torch.zeros(T, dtype=torch.float64), torch.cos(face)], -1)
    root = torch.cumsum(fwd * v, 0) + torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    joints = forward_kinematics(rot, root, SMPL22)
    f = encode(joints, SMPL22, facing_sigma=sigma)
    g = channel_groups(SMPL22)
    # Rows the smoothing window (4 sigma) does not push past the clip's edges; row 0 turns
    # from the identity (frame 0's root rotation) to frame 1's.
    edge = int(4 * sigma + 0.5)
    mid = slice(max(edge, 1), T - 1 - edge)
    n = f[mid].shape[0]
    assert n > 20
    # Channel 0 is the quaternion half-angle of the heading change, negative for a left turn.
    assert torch.allclose(f[mid, 0], torch.full((n,), -w / 2, dtype=torch.float64), atol=1e-9)
    # Constant speed in the body frame, and a still pose: ric does not change. (HumanML3D's
    # rotation channels do: its IK measures world shortest arcs and turns them by the
    # inverse root rotation, so a still pose that turns changes them.)
    speed = f[mid, 1:3].norm(dim=-1)
    assert torch.allclose(speed, torch.full((n,), v, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(f[mid, 1:3], f[mid][:1, 1:3].expand(n, -1), atol=1e-9)
    assert torch.allclose(f[:, 3], f[0, 3].expand(T - 1))
    assert (f[mid, g["rot"]] - f[mid][:1, g["rot"]]).abs().max() > 0.1
    assert torch.allclose(f[mid, g["ric"]], f[mid][:1, g["ric"]].expand(n, -1), atol=1e-9)


def test_contacts_planted_versus_sliding_foot():
    T = 12
    rot = torch.eye(3, dtype=torch.float64).repeat(T, 22, 1, 1)
    root = torch.tensor([0.0, 0.95, 0.0], dtype=torch.float64).repeat(T, 1)
    joints = forward_kinematics(rot, root, SMPL22).clone()
    # Right foot (8, 11) slides 0.1 m per frame: 0.01 m^2 > 0.002. Left stays.
    joints[:, [8, 11], 2] += 0.1 * torch.arange(T, dtype=torch.float64)[:, None]
    c = encode(joints, SMPL22)[:, channel_groups(SMPL22)["contacts"]]
    assert torch.equal(c[:, :2], torch.ones(T - 1, 2, dtype=torch.float64))
    assert torch.equal(c[:, 2:], torch.zeros(T - 1, 2, dtype=torch.float64))
    # Just under the threshold (0.044 m/frame -> 0.001936 m^2) is still contact.
    joints[:, [8, 11], 2] = joints[0, [8, 11], 2] + 0.044 * torch.arange(T, dtype=torch.float64)[:, None]
    c = encode(joints, SMPL22)[:, channel_groups(SMPL22)["contacts"]]
    assert torch.equal(c[:, 2:], torch.ones(T - 1, 2, dtype=torch.float64))


def test_padding_does_not_change_valid_frames():
    joints = smooth_motion(B=3, T=40)
    lengths = torch.tensor([40, 23, 2])
    padded = joints.clone()
    for b, n in enumerate(lengths.tolist()):
        padded[b, n:] = float("nan") if b == 1 else 1e6
    f = encode(padded, SMPL22, lengths=lengths)
    assert torch.isfinite(f).all()
    for b, n in enumerate(lengths.tolist()):
        single = encode(joints[b, :n], SMPL22)
        assert torch.allclose(f[b, : n - 1], single, atol=1e-12)
        assert (f[b, n - 1 :] == 0).all()
    canon, _ = canonicalize(padded, SMPL22, lengths=lengths)
    assert torch.allclose(canon[1, :23], canonicalize(joints[1, :23], SMPL22)[0])
    with pytest.raises(ValueError, match=r"lengths: each must be in \[2, 40\]"):
        encode(joints, SMPL22, lengths=[40, 41, 3])


def _project(X, R, t):
    cam = (R @ X[..., None])[..., 0] + t
    return cam[..., :2] / cam[..., 2:]


def test_canonical_transform_moves_cameras_consistently():
    joints = smooth_motion(B=2, T=10)
    canon, tf = canonicalize(joints, SMPL22)
    R = axis_angle_to_matrix(torch.tensor([[0.1, 0.5, -0.05], [0.2, -2.0, 0.1]], dtype=torch.float64))
    t = torch.tensor([[0.1, -0.8, 6.0], [0.0, -1.0, 7.0]], dtype=torch.float64)
    Rc, tc = tf.apply_camera(R, t)
    world = _project(joints, R[:, None, None], t[:, None, None])
    canonical = _project(canon, Rc[:, None, None], tc[:, None, None])
    assert torch.allclose(world, canonical, atol=1e-10)
    # Per-frame cameras [B, T, 3, 3] broadcast too.
    Rf, tf_ = R[:, None].expand(2, 10, 3, 3), t[:, None].expand(2, 10, 3)
    Rcf, tcf = tf.apply_camera(Rf, tf_)
    assert torch.allclose(Rcf, Rc[:, None].expand(2, 10, 3, 3))
    with pytest.raises(ValueError, match="t: expected shape"):
        tf.apply_camera(R, t[:, :2])


def test_decoder_gradcheck():
    f = (torch.randn(2, 5, 263, dtype=torch.float64) * 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: decode(x, SMPL22), (f,))


def test_encode_is_differentiable():
    joints = smooth_motion(B=1, T=8).requires_grad_(True)
    feats = encode(joints, SMPL22)
    ric = channel_groups(SMPL22)["ric"]
    feats[..., ric].square().sum().backward()
    assert torch.isfinite(joints.grad).all() and joints.grad.abs().sum() > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"joints: expected shape \[..., 22, 3\].*got \(10, 21, 3\)"):
        encode(torch.zeros(10, 21, 3), SMPL22)
    with pytest.raises(ValueError, match="at least 2 frames"):
        encode(torch.zeros(1, 22, 3), SMPL22)
    with pytest.raises(ValueError, match=r"features: expected shape \[..., T, 263\]"):
        decode(torch.zeros(10, 251), SMPL22)


def test_normalizer_groups_and_round_trip(tmp_path):
    feats = [encode(smooth_motion(B=1, T=30, seed=s)[0], SMPL22).numpy() for s in range(4)]
    mean, std = compute_mean_std(feats, SMPL22)
    data = np.concatenate(feats)
    assert np.allclose(mean, data.mean(0), atol=1e-6)
    g = channel_groups(SMPL22)
    for name in ("ric", "rot", "local_vel", "root_lin_vel"):
        sl = g[name]
        assert np.allclose(std[sl], data.std(0)[sl].mean(), rtol=1e-5)
    _, std5 = compute_mean_std(feats, SMPL22, feat_bias=5.0)
    assert np.allclose(std5[g["root_lin_vel"]], std[g["root_lin_vel"]] / 5, rtol=1e-6)
    assert np.allclose(std5[g["ric"]], std[g["ric"]])
    norm = Normalizer(mean, std)
    x = torch.from_numpy(data)
    assert torch.allclose(norm.denormalize(norm.normalize(x)), x, atol=1e-5)
    z = norm.normalize(data)
    assert abs(z[:, g["ric"]].mean()) < 1e-4
    norm.save(tmp_path)
    loaded = Normalizer.load(tmp_path)
    assert np.array_equal(loaded.mean, mean) and np.array_equal(loaded.std, std)
    with pytest.raises(FileNotFoundError, match="Mean.npy"):
        Normalizer.load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"features_list\[1\]: expected shape \[T, 263\]"):
        compute_mean_std([feats[0], feats[1][:, :200]], SMPL22)
