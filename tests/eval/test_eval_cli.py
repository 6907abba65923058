"""``python -m vmdm.eval`` end to end on a tiny model, and the lifting cases it scores."""

import json
import math

import numpy as np
import pytest

from vmdm.data.formats.cmu import default_cmu_dir, load_cmu_clip
from vmdm.eval.lifting_eval import cmu_cases, score_lifters, stored_teacher, split_cases
from vmdm.eval.run import _check_disjoint, load_test_set, main
from vmdm.inference.lifting import DEFAULT_T_STAR


def test_eval_cli_end_to_end(tiny_checkpoint, tiny_evaluator, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["--checkpoint", str(tiny_checkpoint), "--evaluator", str(tiny_evaluator), "--quick",
               "--repeats", "2", "--mm-prompts", "3", "--mm-generations", "2", "--sample-steps", "2",
               "--lifting-cases", "2", "--no-cmu", "--out", str(out), "--no-progress", "--threads", "2"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    assert "| Model |" in md and "Lifting" in md
    gen = res["generation"]
    assert res["split"] == "test" and gen["n_test"] >= 10
    # Matched lengths: generated and real windows at most the 40-frame training windows.
    assert gen["max_frames"] == 40 and "at most 40 frames" in md
    for who in ("model", "real"):
        for k in ("fid", "top1", "top2", "top3", "mm_dist", "diversity", "foot_skating", "jitter"):
            assert gen[who][k]["n"] == 2 and math.isfinite(gen[who][k]["mean"]), (who, k)
        assert 0 <= gen[who]["top1"]["mean"] <= gen[who]["top2"]["mean"] <= gen[who]["top3"]["mean"] <= 1
    assert gen["model"]["fid"]["mean"] >= 0 and math.isfinite(gen["model"]["multimodality"]["mean"])
    # Real motions re-cropped are far closer to the reference than a 20-step model's samples.
    assert gen["real"]["fid"]["mean"] < gen["model"]["fid"]["mean"]
    lt = res["lifting_test"]
    assert set(lt) == {"teacher", "prior"}
    for row in lt.values():
        assert row["n_cases"] == 2 and row["mpjpe_mm"] > 0 and row["pa_mpjpe_mm"] <= row["mpjpe_mm"]
        assert row["n_frames"] <= 2 * 40
    # The prior lifts the way vmdm.sample --lift does: from the teacher's lift, at its t*.
    t_star = DEFAULT_T_STAR["2d"]
    assert lt["prior"]["init"] == "teacher" and lt["prior"]["t_star"] == t_star
    assert f"| prior (from teacher, t*={t_star}) |" in md
    assert "results.json" in capsys.readouterr().out


def test_evaluator_overlapping_the_test_split_is_refused(quick_data):
    root = quick_data.dataset_2d
    test = load_test_set(root)
    meta = {"train_split": {"split": "train", "data_root": str(root), "ids": test.ids[:1]}}
    with pytest.raises(ValueError, match="overlap"):
        _check_disjoint(meta, test, root)
    with pytest.raises(ValueError, match="split"):
        _check_disjoint({"train_split": {"split": "test"}}, test, root)


def test_split_cases_frames_agree(quick_data):
    cases = split_cases(quick_data.dataset_2d, limit=3)
    assert len(cases) == 3
    gt_row = score_lifters(cases, {"gt": lambda c, i: c.gt})["gt"]
    assert gt_row["mpjpe_mm"] == 0.0 and gt_row["accel_mm"] == 0.0
    # Ground truth reprojects onto the noisy detections within detector noise (3 px sigma
    # plus rare outliers); a frame mix-up between keypoints, camera and joints would not.
    assert gt_row["reproj_px"] < 15
    teacher = score_lifters(cases, {"teacher": stored_teacher})["teacher"]
    assert teacher["mpjpe_mm"] > 0 and teacher["pa_mpjpe_mm"] <= teacher["mpjpe_mm"]


@pytest.mark.skipif(default_cmu_dir() is None, reason="cmu_humanml data not present")
def test_cmu_cases_project_real_motion():
    root = default_cmu_dir()
    clip = load_cmu_clip(root / "asfamc/02/02.asf.gz", root / "asfamc/02/02_03.amc.gz")
    from vmdm.data.formats.cmu import CmuClip

    cases = cmu_cases(clips=[CmuClip("02_03", clip)], window=16, views=2, seed=0)
    assert len(cases) == 2 * (len(clip) // 16)
    assert cases[0].gt.shape == (16, 22, 3)
    np.testing.assert_allclose(cases[0].gt, clip[:16], atol=1e-6)
    row = score_lifters(cases, {"gt": lambda c, i: c.gt})["gt"]
    assert row["mpjpe_mm"] == 0.0 and row["reproj_px"] < 15
