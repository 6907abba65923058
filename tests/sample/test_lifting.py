"""Lifting 2D keypoints with the prior: placement fit, ray guidance, frames and cameras.

The checkpoint is the barely trained tiny model, so these tests check the mechanics
(guidance pulls the motion onto the observed rays, the camera stays consistent with
the re-canonicalised motion, unobserved joints are left alone), not lifting accuracy.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vmdm.motion.cameras import pixels_to_normalized, project
from vmdm.motion.kinematics import rotation_about_y
from vmdm.motion.representation import canonicalize
from vmdm.motion.skeleton import SMPL22
from vmdm.inference.lifting import (apply_placement, default_t_star, fit_placement, lift, lift_details,
                                    reprojection_error)
from vmdm.inference.loading import load_model

STEPS = 5  # DDIM steps: enough for the mechanics, quick on a CPU
# No temporal smoothing where a test checks that joints end exactly on their rays (the
# barely trained model's corrections change fast over frames, so smoothing leaves some).
EXACT = dict(smooth=0.0)


def test_fit_placement_recovers_a_known_placement(known_clip):
    joints, E, K, kp = known_clip
    canon, _ = canonicalize(joints, SMPL22)
    uv = pixels_to_normalized(kp, K)
    rot, tr = fit_placement(canon, uv, torch.ones(uv.shape[:2]), E)
    placed = apply_placement(canon[None], rot[None], tr[None])[0]
    # The world walk is the canonical one turned and moved: the fit finds that exactly.
    assert (placed - joints).norm(dim=-1).max() < 1e-4
    assert reprojection_error(placed, kp, torch.ones(kp.shape[:2]), E, K) < 1e-3  # pixels


def test_fit_placement_with_per_frame_cameras_and_outliers(known_clip):
    joints, E, K, kp = known_clip
    F = joints.shape[0]
    canon, _ = canonicalize(joints, SMPL22)
    # A camera panning about the vertical through the walk's centre.
    centre = joints.reshape(-1, 3).mean(0)
    pan = rotation_about_y(torch.linspace(0, 0.3, F, dtype=torch.float64))
    R = E[:, :3] @ pan
    t = E[:, :3] @ centre + E[:, 3] - (R @ centre[:, None])[..., 0]
    cams = torch.cat((R, t[..., None]), dim=-1)
    uv, _ = project(joints, cams)
    w = torch.ones(uv.shape[:2], dtype=torch.float64)
    uv[::7, 20] += 0.3  # gross detector errors on a few wrists
    rot, tr = fit_placement(canon, uv, w, cams)
    placed = apply_placement(canon[None], rot[None], tr[None])[0]
    assert (placed - joints).norm(dim=-1).max() < 5e-3  # Huber weights bound the outliers' pull


def test_guided_lift_reprojects_far_better_than_unguided(loaded_tiny, known_clip):
    joints, E, K, kp = known_clip
    scores = torch.ones(kp.shape[:2])
    guided = lift_details(loaded_tiny, kp, scores, E, K, "a person walks forward.", sample_steps=STEPS, seed=0,
                          **EXACT)
    unguided = lift_details(loaded_tiny, kp, scores, E, K, "a person walks forward.", sample_steps=STEPS, seed=0,
                            guidance_strength=0.0)
    assert guided.joints.shape == (1, 40, 22, 3) and torch.isfinite(guided.joints).all()
    g, u = guided.reprojection_error[0], unguided.reprojection_error[0]
    # Both placed by the same fit; only the guidance differs. Errors in normalised units.
    assert u > 0.01
    assert g < 0.05 * u
    # The reported error is the error of the returned world joints.
    uv = pixels_to_normalized(kp, K)
    assert reprojection_error(guided.joints[0], uv, scores, E) == pytest.approx(g, abs=1e-6)
    # Partial guidance lands in between.
    half = lift_details(loaded_tiny, kp, scores, E, K, "a person walks forward.", sample_steps=STEPS, seed=0,
                        guidance_strength=0.5, **EXACT)
    assert g < half.reprojection_error[0] < u


def test_unobserved_joints_are_not_pulled_onto_their_rays(loaded_tiny, known_clip):
    joints, E, K, kp = known_clip
    scores = torch.ones(kp.shape[:2])
    wrist = SMPL22.index("left_wrist")
    scores[:, wrist] = 0.0
    scores[::3, 4] = 0.0  # a knee missed in some frames
    out = lift(loaded_tiny, kp.numpy(), scores.numpy(), E.numpy(), K.numpy(), sample_steps=STEPS, seed=1, **EXACT)
    assert isinstance(out, np.ndarray) and out.shape == (40, 22, 3) and np.isfinite(out).all()
    uv, _ = project(torch.from_numpy(out).double(), E, K)
    err = (uv - kp).norm(dim=-1)  # pixels
    observed = scores > 0
    # Observed joints end on their rays (the last denoising step is guided too); the
    # unobserved wrist is wherever the prior put it.
    assert err[observed].max() < 1.0
    assert err[:, wrist].mean() > 20 * err[observed].mean()


def test_pixel_and_normalised_keypoints_give_the_same_lift(loaded_tiny, known_clip):
    joints, E, K, kp = known_clip
    scores = torch.ones(kp.shape[:2])
    a = lift(loaded_tiny, kp, scores, E, K, sample_steps=STEPS, seed=3)
    b = lift(loaded_tiny, pixels_to_normalized(kp, K), scores, E, None, sample_steps=STEPS, seed=3)
    assert isinstance(a, torch.Tensor)
    assert torch.allclose(a, b, atol=1e-4)


def test_per_frame_camera_stays_consistent(loaded_tiny, known_clip):
    joints, E, K, _ = known_clip
    F = joints.shape[0]
    centre = joints.reshape(-1, 3).mean(0)
    pan = rotation_about_y(torch.linspace(0, 0.4, F, dtype=torch.float64))
    R = E[:, :3] @ pan
    t = E[:, :3] @ centre + E[:, 3] - (R @ centre[:, None])[..., 0]
    cams = torch.cat((R, t[..., None]), dim=-1)
    kp, _ = project(joints, cams, K)
    res = lift_details(loaded_tiny, kp, torch.ones(F, 22), cams, K, sample_steps=STEPS, seed=0, num_samples=2,
                       **EXACT)
    assert res.joints.shape == (2, F, 22, 3)
    assert res.camera_canonical.shape == (2, F, 3, 4)
    assert max(res.reprojection_error) < 1e-3
    # The canonical-frame camera sees the canonical joints exactly as the world camera
    # sees the world joints.
    uv_c, _ = project(res.canonical_joints.double(), res.camera_canonical.double())
    uv_w, _ = project(res.joints.double(), cams[None].expand(2, -1, -1, -1))
    assert (uv_c - uv_w).abs().max() < 1e-4
    assert not torch.allclose(res.joints[0], res.joints[1])  # two samples, two lifts


def test_lift_from_a_clip_file_on_the_command_line(tiny_checkpoint, known_clip, tmp_path):
    from vmdm.data.formats.video import write_video_clip
    from vmdm.sample import main

    joints, E, K, kp = known_clip
    # The clip format's teacher lift: the true motion, slightly noisy (a lifter's output).
    noisy = joints.numpy() + np.random.default_rng(0).normal(0, 0.01, joints.shape)
    scores = np.ones(kp.shape[:2])
    scores[:, SMPL22.index("head")] = 0.0
    clip = write_video_clip(tmp_path / "clip.npz", keypoints=kp.numpy(), scores=scores, lift=noisy,
                            captions=["a person walks forward."], coords="pixel", intrinsics=K.numpy(),
                            extrinsics=E.numpy())
    out = tmp_path / "lifted"
    assert main(["--checkpoint", str(tiny_checkpoint), "--lift", str(clip), "--out", str(out), "--sample-steps",
                 str(STEPS), "--formats", "npy,bvh", "--no-progress", "--num-samples", "2", "--lift-smooth", "0"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["lift"]["frames"] == 39  # T keypoint frames -> T - 1 motion frames
    assert len(res["samples"]) == 2
    cam = torch.from_numpy(np.load(out / res["lift"]["camera"])).double()
    observed = torch.from_numpy(scores[:39] > 0)
    for s in res["samples"]:
        lifted = torch.from_numpy(np.load(out / f"{s['name']}_joints.npy")).double()
        assert lifted.shape == (39, 22, 3)
        assert s["text"] == ""  # no --text: unconditional
        assert s["reprojection_error_px"] < 1.0
        # The saved camera sees the saved joints on the clip's keypoints.
        uv, _ = project(lifted, cam, K)
        assert (uv - kp[:39]).norm(dim=-1)[observed].max() < 1.0
    assert res["lift"]["init"] == "teacher" and res["lift"]["t_star"] == default_t_star(load_model(tiny_checkpoint))


def test_several_clips_in_one_lift_command(tiny_checkpoint, known_clip, tmp_path, capsys):
    """``--lift a.npz --lift b.npz ...``: one batched lift (lift_batch) whose batch ``g``
    uses ``seed + g``; every clip lands on its own keypoints and is saved with its camera."""
    from vmdm.data.formats.video import write_video_clip
    from vmdm.sample import main

    joints, E, K, kp = known_clip
    rng = np.random.default_rng(1)
    files = []
    for name, T in (("a", 40), ("b", 30), ("c", 40)):  # a and c share a length, hence a batch
        noisy = joints.numpy()[:T] + rng.normal(0, 0.01, (T, 22, 3))
        files.append(str(write_video_clip(tmp_path / f"{name}.npz", keypoints=kp.numpy()[:T], lift=noisy,
                                          captions=["a person walks."], coords="pixel", intrinsics=K.numpy(),
                                          extrinsics=E.numpy())))
    base = ["--checkpoint", str(tiny_checkpoint), "--sample-steps", str(STEPS), "--formats", "npy", "--no-progress",
            "--t-star", "2", "--lift-smooth", "0"]
    out = tmp_path / "all"
    assert main([*base, "--out", str(out), "--num-samples", "2",
                 *[a for f in files for a in ("--lift", f)]]) == 0
    res = json.loads((out / "results.json").read_text())
    assert "lift" not in res and [r["clip"] for r in res["lifts"]] == files
    assert [r["frames"] for r in res["lifts"]] == [39, 29, 39]
    assert [s["name"] for s in res["samples"]] == [f"sample{c:02d}_rep{r:02d}" for c in range(3) for r in range(2)]
    assert [s["clip"] for s in res["samples"]] == [f for f in files for _ in range(2)]
    for s, rec in zip(res["samples"], [r for r in res["lifts"] for _ in range(2)]):
        lifted = torch.from_numpy(np.load(out / f"{s['name']}_joints.npy")).double()
        assert lifted.shape == (rec["frames"], 22, 3) and s["length"] == rec["frames"]
        cam = torch.from_numpy(np.load(out / rec["camera"])).double()
        uv, _ = project(lifted, cam, K)  # each lift sits on its own clip's keypoints
        assert (uv - kp[:rec["frames"]]).norm(dim=-1).median() < 2.0
    # Batch 0 holds clips a and c (seed 0), batch 1 clip b alone (seed 1): b's lifts are
    # those of a one-clip command with seed 1.
    one = tmp_path / "one"
    assert main([*base, "--out", str(one), "--num-samples", "2", "--lift", files[1], "--seed", "1"]) == 0
    single = json.loads((one / "results.json").read_text())
    assert single["lift"]["camera"] == "lift_camera.npy" and single["lifts"] == [single["lift"]]
    for r in range(2):
        np.testing.assert_allclose(np.load(one / f"sample00_rep{r:02d}_joints.npy"),
                                   np.load(out / f"sample01_rep{r:02d}_joints.npy"), atol=1e-5)
    # The same command again: the same lifts.
    again = tmp_path / "again"
    assert main([*base, "--out", str(again), "--num-samples", "2", *[a for f in files for a in ("--lift", f)]]) == 0
    for s in res["samples"]:
        assert np.array_equal(np.load(out / f"{s['name']}_joints.npy"), np.load(again / f"{s['name']}_joints.npy"))
    with pytest.raises(SystemExit) as e:
        main([*base, "--out", str(tmp_path / "bad"), "--lift", files[0], "--lift", files[1], "--lift", files[2],
              "--text", "x", "--text", "y"])
    assert e.value.code == 2 and "--text" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_lift_init_and_t_star_on_the_command_line(tiny_checkpoint, known_clip, tmp_path, capsys):
    from vmdm.data.formats.video import write_video_clip
    from vmdm.sample import main

    joints, E, K, kp = known_clip
    clip = write_video_clip(tmp_path / "clip.npz", keypoints=kp.numpy(), lift=joints.numpy(),
                            captions=["a person walks."], coords="pixel", intrinsics=K.numpy(), extrinsics=E.numpy())
    base = ["--checkpoint", str(tiny_checkpoint), "--lift", str(clip), "--sample-steps", str(STEPS), "--formats",
            "npy", "--no-progress"]
    for extra, init, t_star in ((["--init", "noise"], "noise", None), (["--t-star", "2"], "teacher", 2),
                                (["--init", "teacher", "--t-star", "0"], "teacher", 0)):
        out = tmp_path / f"out_{init}_{t_star}"
        assert main([*base, "--out", str(out), *extra]) == 0
        res = json.loads((out / "results.json").read_text())
        assert (res["lift"]["init"], res["lift"]["t_star"]) == (init, t_star)
        assert np.isfinite(np.load(out / f"{res['samples'][0]['name']}_joints.npy")).all()
    for extra, words in ((["--init", "noise", "--t-star", "2"], ("--t-star", "--init teacher")),
                         (["--t-star", "-1"], ("--t-star", ">= 0")), (["--init", "zeros"], ("--init", "zeros"))):
        with pytest.raises(SystemExit) as e:
            main([*base, "--out", str(tmp_path / "bad"), *extra])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), (extra, err)
    assert not (tmp_path / "bad").exists()


def test_bad_inputs_name_the_argument(loaded_tiny, known_clip):
    joints, E, K, kp = known_clip
    sc = torch.ones(kp.shape[:2])
    with pytest.raises(ValueError, match="keypoints"):
        lift(loaded_tiny, kp[..., :1], sc, E, K)
    with pytest.raises(ValueError, match="keypoints"):
        lift(loaded_tiny, kp[:, :17], sc[:, :17], E, K)
    with pytest.raises(ValueError, match="scores"):
        lift(loaded_tiny, kp, sc[:-1], E, K)
    with pytest.raises(ValueError, match="scores"):
        lift(loaded_tiny, kp, torch.zeros_like(sc), E, K)
    with pytest.raises(ValueError, match="camera"):
        lift(loaded_tiny, kp, sc, E[:2], K)
    with pytest.raises(ValueError, match="camera"):
        lift(loaded_tiny, kp, sc, torch.cat((2 * E[:, :3], E[:, 3:]), dim=1), K)
    with pytest.raises(ValueError, match="intrinsics"):
        lift(loaded_tiny, kp, sc, E, K[:3])
    with pytest.raises(ValueError, match="guidance_strength"):
        lift(loaded_tiny, kp, sc, E, K, guidance_strength=1.5)
    with pytest.raises(ValueError, match="smooth"):
        lift(loaded_tiny, kp, sc, E, K, smooth=-1.0)
    with pytest.raises(ValueError, match="ramp"):
        lift(loaded_tiny, kp, sc, E, K, ramp=-1.0)
    bad = kp.clone()
    bad[3, 2, 0] = math.nan
    with pytest.raises(ValueError, match="keypoints.*NaN"):
        lift(loaded_tiny, bad, sc, E, K)


def test_refit_with_keep_depth_moves_only_across_the_line_of_sight(known_clip):
    joints, E, K, kp = known_clip
    canon, _ = canonicalize(joints, SMPL22)
    uv = pixels_to_normalized(kp, K)
    w = torch.ones(uv.shape[:2])
    rot, tr = fit_placement(canon, uv, w, E)
    # Start 0.3 m off sideways and 0.5 m off along the optical axis.
    axis_x, axis_z = E[0, :3], E[2, :3]
    start = tr + 0.3 * axis_x + 0.5 * axis_z
    _, tr_keep = fit_placement(canon, uv, w, E, init=(rot, start), iterations=20, keep_depth=True)
    _, tr_free = fit_placement(canon, uv, w, E, init=(rot, start), iterations=20)
    # The sideways error is fixed, the depth error kept; a free refit fixes both.
    assert float((tr_keep - start) @ axis_z) == pytest.approx(0.0, abs=1e-9)
    assert abs(float((tr_keep - tr) @ axis_x)) < 0.05
    assert (tr_free - tr).norm() < 1e-3
    with pytest.raises(ValueError, match="keep_depth"):
        fit_placement(canon, uv, w, E, keep_depth=True)


def test_depth_follows_the_clip_average_body_size():
    from vmdm.inference.lifting import _keep_body_size

    torch.manual_seed(0)
    par = torch.tensor([max(p, 0) for p in SMPL22.parents])
    body = torch.randn(1, 1, 22, 3).expand(1, 6, 22, 3).clone()
    wobble = torch.tensor([1.0, 1.2, 0.8, 1.1, 0.9, 1.0])
    pred = body * wobble[None, :, None, None]  # the prediction's size wobbles over frames
    rays = 2.0 * body  # the ray points: the true body twice too far, so twice too big
    k = _keep_body_size(pred, rays, torch.ones(6, 22), par)
    # Every frame is brought to the clip's average size (1.0), not to its own frame's.
    assert torch.allclose(k, torch.full((1, 6), 0.5), atol=1e-6)


class _OraclePrior:
    """A stand-in for a trained model whose every denoising prediction is the true motion,
    so that a lift shows what the guidance alone does to it. ``persistent``: each prediction
    is instead the previous step's guided one (the first is the truth), so that the
    guidance's corrections add up over the steps."""

    def __init__(self, joints, persistent: bool = False):
        from vmdm.motion.representation import encode
        from vmdm.model.diffusion import Diffusion

        self.skeleton = SMPL22
        self.config = {"supervision": "3d"}  # no guidance ramp
        self.body_scale = 1.0
        self.diffusion = Diffusion(50)
        self.model = type("M", (), {"cfg": type("C", (), {"max_frames": 196})()})()
        ext = torch.cat((joints, 2 * joints[-1:] - joints[-2:-1])).float()
        self.truth = encode(ext, SMPL22)  # [F, 263]
        self.persistent = persistent

    normalize = denormalize = staticmethod(lambda x: x)

    def generate(self, texts, F, *, guide=None, sampler="ddim", sample_steps=None, **kw):
        from vmdm.motion.representation import decode

        n = len(texts)
        x = self.truth.expand(n, -1, -1).clone()
        for t in self.diffusion.timesteps(sampler, sample_steps):
            x = guide(x if self.persistent else self.truth.expand(n, -1, -1).clone(), torch.full((n,), t),
                      slice(0, n))
        return {"features": x, "joints": decode(x, SMPL22)}


