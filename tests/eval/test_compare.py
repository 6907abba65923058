"""``vmdm.experiments.compare``: trains the variants with one budget, evaluates all with one
evaluator, writes one table; an interrupted comparison reuses finished runs."""

import json
import math
import shutil

import pytest

from vmdm.experiments.compare import FULL, QUICK, VARIANTS, Budget, format_table, main, run_comparison

TINY = Budget("test", True, dict(model="tiny", steps=3, batch_size=4, max_frames=40, warmup=1, text_encoder="bow",
                                 ckpt_every=3, log_every=3),
              dict(steps=2, time_budget=None, batch_size=8), True)
SMALL_EVAL = dict(repeats=2, mm_prompts=2, mm_generations=2, sample_steps=2, lift_steps=2, lifting_cases=1,
                  diversity_pairs=20)


def test_comparison_table_and_reuse(quick_data, cache_dir, tiny_evaluator, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(tiny_evaluator, work / "evaluator.pt")
    names = ["mdm_3d", "mdm_teacher", "videomdm"]
    out = tmp_path / "table"
    s = run_comparison(TINY, work=work, out=out, cache_dir=str(cache_dir), variants=names, progress=False, cmu=False,
                       eval_overrides=SMALL_EVAL)
    assert list(s["rows"]) == names
    for name in names:
        row = s["rows"][name]
        assert row["label"] == VARIANTS[name][0] and row["train_s"] > 0
        fid = row["results"]["generation"]["model"]["fid"]
        assert fid["n"] == 2 and math.isfinite(fid["mean"]) and fid["mean"] >= 0
        # FID on decode-then-encode of the generations (positions only) is reported beside it.
        pos = row["results"]["generation"]["model"]["fid_positions"]
        assert pos["n"] == 2 and math.isfinite(pos["mean"]) and pos["mean"] >= 0
    r = s["ratios"]
    fids = {n: s["rows"][n]["results"]["generation"]["model"]["fid"]["mean"] for n in names}
    assert r["fid_c_over_a"] == pytest.approx(fids["videomdm"] / fids["mdm_3d"])
    assert r["fid_c_over_b"] == pytest.approx(fids["videomdm"] / fids["mdm_teacher"])
    md = out.with_suffix(".md").read_text()
    assert md == format_table(json.loads(out.with_suffix(".json").read_text()))
    assert md.count("\n| (") == 3 and "Real test motions" in md and f"{r['fid_c_over_a']:.2f}" in md
    # Every model was trained with the budget's settings and its own supervision.
    from vmdm.training.checkpoint import load_checkpoint

    cfgs = {n: load_checkpoint(work / n / "checkpoint.pt")["config"] for n in names}
    assert [cfgs[n]["supervision"] for n in names] == ["3d", "teacher", "2d"]
    assert all(c["steps"] == 3 and c["model"] == "tiny" for c in cfgs.values())

    # A second run finds the finished checkpoints and does not train again.
    import vmdm.training.trainer

    def no_training(cfg):
        raise AssertionError(f"retrained {cfg.out}")

    monkeypatch.setattr(vmdm.training.trainer, "train", no_training)
    again = run_comparison(TINY, work=work, out=None, cache_dir=str(cache_dir), variants=names[:1], progress=False,
                           cmu=False, eval_overrides=SMALL_EVAL)
    assert math.isnan(again["rows"]["mdm_3d"]["train_s"])


def test_budgets_and_bad_variants(tmp_path):
    assert not QUICK.quick_data and QUICK.train["model"] == "tiny" and QUICK.eval_quick
    assert FULL.train["recipe"] == "paper" and not FULL.eval_quick
    with pytest.raises(ValueError, match="unknown variants"):
        run_comparison(TINY, work=tmp_path, out=None, variants=["mdm_4d"], progress=False)
    # Custom names become folder names; "x_seed1" would be variant x's seed-1 run.
    for bad in ("x_seed1", "../x", "", "a b"):
        with pytest.raises(ValueError, match="cannot name run folders"):
            run_comparison(TINY, work=tmp_path, out=None, variants={bad: ("label", {})}, progress=False)
    with pytest.raises(SystemExit):
        main(["--quick", "--full"])
    from vmdm.cli import build_parser, from_args
    from vmdm.experiments.compare import CompareConfig

    cfg = from_args(CompareConfig, build_parser(CompareConfig, "c", "").parse_args(
        ["--full", "--seeds", "1,2", "--variants", "videomdm,mdm_3d", "--out", "x/t.md"]))
    assert cfg.budget() is FULL and cfg.seeds == [1, 2] and cfg.variants == ["videomdm", "mdm_3d"]
    assert str(cfg.out_stem()) == "x/t" and CompareConfig().budget() is QUICK


def test_reuse_compares_every_resolved_option_of_the_mode():
    """A finished run is reused only if every option that changes what its supervision mode
    learns matches, defaults included (a changed default must retrain, not reuse)."""
    import dataclasses

    from vmdm.experiments.compare import _training_differences
    from vmdm.training.trainer import TrainConfig

    from vmdm.cli import to_flat

    def saved(**kw):  # a saved config in the flat layout of checkpoint format 2
        return to_flat(TrainConfig.of(**{**QUICK.train, **kw}, out="elsewhere").resolved())

    video = TrainConfig.of(**QUICK.train, supervision="2d", out="x", progress=False)
    assert _training_differences(saved(supervision="2d"), video) == {}
    # The nested layout of format 3 reads the same.
    nested = dataclasses.asdict(TrainConfig.of(**QUICK.train, supervision="2d", out="elsewhere").resolved())
    assert _training_differences(nested, video) == {}
    nested["loss"]["lambda_align"] += 1
    assert set(_training_differences(nested, video)) == {"lambda_align"}
    old_default = {**saved(supervision="2d"), "lambda_align": video.loss.lambda_align + 1}
    assert _training_differences(old_default, video) == {"lambda_align": (video.loss.lambda_align + 1,
                                                                          video.loss.lambda_align)}
    assert "lr" in _training_differences(saved(supervision="2d", lr=1e-3), video)
    mdm = TrainConfig.of(**QUICK.train, supervision="3d", out="x")
    # 2D-loss options do not change a 3D-supervised run.
    assert _training_differences({**saved(supervision="3d"), "lambda_align": 99.0, "align_smooth": 9.0}, mdm) == {}
    # ... but they do change a 2D-supervised one (a run from before the option existed is retrained).
    assert "align_smooth" in _training_differences({k: v for k, v in saved(supervision="2d").items()
                                                    if k != "align_smooth"}, video)
    assert "supervision" in _training_differences(saved(supervision="2d"), mdm)


def test_parallel_variants_match_one_at_a_time(quick_data, cache_dir, tiny_evaluator, tmp_path):
    """``jobs=2`` trains and evaluates the variants in two worker processes: the same models
    and the same table rows, in the order asked for."""
    names = ["videomdm", "mdm_3d"]
    rows = {}
    for jobs in (1, 2):
        work = tmp_path / f"work{jobs}"
        work.mkdir()
        shutil.copy(tiny_evaluator, work / "evaluator.pt")
        s = run_comparison(TINY, work=work, out=tmp_path / f"t{jobs}", cache_dir=str(cache_dir), variants=names,
                           progress=False, cmu=False, eval_overrides=SMALL_EVAL, threads=1, jobs=jobs)
        assert list(s["rows"]) == names and s["timings"]["jobs"] == jobs
        assert s["n_test"] > 0
        # The workers' CPU time is counted in the total (each figure rounded to 0.1 s).
        parts = [r[k] for r in s["rows"].values() for k in ("train_cpu_s", "eval_cpu_s")]
        assert s["timings"]["total_cpu_s"] >= sum(parts) - 0.05 * (len(parts) + 1)
        rows[jobs] = s["rows"]
    assert "2 runs at a time" in (tmp_path / "t2.md").read_text()
    import torch

    from vmdm.training.checkpoint import load_checkpoint

    for n in names:
        a, b = (load_checkpoint(tmp_path / f"work{j}" / n / "checkpoint.pt") for j in (1, 2))
        assert a["config"]["supervision"] == b["config"]["supervision"]
        for k, v in a["model"].items():
            torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5, msg=f"{n}: {k}")
        fa, fb = (rows[j][n]["results"]["generation"]["model"]["fid"]["mean"] for j in (1, 2))
        assert fb == pytest.approx(fa, rel=1e-3)
    # With no evaluator yet, a worker trains it beside the models (here reused from work2)
    # and the runs are evaluated once it is ready: the same evaluator as a sequential run's.
    ev = {}
    for jobs in (1, 2):
        work = tmp_path / f"fresh{jobs}"
        shutil.copytree(tmp_path / "work2", work, ignore=shutil.ignore_patterns("evaluator.pt"))
        s = run_comparison(TINY, work=work, out=None, cache_dir=str(cache_dir), variants=names, progress=False,
                           cmu=False, eval_overrides=SMALL_EVAL, threads=1, jobs=jobs)
        assert (work / "evaluator.pt").is_file() and s["timings"]["evaluator_s"] > 0
        assert s["timings"]["jobs"] == jobs and all(math.isnan(r["train_s"]) for r in s["rows"].values())
        ev[jobs] = (torch.load(work / "evaluator.pt", weights_only=True), s["rows"])
    for k, v in ev[1][0]["state_dict"].items():
        torch.testing.assert_close(ev[2][0]["state_dict"][k], v, msg=f"evaluator: {k}")
    for n in names:
        fa, fb = (ev[j][1][n]["results"]["generation"]["model"]["fid"]["mean"] for j in (1, 2))
        assert fb == pytest.approx(fa, rel=1e-3)
    with pytest.raises(ValueError, match="jobs"):
        run_comparison(TINY, work=tmp_path, out=None, variants=names, progress=False, jobs=0)
    # A failing variant stops the run with its own error (the finished one is reused).
    bad = {"videomdm": VARIANTS["videomdm"], "bad": ("bad", dict(supervision="2d", max_frames=42))}
    with pytest.raises(ValueError, match="max_frames"):
        run_comparison(TINY, work=tmp_path / "work2", out=None, cache_dir=str(cache_dir), variants=bad,
                       progress=False, cmu=False, eval_overrides=SMALL_EVAL, threads=1, jobs=2)


