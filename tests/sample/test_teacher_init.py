"""Teacher-initialised lifting: the teacher's lift diffused to t* and denoised with guidance.

The tiny checkpoint is barely trained, so these tests check the mechanics (t* = 0 without
guidance is the teacher, guidance reduces the reprojection error, the teacher's root depth
is kept, seeds, errors), not accuracy; the accuracy is measured by the lift benchmark.
"""

import json

import numpy as np
import pytest
import torch

from vmdm.inference.lifting import DEFAULT_T_STAR, default_t_star, lift, lift_details, reprojection_error
from vmdm.motion.cameras import pixels_to_normalized, transform_points

STEPS = 4


@pytest.fixture(scope="module")
def teacher_case(known_clip):
    """The known walk with a teacher lift: the truth plus a smooth 4 cm error (world frame)."""
    joints, E, K, kp = known_clip
    rng = np.random.default_rng(1)
    wobble = 0.04 * np.sin(np.linspace(0, 3, joints.shape[0]))[:, None, None] * rng.normal(size=(1, 22, 3))
    teacher = joints + torch.from_numpy(wobble)
    return joints, E, K, kp, teacher


def test_t_star_0_without_guidance_returns_the_teachers_lift(loaded_tiny, teacher_case):
    joints, E, K, kp, teacher = teacher_case
    sc = torch.ones(kp.shape[:2])
    for given in (teacher, torch.cat((teacher, 2 * teacher[-1:] - teacher[-2:-1]))):  # F or F + 1 frames
        res = lift_details(loaded_tiny, kp, sc, E, K, init="teacher", teacher=given, t_star=0,
                           guidance_strength=0.0)
        assert res.t_star == 0 and res.init == "teacher"
        assert (res.joints[0].double() - teacher).norm(dim=-1).max() < 1e-4


def test_guided_run_reduces_the_reprojection_error(loaded_tiny, teacher_case):
    joints, E, K, kp, teacher = teacher_case
    sc = torch.ones(kp.shape[:2])
    uv = pixels_to_normalized(kp, K)
    before = reprojection_error(teacher, uv, sc, E)
    for t_star in (0, 3, 12):
        res = lift_details(loaded_tiny, kp, sc, E, K, init="teacher", teacher=teacher, t_star=t_star, smooth=0.0,
                           seed=0)
        assert torch.isfinite(res.joints).all()
        assert res.reprojection_error[0] < 0.05 * before, t_star


def test_the_teachers_root_depth_is_kept(loaded_tiny, teacher_case):
    joints, E, K, kp, teacher = teacher_case
    sc = torch.ones(kp.shape[:2])
    depth = lambda x: transform_points(x[:, :1].double(), E)[:, 0, 2]  # noqa: E731
    res = lift_details(loaded_tiny, kp, sc, E, K, init="teacher", teacher=teacher, t_star=6, smooth=0.0)
    assert (depth(res.joints[0]) - depth(teacher)).abs().max() < 1e-3
    free = lift_details(loaded_tiny, kp, sc, E, K, init="teacher", teacher=teacher, t_star=6, smooth=0.0,
                        teacher_depth=False)
    # Without the anchor the barely trained model's depth wanders off the teacher's.
    assert (depth(free.joints[0]) - depth(teacher)).abs().max() > 1e-2


def test_deterministic_under_a_seed(loaded_tiny, teacher_case):
    joints, E, K, kp, teacher = teacher_case
    sc = torch.ones(kp.shape[:2])
    run = lambda seed: lift(loaded_tiny, kp, sc, E, K, init="teacher", teacher=teacher, t_star=8,  # noqa: E731
                            seed=seed)
    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_t_star_counts_denoising_steps(loaded_tiny, teacher_case, monkeypatch):
    joints, E, K, kp, teacher = teacher_case
    sc = torch.ones(kp.shape[:2])
    seen = []
    model = loaded_tiny.model
    orig = model.guided

    def spy(x_t, t, *a, **kw):
        seen.append(int(t[0]))
        return orig(x_t, t, *a, **kw)

    monkeypatch.setattr(model, "guided", spy)
    lift(loaded_tiny, kp, sc, E, K, init="teacher", teacher=teacher, t_star=5)
    assert seen == [4, 3, 2, 1, 0]  # diffused to step t* - 1, every step after it visited
    seen.clear()
    lift(loaded_tiny, kp, sc, E, K, init="teacher", teacher=teacher, t_star=0)
    assert seen == []  # the teacher, snapped onto the rays: no model call