def test_smoothing_turns_keypoint_noise_into_less_jitter(known_clip):
    joints, E, K, kp = known_clip
    prior = _OraclePrior(joints)
    noisy = kp + 4.0 * torch.randn(kp.shape, generator=torch.Generator().manual_seed(0), dtype=kp.dtype)
    scores = torch.ones(kp.shape[:2])

    def errors(**kw):
        out = lift(prior, noisy, scores, E, K, **kw).double()
        d = out - joints
        return d.norm(dim=-1).mean(), (d[2:] - 2 * d[1:-1] + d[:-2]).norm(dim=-1).mean()

    (pos_raw, acc_raw), (pos_smooth, acc_smooth) = errors(smooth=0.0), errors()
    # The truth pulled onto noisy rays inherits the noise frame by frame; averaged
    # corrections keep most of it out, in position and far more in acceleration.
    assert acc_smooth < 0.3 * acc_raw
    assert pos_smooth < pos_raw


def test_body_scale_sets_the_depth_for_a_larger_body(known_clip):
    from vmdm.motion.cameras import camera_center

    joints, E, K, kp = known_clip
    prior = _OraclePrior(joints)
    scores = torch.ones(kp.shape[:2])
    centre = camera_center(E.double())
    plain = lift(prior, kp, scores, E, K, **EXACT).double()
    assert (plain - joints).norm(dim=-1).mean() < 0.01  # the truth, at its true depth
    prior.body_scale = 1.1  # what the checkpoint records
    stored = lift(prior, kp, scores, E, K, **EXACT).double()
    given = lift(prior, kp, scores, E, K, body_scale=1.1, **EXACT).double()
    assert torch.equal(stored, given)
    # Same rays, a body 10 % larger, so farther away.
    from vmdm.motion.bones import bone_length_sum

    size = bone_length_sum(stored, SMPL22.parents) / bone_length_sum(plain, SMPL22.parents)
    depth = (stored - centre).norm(dim=-1).mean() / (plain - centre).norm(dim=-1).mean()
    torch.testing.assert_close(size, torch.full_like(size, 1.1), rtol=1e-3, atol=0)
    assert depth > 1.05
    assert reprojection_error(stored, kp, scores, E, K) < 1e-3
    with pytest.raises(ValueError, match="body_scale"):
        lift(prior, kp, scores, E, K, body_scale=0.0)