def test_several_training_seeds(quick_data, cache_dir, tiny_evaluator, tmp_path):
    """``seeds`` trains every variant once per seed (seed 0 in the variant's own folder, so
    older runs stay reusable); the row is the mean over seeds with a t-interval, and each
    seed's run is kept."""
    from scipy.stats import t as student_t

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(tiny_evaluator, work / "evaluator.pt")
    names = ["mdm_3d", "videomdm"]
    s = run_comparison(TINY, work=work, out=tmp_path / "t", cache_dir=str(cache_dir), variants=names, progress=False,
                       cmu=False, eval_overrides=SMALL_EVAL, seeds=[0, 1])
    assert s["seeds"] == [0, 1] and list(s["rows"]) == names
    for n in names:
        assert (work / n / "checkpoint.pt").is_file() and (work / f"{n}_seed1" / "checkpoint.pt").is_file()
        row = s["rows"][n]
        assert row["seeds"] == [0, 1] and set(row["runs"]) == {"0", "1"}
        per_seed = [row["runs"][k]["results"]["generation"]["model"]["fid"]["mean"] for k in ("0", "1")]
        assert per_seed[0] != per_seed[1]  # two different models
        fid = row["results"]["generation"]["model"]["fid"]
        assert fid["n"] == 2 and fid["mean"] == pytest.approx(sum(per_seed) / 2)
        assert fid["ci95"] == pytest.approx(student_t.ppf(0.975, 1) * abs(per_seed[0] - per_seed[1]) / 2)
        assert row["train_s"] == pytest.approx(sum(row["runs"][k]["train_s"] for k in ("0", "1")))
        lift = [row["runs"][k]["results"]["lifting_test"]["prior"]["mpjpe_mm"] for k in ("0", "1")]
        assert row["results"]["lifting_test"]["prior"]["mpjpe_mm"] == pytest.approx(sum(lift) / 2)
        from vmdm.training.checkpoint import load_checkpoint

        assert load_checkpoint(work / f"{n}_seed1" / "checkpoint.pt")["config"]["seed"] == 1
    r = s["ratios"]
    assert set(r["per_seed"]) == {"0", "1"}
    assert r["fid_c_over_a"] == pytest.approx(s["rows"]["videomdm"]["results"]["generation"]["model"]["fid"]["mean"]
                                              / s["rows"]["mdm_3d"]["results"]["generation"]["model"]["fid"]["mean"])
    md = (tmp_path / "t.md").read_text()
    assert "training seeds 0, 1" in md and "Student-t" in md and "per seed: 0:" in md
    # Several seeds in worker processes: each (variant, seed) run is its own job, the rows
    # are those of the sequential run (the models here are reused, the evaluations redone).
    par = run_comparison(TINY, work=work, out=None, cache_dir=str(cache_dir), variants=names, progress=False,
                         cmu=False, eval_overrides=SMALL_EVAL, seeds=[0, 1], jobs=2)
    assert par["timings"]["jobs"] == 2 and list(par["rows"]) == names
    for n in names:
        for k in ("0", "1"):
            a, b = (x["rows"][n]["runs"][k] for x in (s, par))
            assert b["checkpoint"] == a["checkpoint"]
            assert (b["results"]["generation"]["model"]["fid"]["mean"]
                    == pytest.approx(a["results"]["generation"]["model"]["fid"]["mean"], rel=1e-3))
    assert md == format_table(json.loads((tmp_path / "t.json").read_text()))
    with pytest.raises(ValueError, match="seeds"):
        run_comparison(TINY, work=tmp_path, out=None, variants=names, progress=False, seeds=[1, 1])


