import numpy as np
import pytest
import torch

from vmdm.motion.cameras import CameraConfig, project, sample_camera, transform_points
from vmdm.data.build.teacher import (
    LearnedTeacher,
    LifterConfig,
    LifterTrainConfig,
    NoiseTeacher,
    NoiseTeacherConfig,
    OracleTeacher,
    Teacher,
    TemporalLifter,
    evaluate_lifter,
    load_lifter,
    make_views,
    save_lifter,
    train_lifter,
)
from vmdm.data.build.synth import generate_clip

PLANS = ("walk", "wave", "squat", "jog", "clap", "kick", "bow", "sidestep")


def _clips(n, seed=0):
    rng = np.random.default_rng(seed)
    return [generate_clip(PLANS[i % len(PLANS)], rng)[0] for i in range(n)]


def _mpjpe(a, b):
    return float((a - b).norm(dim=-1).mean())


def test_lifter_shapes_and_root_on_its_ray():
    torch.manual_seed(0)
    model = TemporalLifter(LifterConfig(channels=32)).eval()
    kp = 0.2 * torch.randn(2, 30, 22, 2)
    sc = torch.rand(2, 30, 22)
    rel, log_depth, root_uv = model(kp, sc)
    assert rel.shape == (2, 30, 22, 3) and log_depth.shape == (2, 30) and root_uv.shape == (2, 30, 2)
    assert torch.allclose(rel[:, :, 0], torch.zeros(2, 30, 3))
    X = model.lift_camera(kp, sc)
    assert torch.allclose(X[:, :, 0, :2] / X[:, :, 0, 2:], root_uv, atol=1e-5)
    assert torch.allclose(X[:, :, 0, 2], log_depth.exp(), atol=1e-5)


class _OracleLifter(TemporalLifter):
    """Returns the true camera-frame joints: isolates LearnedTeacher's frame handling."""

    def __init__(self, truth):
        super().__init__(LifterConfig(channels=8))
        self.truth = truth

    def lift_camera(self, keypoints, scores):
        return self.truth[None]


def test_learned_teacher_returns_world_joints_for_static_and_per_frame_cameras():
    j = torch.from_numpy(_clips(1)[0]).float()
    for per_frame in (False, True):
        E, K = sample_camera(j, CameraConfig(per_frame=per_frame), generator=torch.Generator().manual_seed(2))
        uv_px, _ = project(j, E, K)
        teacher = LearnedTeacher(_OracleLifter(transform_points(j, E)))
        world = teacher.lift(uv_px, torch.ones(j.shape[:2]), E, K)
        assert world.shape == j.shape
        assert _mpjpe(world, j) < 1e-4
    assert isinstance(teacher, Teacher)
    with pytest.raises(ValueError, match="camera"):
        teacher.lift(uv_px, torch.ones(j.shape[:2]), torch.zeros(3, 3), K)
    with pytest.raises(ValueError, match="scores"):
        teacher.lift(uv_px, torch.ones(3), E, K)


def test_noise_teacher_keeps_rays_and_errs_in_depth():
    j = torch.from_numpy(_clips(1, seed=1)[0]).float()
    E, K = sample_camera(j, generator=torch.Generator().manual_seed(0))
    uv, _ = project(j, E, K)
    scores = torch.ones(j.shape[:2])
    pure = NoiseTeacher(NoiseTeacherConfig(jitter_sigma=0.0, bias_sigma=0.0), seed=0)
    lift = pure.lift(uv, scores, E, K, reference=j)
    # Only depth along the camera rays changes: the projection is the observation.
    uv_lift, depth_lift = project(lift, E, K)
    assert (uv_lift - uv).norm(dim=-1).max() < 1e-2  # pixels
    _, depth = project(j, E, K)
    assert (depth_lift - depth).abs().mean() > 0.02
    full = NoiseTeacher(seed=0).lift(uv, scores, E, K, reference=j)
    # Root-relative error of a decent monocular lifter; the absolute error is larger
    # (the whole-clip depth scale is uncertain).
    rel_err = _mpjpe(full - full[:, :1], j - j[:, :1])
    assert 0.02 < rel_err < 0.3
    assert rel_err < _mpjpe(full, j) < 2.0
    again = NoiseTeacher(seed=0).lift(uv, scores, E, K, reference=j)
    assert torch.equal(full, again)
    assert not torch.equal(full, NoiseTeacher(seed=1).lift(uv, scores, E, K, reference=j))
    assert isinstance(pure, Teacher)
    with pytest.raises(ValueError, match="reference"):
        pure.lift(uv, scores, E, K)