def test_last_step_moves_low_confidence_joints_onto_their_rays(loaded_tiny, known_clip):
    joints, E, K, kp = known_clip
    scores = torch.full(kp.shape[:2], 0.5)
    full = lift_details(loaded_tiny, kp, scores, E, K, sample_steps=STEPS, seed=0, **EXACT)
    partial = lift_details(loaded_tiny, kp, scores, E, K, sample_steps=STEPS, seed=0, final_pull=False, **EXACT)
    assert full.reprojection_error[0] < 1e-4
    assert partial.reprojection_error[0] > 100 * full.reprojection_error[0]


def test_a_one_step_lift_ends_on_the_rays(loaded_tiny, known_clip):
    # One DDIM step visits only the noisiest diffusion step, never t = 0: that step is the
    # last one, so it gets the final pull (and no ramp, which would all but cancel it).
    joints, E, K, kp = known_clip
    scores = torch.full(kp.shape[:2], 0.5)
    assert loaded_tiny.diffusion.timesteps("ddim", 1) == [loaded_tiny.diffusion.steps - 1]
    res = lift_details(loaded_tiny, kp, scores, E, K, sample_steps=1, seed=0, **EXACT)
    assert res.reprojection_error[0] < 1e-4


def test_guidance_ramp_defaults_by_supervision(loaded_tiny, known_clip):
    joints, E, K, kp = known_clip
    scores = torch.ones(kp.shape[:2])

    def run(**kw):
        return lift_details(loaded_tiny, kp, scores, E, K, sample_steps=STEPS, seed=0, **EXACT, **kw)

    assert loaded_tiny.config["supervision"] == "2d"
    auto, ramped, flat = run(), run(ramp=12.0), run(ramp=0.0)
    assert torch.equal(auto.joints, ramped.joints)  # a 2D-supervised checkpoint gets 12
    assert not torch.allclose(auto.joints, flat.joints)
    # Every ramp still ends on the rays: the last step (t = 0) has the full pull.
    assert max(auto.reprojection_error + flat.reprojection_error) < 1e-3