def test_rows_across_seeds_with_a_reused_run():
    """Means over seeds with t-intervals for every per-run metric, lifting errors averaged
    (counts left alone), times over the runs trained here, reused runs counted."""
    from scipy.stats import t as student_t

    from vmdm.experiments.compare import _across_seeds, _ci

    def run(fid, jitter, mpjpe, train_s):
        return {"label": "x", "checkpoint": "c", "train_s": train_s, "train_cpu_s": 0.0 if math.isnan(train_s) else 9.0,
                "eval_s": 5.0, "eval_cpu_s": 4.0,
                "results": {"generation": {"model": {"fid": {"mean": fid, "ci95": 0.01, "n": 3},
                                                     "jitter": {"mean": jitter, "ci95": 0.1, "n": 3}},
                                           "per_repeat": [1]},
                            "lifting_test": {"prior": {"mpjpe_mm": mpjpe, "n_cases": 6},
                                             "teacher": {"mpjpe_mm": 200.0}}}}

    row = _across_seeds({0: run(1.0, 4.0, 100.0, float("nan")), 3: run(2.0, 6.0, 300.0, 10.0)})
    g = row["results"]["generation"]["model"]
    assert g["fid"]["mean"] == 1.5 and g["fid"]["n"] == 2
    assert g["fid"]["ci95"] == pytest.approx(student_t.ppf(0.975, 1) * 0.5)
    assert g["jitter"]["mean"] == 5.0
    prior = row["results"]["lifting_test"]["prior"]
    assert prior == {"mpjpe_mm": 200.0, "n_cases": 6}
    assert row["results"]["lifting_test"]["teacher"]["mpjpe_mm"] == 200.0
    assert row["train_s"] == 10.0 and row["train_cpu_s"] == 9.0 and row["reused"] == 1
    assert row["eval_s"] == 10.0 and row["seeds"] == [0, 3] and set(row["runs"]) == {"0", "3"}
    assert "per_repeat" not in row["results"]["generation"]
    # One finite value has no interval; saved to JSON it is null: rendered without one.
    assert _ci({"mean": 0.5, "ci95": None, "n": 1}, ".3f") == "0.500 (n=1)"
    assert _ci({"mean": 0.5, "ci95": float("nan"), "n": 1}, ".3f") == "0.500 (n=1)"


def test_every_variant_is_a_valid_training_config():
    from vmdm.training.config import TrainConfig

    for name, (label, overrides) in VARIANTS.items():
        cfg = TrainConfig.of(**{**QUICK.train, **overrides}).resolved()
        assert cfg.supervision == overrides["supervision"], name
    ms = TrainConfig.of(**VARIANTS["multistep_depth_offset"][1]).resolved()
    assert ms.multistep and ms.multistep_project and ms.loss.depth_offset == 5
    assert TrainConfig.of(**VARIANTS["videomdm"][1]).loss.depth_offset == 0
