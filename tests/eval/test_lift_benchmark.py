"""The lifting benchmark (``python -m vmdm.eval --lift-benchmark``) on a tiny model: every
lifter scored on the same cases, skipped sets explained, ``--tune`` recorded beside the
checkpoint and read back. Accuracy is not tested here (the model is barely trained); the
numbers are in ``results/``."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vmdm.eval.lift_benchmark import corpus_cases, main

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("mpjpe_mm", "canonical_mpjpe_mm", "root_relative_mpjpe_mm", "pa_mpjpe_mm", "root_error_mm",
           "root_depth_error_mm", "body_size", "accel_mm", "reproj_px", "seconds_per_clip")


@pytest.fixture(scope="module")
def humanml_folder(tmp_path_factory):
    """A HumanML3D-format folder of three synthetic clips, two of them in the test split."""
    from vmdm.data.build.synth import generate_clip

    root = tmp_path_factory.mktemp("humanml")
    (root / "new_joints").mkdir()
    rng = np.random.default_rng(4)
    for name, family, frames in (("w0", "walk", 50), ("r0", "run", 30), ("j0", "jump", 40)):
        joints, _, _ = generate_clip(family, rng)
        np.save(root / "new_joints" / f"{name}.npy", joints[:frames].astype(np.float32))
    (root / "test.txt").write_text("w0\nr0\n")
    (root / "train.txt").write_text("j0\n")
    return root


def test_corpus_cases_cut_the_split_into_filmed_windows(humanml_folder):
    cases = corpus_cases(humanml_folder, "test", window=24, seed=0)
    # 50 frames -> windows at 0 and 24; 30 frames -> one window at 0.
    assert [c.gt.shape for c in cases] == [(24, 22, 3)] * 3
    for c in cases:
        assert c.keypoints.shape == (24, 22, 2) and c.scores.shape == (24, 22) and c.teacher is None
        assert np.isfinite(c.keypoints).all()
    again = corpus_cases(humanml_folder, "test", window=24, seed=0)
    assert all(np.array_equal(a.keypoints, b.keypoints) for a, b in zip(cases, again))
    other = corpus_cases(humanml_folder, "test", window=24, seed=1)
    assert not np.array_equal(cases[0].camera, other[0].camera)
    assert len(corpus_cases(humanml_folder, "test", window=24, max_windows_per_clip=1)) == 2
    with pytest.raises(FileNotFoundError, match="val"):
        corpus_cases(humanml_folder, "val")


def test_benchmark_scores_every_lifter_and_records_the_tuned_t_star(tiny_checkpoint, humanml_folder, tmp_path):
    from vmdm.inference.loading import LIFT_SETTINGS, load_model

    # A copy: lift_settings.json written beside it must not change the shared fixture.
    ck = tmp_path / "model" / "checkpoint.pt"
    ck.parent.mkdir()
    shutil.copy(tiny_checkpoint, ck)
    out = tmp_path / "bench"
    assert main(["--checkpoint", str(ck), "--name", "tiny", "--out", str(out), "--sets", "test,cmu,bandai",
                 "--cmu-dir", str(tmp_path / "no_cmu_here"), "--bandai", str(humanml_folder), "--limit", "2",
                 "--window", "24", "--tune", "--tune-values", "0,2", "--tune-smooths", "0,1", "--tune-limit", "2",
                 "--lift-steps", "3", "--noise-ramps", "0,12", "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["window"] == 24
    tuned = res["tuning"]["tiny"]
    assert tuned["t_star"] in (0, 2) and set(tuned["sweep"]) == {"0", "2"}
    best = min(tuned["sweep"].values(), key=lambda r: r["mpjpe_mm"])
    assert tuned["sweep"][str(tuned["t_star"])] == best
    assert tuned["teacher"]["n_cases"] == 2 and np.isfinite(tuned["teacher"]["mpjpe_mm"])
    # The smoothing is chosen at the chosen t*: the sweep's default-smoothing entry is the t* sweep's.
    assert tuned["smooth"] in (0.0, 1.0) and set(tuned["smooth_sweep"]) == {"0", "1"}
    assert tuned["smooth_sweep"][f"{tuned['smooth']:g}"] == min(tuned["smooth_sweep"].values(),
                                                                 key=lambda r: r["mpjpe_mm"])
    assert tuned["smooth_sweep"]["1"]["mpjpe_mm"] == pytest.approx(tuned["sweep"][str(tuned["t_star"])]["mpjpe_mm"])
    # Recorded beside the checkpoint, read back by load_model, used by the rows below.
    assert json.loads((ck.parent / LIFT_SETTINGS).read_text())["t_star"] == tuned["t_star"]
    assert load_model(ck).lift_settings["t_star"] == tuned["t_star"]
    from vmdm.inference.lifting import default_smooth

    assert default_smooth(load_model(ck)) == tuned["smooth"] and default_smooth(load_model(ck), "noise") == 3.0
    assert res["checkpoints"]["tiny"]["t_star"] == tuned["t_star"]

    assert "skipped" in res["sets"]["cmu"] and "no_cmu_here" in res["sets"]["cmu"]["skipped"]
    for set_name in ("test", "bandai"):
        rows = res["sets"][set_name]
        assert list(rows) == ["teacher", f"tiny (teacher, t*={tuned['t_star']})", "tiny (noise, ramp=0)",
                              "tiny (noise, ramp=12)"]
        # The ramp changes the lift from noise (the same seed, cameras and keypoints otherwise).
        assert rows["tiny (noise, ramp=0)"]["mpjpe_mm"] != rows["tiny (noise, ramp=12)"]["mpjpe_mm"]
        for row in rows.values():
            assert row["n_cases"] == 2 and row["n_frames"] == 48
            for k in METRICS:
                assert np.isfinite(row[k]), (set_name, k)
    md = (out / "results.md").read_text()
    assert "t* chosen on the val split" in md and "| tiny | 2 |" in md and "Correction smoothing chosen" in md
    assert "Bandai-Namco test split" in md and "Skipped:" in md and "| tiny (noise, ramp=12) |" in md


def test_benchmark_arguments_are_checked(tiny_checkpoint, tmp_path, capsys):
    for argv, words in (([], ("--checkpoint",)), (["--checkpoint", str(tiny_checkpoint), "--sets", "test,mars"],
                                                  ("--sets", "mars")),
                        (["--checkpoint", str(tiny_checkpoint), "--name", "a", "--name", "b"], ("--name",)),
                        (["--checkpoint", str(tiny_checkpoint), "--tune-values", "2,-1"], ("--tune-values",)),
                        (["--checkpoint", str(tiny_checkpoint), "--noise-ramps", "-3"], ("--noise-ramps",)),
                        (["--checkpoint", str(tiny_checkpoint), "--smooths", "1,-2"], ("--smooths",))):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--out", str(tmp_path / "o")])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words), (argv, err)
    assert not (tmp_path / "o").exists()


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "vmdm.eval", "--lift-benchmark", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--tune-values" in r.stdout


def test_batched_prior_lifter_scores_like_case_by_case(tiny_checkpoint, humanml_folder, capsys):
    from vmdm.eval.lifting_eval import prior_lifter, score_lifters, with_teacher
    from vmdm.inference.loading import load_model

    lm = load_model(tiny_checkpoint, device="cpu")
    cases = with_teacher(corpus_cases(humanml_folder, "test", window=24, seed=0), lambda case, i: case.gt + 0.02)
    rows = score_lifters(cases, {
        "one": prior_lifter(lm, init="teacher", t_star=0),
        "batch": prior_lifter(lm, init="teacher", t_star=0, batch_size=4),
        "noise batch": prior_lifter(lm, init="noise", sample_steps=3, batch_size=4),
    })
    assert not hasattr(prior_lifter(lm), "lift_cases")
    # t* = 0 draws no noise: batching changes nothing.
    for k in ("mpjpe_mm", "pa_mpjpe_mm", "reproj_px"):
        assert rows["batch"][k] == pytest.approx(rows["one"][k], abs=1e-3), k
    assert rows["noise batch"]["n_cases"] == 3 and np.isfinite(rows["noise batch"]["mpjpe_mm"])
    with pytest.raises(ValueError, match="batch_size"):
        prior_lifter(lm, batch_size=0)
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tiny_checkpoint), "--out", "x", "--lift-batch", "0"])
    assert "--lift-batch: expected >= 1" in capsys.readouterr().err


def test_val_split_and_one_row_per_smoothing(tiny_checkpoint, tmp_path):
    """``--sets val`` lifts the 2D val split (what the lift's settings are chosen on);
    ``--smooths`` gives a teacher-initialised row per Gaussian over the ray corrections."""
    out = tmp_path / "bench"
    assert main(["--checkpoint", str(tiny_checkpoint), "--name", "tiny", "--out", str(out), "--sets", "val",
                 "--inits", "teacher", "--t-star", "2", "--smooths", "0,3", "--limit", "2", "--window", "24",
                 "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    rows = res["sets"]["val"]
    assert list(rows) == ["teacher", "tiny (teacher, t*=2, smooth=0)", "tiny (teacher, t*=2, smooth=3)"]
    assert rows["teacher"]["n_cases"] == 2
    sharp, smooth = rows["tiny (teacher, t*=2, smooth=0)"], rows["tiny (teacher, t*=2, smooth=3)"]
    assert np.isfinite(sharp["mpjpe_mm"]) and np.isfinite(smooth["mpjpe_mm"])
    # Following every keypoint exactly reprojects closer than smoothing the corrections.
    assert sharp["reproj_px"] < smooth["reproj_px"]
    assert "2D-only val split" in (out / "results.md").read_text()