def test_lift_steps_default_by_supervision(loaded_tiny, known_clip):
    import copy

    from vmdm.inference.lifting import LIFT_SAMPLE_STEPS

    joints, E, K, kp = known_clip
    scores = torch.ones(kp.shape[:2])
    assert loaded_tiny.config["supervision"] == "2d" and loaded_tiny.diffusion.steps == 50
    # A 2D-supervised prior lifts with 50 steps, the others with LIFT_SAMPLE_STEPS (10).
    default = lift(loaded_tiny, kp, scores, E, K, seed=0)
    assert torch.equal(default, lift(loaded_tiny, kp, scores, E, K, seed=0, sample_steps=50))
    on_3d = copy.copy(loaded_tiny)
    on_3d.config = {**loaded_tiny.config, "supervision": "3d"}
    assert LIFT_SAMPLE_STEPS == 10
    default_3d = lift(on_3d, kp, scores, E, K, seed=0)
    assert torch.equal(default_3d, lift(on_3d, kp, scores, E, K, seed=0, sample_steps=10))
    assert not torch.allclose(default_3d, lift(on_3d, kp, scores, E, K, seed=0, sample_steps=50))


def test_default_ramp_follows_what_the_prior_learnt_from():
    from types import SimpleNamespace

    from vmdm.inference.lifting import _resolve_ramp

    ramp = {sup: _resolve_ramp(SimpleNamespace(config={"supervision": sup}), None) for sup in ("2d", "teacher", "3d")}
    assert ramp == {"2d": 12.0, "teacher": 12.0, "3d": 0.0}
    assert _resolve_ramp(SimpleNamespace(config={}), None) == 0.0
    assert _resolve_ramp(SimpleNamespace(config={"supervision": "2d"}), 3) == 3.0