def test_oracle_teacher_returns_the_true_motion():
    j = torch.from_numpy(_clips(1, seed=2)[0]).float()
    E, K = sample_camera(j, generator=torch.Generator().manual_seed(0))
    uv, _ = project(j, E, K)
    oracle = OracleTeacher()
    assert isinstance(oracle, Teacher)
    lift = oracle.lift(uv, torch.ones(j.shape[:2]), E, K, reference=j)
    assert torch.equal(lift, j) and lift.data_ptr() != j.data_ptr()
    with pytest.raises(ValueError, match=r"OracleTeacher.lift: needs reference="):
        oracle.lift(uv, torch.ones(j.shape[:2]), E, K)
    with pytest.raises(ValueError, match=r"reference: expected \[%d, 22, 3\]" % j.shape[0]):
        oracle.lift(uv, torch.ones(j.shape[:2]), E, K, reference=j[:-1])


def test_training_reduces_error_and_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    train, val = _clips(24, seed=3), _clips(6, seed=4)
    cfg = LifterTrainConfig(steps=120, time_budget_s=None, batch_size=16, window=32, views_per_clip=2, lr=3e-3)
    mcfg = LifterConfig(channels=48, dilations=(1, 2, 4))
    views = make_views(val, 1, seed=11)
    untrained = evaluate_lifter(TemporalLifter(mcfg), views)["mpjpe_mm"]
    model, metrics = train_lifter(train, val, cfg, mcfg, progress=False)
    assert metrics["steps"] == 120
    trained = evaluate_lifter(model, views)["mpjpe_mm"]
    assert trained < 0.75 * untrained, (trained, untrained)

    path = save_lifter(tmp_path / "ckpt" / "lifter.pt", model, metrics, extra={"lifter_families": ["walk"]})
    assert [p.name for p in path.parent.iterdir()] == ["lifter.pt"]  # no temp file left behind
    loaded = load_lifter(path)
    assert loaded.extra["lifter_families"] == ["walk"]
    kp, sc = views.keypoints[0][None], views.scores[0][None]
    with torch.no_grad():
        assert torch.allclose(loaded.lift_camera(kp, sc), model.lift_camera(kp, sc))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_lifter(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a vmdm lifter"):
        load_lifter(tmp_path / "bad.pt")


def test_time_budget_stops_training():
    cfg = LifterTrainConfig(steps=10_000, time_budget_s=1.0, batch_size=4, window=16, views_per_clip=1)
    _, metrics = train_lifter(_clips(4), (), cfg, LifterConfig(channels=16, dilations=(1,)), progress=False)
    assert metrics["steps"] < 10_000 and metrics["train_s"] < 30


def test_train_lifter_rejects_empty_input():
    with pytest.raises(ValueError, match="train_clips"):
        train_lifter([], progress=False)


def test_train_lifter_cli_uses_held_out_families(tmp_path, capsys):
    import json

    from vmdm.data.build import train_teacher as cli
    from vmdm.data.build.build_2d import corpus_families
    from vmdm.data.build.synth import generate_corpus

    corpus = generate_corpus(tmp_path / "corpus", num_clips=40, seed=5, workers=1, progress=False)
    out = tmp_path / "lifter.pt"
    assert cli.main(["--corpus", str(corpus), "--out", str(out), "--steps", "3", "--batch-size", "4",
                     "--channels", "16", "--threads", "1", "--no-progress"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["steps"] == 3 and metrics["threads"] == 1 and {"val", "main"} <= set(metrics)
    assert metrics["main"]["mpjpe_mm"] > 0 and metrics["val"]["mpjpe_mm"] > 0
    fams = load_lifter(out).extra["lifter_families"]
    all_fams = {f for fs in corpus_families(corpus).values() for f in fs}
    assert fams == metrics["lifter_families"] and 0 < len(fams) < len(all_fams)


def test_mirror_augmentation_keeps_keypoints_and_targets_consistent():
    from vmdm.motion.cameras import DetectorNoiseConfig
    from vmdm.data.build.teacher import _batch, _flip_permutation
    from vmdm.motion.skeleton import SMPL22

    clean = DetectorNoiseConfig(sigma_px=0.0, outlier_prob=0.0, drop_prob=0.0)
    views = make_views(_clips(3), 2, noise=clean, seed=0)
    flip = _flip_permutation(SMPL22)
    assert sorted(flip) == list(range(22)) and flip[1] == 2 and flip[0] == 0
    kp, sc, tgt, mask = _batch(views, list(range(6)) * 4, 32, torch.Generator().manual_seed(0), flip)
    torch.testing.assert_close(tgt[..., :2] / tgt[..., 2:], kp, atol=1e-5, rtol=0)
    # The same windows without mirroring differ: some of them were mirrored.
    plain, *_ = _batch(views, list(range(6)) * 4, 32, torch.Generator().manual_seed(0), None)
    assert not torch.allclose(plain, kp)


@pytest.mark.parametrize("kernel,dilation,mode", [(1, 1, "zeros"), (3, 1, "zeros"), (3, 4, "replicate")])
def test_lifter_convolution_as_matrix_product_is_conv1d(kernel, dilation, mode):
    from vmdm.data.build.teacher import _conv1d

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 5, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                           padding_mode=mode).double()
    x = torch.randn(2, 6, 17, dtype=torch.float64)
    torch.testing.assert_close(_conv1d(conv, x), conv(x), rtol=0, atol=1e-12)
