"""Several clips lifted in one batch (lift_batch): the same lifts as clip by clip where the
lift is deterministic, every clip on its own keypoints and camera, grouped by length."""

import pytest
import torch

from vmdm.inference.lifting import lift_batch, lift_details
from vmdm.inference.placement import fit_placement
from vmdm.motion.cameras import pixels_to_normalized, project, sample_camera


@pytest.fixture(scope="module")
def clips(known_clip):
    """Three views of the known walk (two 40-frame clips, one 30-frame one; one camera moves
    per frame), each with its own teacher lift (the truth plus a smooth error)."""
    joints, E, K, kp = known_clip
    out = []
    for i, F in enumerate((40, 30, 40)):
        x = joints[:F]
        E_i, K_i = (E, K) if i == 0 else sample_camera(x.float(), generator=torch.Generator().manual_seed(10 + i))
        E_i, K_i = E_i.double(), K_i.double()
        if i == 2:  # a camera that moves: one extrinsic per frame
            E_i = E_i.expand(F, 3, 4).clone()
            E_i[:, 0, 3] += torch.linspace(0, 0.3, F, dtype=torch.float64)
        uv, _ = project(x, E_i, K_i)
        sc = torch.ones(F, 22, dtype=torch.float64)
        sc[F // 2, 3 + i] = 0  # an unseen joint
        wobble = 0.04 * torch.sin(torch.linspace(0, 3, F, dtype=torch.float64))[:, None, None] * (i + 1)
        out.append(dict(kp=uv, sc=sc, cam=E_i, K=K_i, teacher=x + wobble))
    return out


def _args(clips):
    return ([c["kp"] for c in clips], [c["sc"] for c in clips], [c["cam"] for c in clips], [c["K"] for c in clips])


def test_deterministic_teacher_lifts_equal_clip_by_clip(loaded_tiny, clips):
    # t* = 0: the teacher snapped onto the rays, no noise drawn: the batch is exact.
    batch = lift_batch(loaded_tiny, *_args(clips), init="teacher", teachers=[c["teacher"] for c in clips], t_star=0)
    assert len(batch) == 3
    for c, got in zip(clips, batch):
        one = lift_details(loaded_tiny, c["kp"], c["sc"], c["cam"], c["K"], init="teacher", teacher=c["teacher"],
                           t_star=0)
        assert got.joints.shape == one.joints.shape == (1, c["kp"].shape[0], 22, 3)
        torch.testing.assert_close(got.joints, one.joints, atol=1e-5, rtol=0)
        torch.testing.assert_close(got.camera_canonical, one.camera_canonical.expand_as(got.camera_canonical),
                                   atol=1e-5, rtol=0)
        assert got.reprojection_error == pytest.approx(one.reprojection_error, abs=1e-6)


@pytest.mark.parametrize("init", ["noise", "teacher"])
def test_batches_of_one_are_single_lifts_with_the_groups_seeds(loaded_tiny, clips, init):
    kw = dict(init=init, sample_steps=4, seed=7) if init == "noise" else dict(init=init, t_star=3, seed=7)
    teachers = [c["teacher"] for c in clips] if init == "teacher" else None
    batch = lift_batch(loaded_tiny, *_args(clips), teachers=teachers, batch_size=1, **kw)
    # Batches of one, taken group by group (the 40-frame clips 0 and 2, then the 30-frame clip
    # 1): batch g draws from seed + g.
    for g, i in enumerate((0, 2, 1)):
        c, got = clips[i], batch[i]
        one = lift_details(loaded_tiny, c["kp"], c["sc"], c["cam"], c["K"], **{**kw, "seed": 7 + g},
                           **({"teacher": c["teacher"]} if teachers else {}))
        torch.testing.assert_close(got.joints, one.joints, atol=1e-5, rtol=0)


def test_a_batch_lifts_each_clip_onto_its_own_keypoints(loaded_tiny, clips):
    kw = dict(init="noise", sample_steps=4, num_samples=2, smooth=0.0)
    guided = lift_batch(loaded_tiny, *_args(clips), seed=3, **kw)
    again = lift_batch(loaded_tiny, *_args(clips), seed=3, **kw)
    free = lift_batch(loaded_tiny, *_args(clips), seed=3, guidance_strength=0.0, **kw)
    for c, g, a, f in zip(clips, guided, again, free):
        assert torch.equal(g.joints, a.joints)  # deterministic under a seed
        assert g.joints.shape == (2, c["kp"].shape[0], 22, 3) and torch.isfinite(g.joints).all()
        assert max(g.reprojection_error) < 0.5 * min(f.reprojection_error)


def test_batched_placement_fit_equals_one_fit_per_clip(known_clip):
    joints, E, K, kp = known_clip
    uv = pixels_to_normalized(kp, K)
    canon = (joints - joints[:1, :1] * torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))[None]
    X = canon.expand(3, -1, -1, -1).clone()
    X[1] += 0.02 * torch.randn(X[1].shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cams = torch.stack([E, E, E])
    cams[2, :, 3] += torch.tensor([0.2, -0.1, 0.5], dtype=torch.float64)
    w = torch.ones(3, *uv.shape[:2], dtype=torch.float64)
    w[1, :5] = 0.2
    uvs = torch.stack([uv, uv, uv + 0.01])
    rot, tr = fit_placement(X, uvs, w, cams)
    for i in range(3):
        r_i, t_i = fit_placement(X[i], uvs[i], w[i], cams[i])
        torch.testing.assert_close(rot[i], r_i, atol=1e-9, rtol=0)
        torch.testing.assert_close(tr[i], t_i, atol=1e-9, rtol=0)


def test_bad_batches_name_the_clip_and_argument(loaded_tiny, clips):
    kp, sc, cams, Ks = _args(clips)
    with pytest.raises(ValueError, match="scores: expected one entry per clip"):
        lift_batch(loaded_tiny, kp, sc[:2], cams, Ks)
    bad = list(sc)
    bad[1] = bad[1][:, :10]
    with pytest.raises(ValueError, match=r"clip 1: scores: expected shape"):
        lift_batch(loaded_tiny, kp, bad, cams, Ks)
    with pytest.raises(ValueError, match="teacher"):
        lift_batch(loaded_tiny, kp, sc, cams, Ks, init="teacher")
    wrong = [c["teacher"] for c in clips]
    wrong[2] = wrong[2][:10]
    with pytest.raises(ValueError, match=r"clip 2: teacher: expected"):
        lift_batch(loaded_tiny, kp, sc, cams, Ks, init="teacher", teachers=wrong)
    with pytest.raises(ValueError, match="at least one clip"):
        lift_batch(loaded_tiny, [], [], [])
    with pytest.raises(ValueError, match="batch_size"):
        lift_batch(loaded_tiny, kp, sc, cams, Ks, batch_size=0)
    with pytest.raises(ValueError, match=r"intrinsics: expected one entry per clip \(3\), got 2"):
        lift_batch(loaded_tiny, kp, sc, cams, torch.stack(Ks[:2]))


def test_intrinsics_one_for_all_or_one_per_clip(loaded_tiny, clips):
    # The same clip three times: one intrinsics vector, a list of them, or a [3, 4] array.
    c = clips[0]
    args = ([c["kp"]] * 3, [c["sc"]] * 3, [c["cam"]] * 3)
    kw = dict(init="teacher", teachers=[c["teacher"]] * 3, t_star=0)
    ref = lift_batch(loaded_tiny, *args, c["K"], **kw)
    for K in ([c["K"]] * 3, torch.stack([c["K"]] * 3), c["K"].tolist()):
        got = lift_batch(loaded_tiny, *args, K, **kw)
        for a, b in zip(ref, got):
            assert torch.equal(a.joints, b.joints)


def test_captioned_and_uncaptioned_clips_are_lifted_apart(loaded_tiny, clips):
    # A caption switches classifier-free guidance on: such clips never share a batch with
    # uncaptioned ones, so each gets what a single call would give it.
    c = clips[0]
    texts = ["a person walks.", ""]
    batch = lift_batch(loaded_tiny, [c["kp"]] * 2, [c["sc"]] * 2, [c["cam"]] * 2, c["K"], texts,
                       init="teacher", teachers=[c["teacher"]] * 2, t_star=2, seed=0, batch_size=8)
    for g, (text, got) in enumerate(zip(texts, batch)):
        one = lift_details(loaded_tiny, c["kp"], c["sc"], c["cam"], c["K"], text, init="teacher",
                           teacher=c["teacher"], t_star=2, seed=g)
        torch.testing.assert_close(got.joints, one.joints, atol=1e-5, rtol=0)