def test_more_steps_divide_the_guidance_instead_of_compounding_it(known_clip):
    from vmdm.inference.lifting import GUIDED_STEPS_REF

    joints, E, K, kp = known_clip
    # The arms' keypoints 20 px off the truth's projections (a change of pose no placement
    # can fit): each step pulls a persistent prediction a share of the way onto their rays.
    shifted = kp.clone()
    shifted[:, 16:] += 20.0
    scores = torch.full(kp.shape[:2], 0.2)
    prior = _OraclePrior(joints, persistent=True)

    def left(steps):
        out = lift(prior, shifted, scores, E, K, sample_steps=steps, smooth=0.0, keep_size=False,
                   refine_placement=False, final_pull=False).double()
        return reprojection_error(out, shifted, scores, E, K)

    start = reprojection_error(joints, shifted, scores, E, K)
    ref = left(GUIDED_STEPS_REF)
    assert 0.02 * start < ref < 0.5 * start  # moved most of the way, not all of it
    # The same share is left whatever the step count (compounded, 50 steps of 0.2 would
    # leave 0.8 ** 50, about 1e-5 of it, and 4 steps 0.8 ** 4 = 0.41).
    for steps in (4, 25, 50):
        assert left(steps) == pytest.approx(ref, rel=0.03)


@pytest.mark.parametrize("per_frame", [False, True])
def test_ray_points_behind_the_camera_are_brought_in_front(per_frame):
    from vmdm.motion.cameras import project
    from vmdm.inference.lifting import _in_front_of_camera

    g = torch.Generator().manual_seed(0)
    b, F, J = 2, 4, 3
    # A different camera for every motion (and frame): X_cam = R X + t.
    yaw = torch.rand(b, F if per_frame else 1, generator=g) * 6.0
    R = rotation_about_y(yaw.reshape(-1)).reshape(b, -1, 3, 3)
    t = torch.randn(b, R.shape[1], 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    camera = torch.cat((R, t[..., None]), dim=-1)  # [b, F or 1, 3, 4]
    camera = camera if per_frame else camera[:, 0]
    kp = 0.3 * torch.randn(F, J, 2, generator=g)
    # Points on the keypoints' lines at depth 2 (in front) and at depth -1 (the line's other half).
    depth = torch.full((b, F, J, 1), 2.0)
    depth[0, 1, 2] = depth[1, 3, 0] = depth[1, 0, 1] = -1.0
    in_cam = depth * torch.cat((kp, torch.ones(F, J, 1)), dim=-1)[None]
    Rf, tf = (R, t) if per_frame else (R.expand(b, F, 3, 3), t.expand(b, F, 3))
    targets = ((in_cam - tf[:, :, None])[..., None, :] @ Rf[:, :, None])[..., 0, :]  # R^T (X_cam - t)
    out, moved = _in_front_of_camera(targets, kp, camera, z_min=0.1)
    behind = depth[..., 0] < 0
    assert torch.equal(moved, behind)
    assert torch.equal(out[~behind], targets[~behind])  # in front: untouched
    z = ((Rf[:, :, None] @ out[..., None])[..., 0] + tf[:, :, None])[..., 2]
    torch.testing.assert_close(z[behind], torch.full_like(z[behind], 0.1))
    for i in range(b):  # still on their keypoints' rays, seen by their own cameras
        cam_i = torch.cat((Rf[i], tf[i][..., None]), dim=-1)
        uv, _ = project(out[i].double(), cam_i.double())
        torch.testing.assert_close(uv.float(), kp, rtol=0, atol=1e-5)


def test_size_corrections_are_divided_by_more_steps_never_multiplied(known_clip, monkeypatch):
    import vmdm.inference.lifting as lifting
    from vmdm.motion.cameras import camera_center

    joints, E, K, kp = known_clip
    scores = torch.ones(kp.shape[:2])
    # Every step asks for a body 1.2x larger, i.e. 1.2x farther along the rays.
    monkeypatch.setattr(lifting, "_keep_body_size", lambda pred, rays, w, par: torch.full(pred.shape[:2], 1.2))
    centre = camera_center(E.double())
    prior = _OraclePrior(joints, persistent=True)

    def farther(steps):
        out = lift(prior, kp, scores, E, K, sample_steps=steps, smooth=0.0, refine_placement=False).double()
        return float((out - centre).norm(dim=-1).mean() / (joints - centre).norm(dim=-1).mean())

    # 10 reference steps compound 1.2 ten times; 25 and 50 steps divide the same total.
    assert farther(10) == pytest.approx(1.2**10, rel=1e-3)
    assert farther(25) == pytest.approx(1.2**10, rel=1e-3)
    assert farther(50) == pytest.approx(1.2**10, rel=1e-3)
    # 4 steps apply each whole correction once (a power above 1 would overshoot to 1.2 ** 10).
    assert farther(4) == pytest.approx(1.2**4, rel=1e-3)


def test_a_clip_without_a_lift_is_lifted_by_the_projects_teacher(tiny_checkpoint, quick_data, known_clip, tmp_path,
                                                                   capsys):
    from vmdm.data.formats.video import write_video_clip
    from vmdm.sample import main

    joints, E, K, kp = known_clip
    clip = write_video_clip(tmp_path / "clip.npz", keypoints=kp.numpy(), lift=None, captions=["a person walks."],
                            coords="pixel", intrinsics=K.numpy(), extrinsics=E.numpy())
    base = ["--checkpoint", str(tiny_checkpoint), "--lift", str(clip), "--sample-steps", str(STEPS), "--formats",
            "npy", "--no-progress", "--t-star", "0"]
    out = tmp_path / "out"
    assert main([*base, "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    # Found through the checkpoint's 2D data, which the quick data's lifter built.
    assert res["lift"]["teacher"] == "teacher"
    assert Path(res["lift"]["teacher_lifter"]).resolve() == Path(quick_data.lifter).resolve()
    lifted = np.load(out / f"{res['samples'][0]['name']}_joints.npy")
    assert lifted.shape == (39, 22, 3) and np.isfinite(lifted).all()
    with pytest.raises(SystemExit) as e:
        main([*base, "--out", str(tmp_path / "bad"), "--teacher-lifter", str(tmp_path / "none.pt")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--teacher-lifter" in err and "none.pt" in err