def test_bad_inputs_get_clear_errors(loaded_tiny, teacher_case):
    joints, E, K, kp, teacher = teacher_case
    sc = torch.ones(kp.shape[:2])
    with pytest.raises(ValueError, match="teacher: init='teacher' needs"):
        lift(loaded_tiny, kp, sc, E, K, init="teacher")
    with pytest.raises(ValueError, match=r"teacher: expected \[40, 22, 3\] or \[41, 22, 3\].*\(30, 22, 3\)"):
        lift(loaded_tiny, kp, sc, E, K, init="teacher", teacher=teacher[:30])
    with pytest.raises(ValueError, match="teacher: expected"):
        lift(loaded_tiny, kp, sc, E, K, init="teacher", teacher=teacher[..., :2])
    bad = teacher.clone()
    bad[2, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="teacher: contains NaN"):
        lift(loaded_tiny, kp, sc, E, K, init="teacher", teacher=bad)
    steps = loaded_tiny.diffusion.steps
    for t_star in (-1, steps + 1):
        with pytest.raises(ValueError, match=rf"t_star: expected 0..{steps}"):
            lift(loaded_tiny, kp, sc, E, K, init="teacher", teacher=teacher, t_star=t_star)
    with pytest.raises(ValueError, match="only used with init='teacher'"):
        lift(loaded_tiny, kp, sc, E, K, teacher=teacher)
    with pytest.raises(ValueError, match="init: expected 'noise' or 'teacher'"):
        lift(loaded_tiny, kp, sc, E, K, init="zeros")


def test_recorded_t_star_is_the_default(tiny_checkpoint, tmp_path):
    import shutil

    from vmdm.inference.loading import LIFT_SETTINGS, load_model

    ck = tmp_path / "checkpoint.pt"
    shutil.copy(tiny_checkpoint, ck)
    lm = load_model(ck, device="cpu")
    assert lm.lift_settings is None and default_t_star(lm) == DEFAULT_T_STAR["2d"]
    (tmp_path / LIFT_SETTINGS).write_text(json.dumps({"t_star": 3}))
    assert default_t_star(load_model(ck, device="cpu")) == 3
    (tmp_path / LIFT_SETTINGS).write_text(json.dumps({"t_star": 3, "smooth": 1.5}))
    from vmdm.inference.lifting import DEFAULT_SMOOTH, default_smooth

    lm = load_model(ck, device="cpu")
    assert default_smooth(lm) == 1.5 and default_smooth(lm, "noise") == DEFAULT_SMOOTH
    for bad in ('{"t_star": 99}', '{"t_star": "3"}', '[3]', 'not json', '{"t_star": 3, "smooth": -1}',
                '{"t_star": 3, "smooth": "wide"}'):
        (tmp_path / LIFT_SETTINGS).write_text(bad)
        with pytest.raises(ValueError, match="lift_settings.json"):
            load_model(ck, device="cpu")


def test_diffusion_starts_from_a_diffused_input():
    from vmdm.model.diffusion import Diffusion

    d = Diffusion(50)
    assert d.timesteps("ddim", None, start=4) == [4, 3, 2, 1, 0]
    assert d.timesteps("ddim", 3, start=10) == [10, 5, 0]
    assert d.timesteps("ddpm", None, start=2) == [2, 1, 0]
    with pytest.raises(ValueError, match="start"):
        d.timesteps("ddim", None, start=50)
    target = torch.randn(2, 6, 3)
    # A perfect denoiser returns its input; starting at step 0 the result is the clean input
    # up to the tiny noise of step 0 that the model removes.
    out = d.sample(lambda x, t: target, target.shape, "cpu", init=target, start=0)
    assert torch.allclose(out, target)
    with pytest.raises(ValueError, match="init: expected shape"):
        d.sample(lambda x, t: target, target.shape, "cpu", init=target[:1], start=0)


def test_teacher_depth_step_keeps_projections_and_bounds_the_rescale():
    """The teacher-depth step scales a body about the camera centre to the teacher's root depth
    (projections unchanged), but never by more than MAX_DEPTH_RATIO either way: a prediction
    whose root nears the camera plane would otherwise be blown up and fed to the next step."""
    from vmdm.inference.lifting import MAX_DEPTH_RATIO, _scale_to_depth

    g = torch.Generator().manual_seed(0)
    cam = torch.cat((torch.eye(3), torch.tensor([[0.1], [-0.2], [0.0]])), dim=1)[None]  # [1, 3, 4]
    body = torch.randn(1, 5, 22, 3, generator=g) * 0.3
    body[..., 2] += 3.0 - body[:, :, :1, 2]  # root at depth 3 in every frame

    def proj(x):
        c = x @ cam[0, :, :3].T + cam[0, :, 3]
        return c[..., :2] / c[..., 2:], c[:, :, 0, 2]

    uv, z = proj(body)
    scaled = _scale_to_depth(body, cam, torch.full((5,), 3.3))
    uv2, z2 = proj(scaled)
    assert torch.allclose(uv2, uv, atol=1e-5) and torch.allclose(z2, torch.full((1, 5), 3.3), atol=1e-5)
    far = _scale_to_depth(body, cam, torch.full((5,), 300.0))
    assert torch.allclose(proj(far)[1], z * MAX_DEPTH_RATIO, atol=1e-4)
    near = body.clone()
    near[..., 2] -= 2.999  # the root almost on the camera plane
    out = _scale_to_depth(near, cam, torch.full((5,), 3.0))
    centre = -cam[0, :, 3]  # R = I
    ratio = (out - centre).norm(dim=-1) / (near - centre).norm(dim=-1)
    assert torch.allclose(ratio, torch.full_like(ratio, MAX_DEPTH_RATIO), atol=1e-4)
