"""vmdm.cli: config dataclasses as command lines, and every CLI built on it.

General behaviour (nested configs flattened onto one command line, recipe overlays,
positional fields, ``from_dict``), the extensions (required options, repeated and
separated list options, metavar, ConfigError), and for each converted command line: its
``--help`` lists every config field, and the Python config path runs the same work as the
command line (the work itself stubbed out where it would take minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
from dataclasses import dataclass

import pytest

from vmdm.cli import REQUIRED, ConfigError, build_parser, field, from_args, from_dict, parse, to_flat


@dataclass
class Inner:
    """Inner options."""

    alpha: float = field(0.5, "an inner float")
    names: list[str] = field(["a"], "an inner list")


@dataclass
class Outer:
    """Outer options."""

    path: str = field("p", "a positional path", positional=True)
    steps: int | None = field(None, "an optional int")
    flag: bool = field(True, "a bool")
    mode: str = field("x", "a choice", choices=["x", "y"])
    inner: Inner = field(Inner, "nested")


def _parse(cls, argv, **kw):
    return from_args(cls, build_parser(cls, "prog", "desc", **kw).parse_args(argv))


# --------------------------------------------------------------------------- general behaviour


def test_nested_config_is_flat_on_the_command_line():
    cfg = _parse(Outer, ["here", "--steps", "3", "--no-flag", "--mode", "y", "--alpha", "2", "--names", "b", "c"])
    assert cfg == Outer(path="here", steps=3, flag=False, mode="y", inner=Inner(alpha=2.0, names=["b", "c"]))
    assert _parse(Outer, []) == Outer()
    assert _parse(Outer, ["--steps", "none"]).steps is None
    assert to_flat(Outer()) == {"path": "p", "steps": None, "flag": True, "mode": "x", "alpha": 0.5, "names": ["a"]}
    help_ = build_parser(Outer, "prog", "desc").format_help()
    assert "Inner options" in help_ and "an inner float" in help_
    # One argument group per nested config, however many options it has.
    assert help_.count("Inner options:") == 1
    with pytest.raises(SystemExit):
        _parse(Outer, ["--mode", "z"])


def test_from_dict_flat_nested_and_unknown_keys():
    want = Outer(steps=2, inner=Inner(alpha=3.0))
    assert from_dict(Outer, {"steps": 2, "alpha": 3.0}) == want
    assert from_dict(Outer, {"steps": 2, "inner": {"alpha": 3.0}}) == want
    assert from_dict(Outer, {"steps": 2, "inner": Inner(alpha=3.0)}) == want
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['bogus'\]"):
        from_dict(Outer, {"bogus": 1})
    with pytest.raises(TypeError, match="unknown option"):
        from_dict(Outer, {"inner": {"bogus": 1}})
    with pytest.raises(TypeError, match="expected a Inner or a dict"):
        from_dict(Outer, {"inner": 3})


def test_recipes_lay_over_defaults_under_the_command_line():
    recipes = {"base": {}, "big": {"steps": 100, "alpha": 9.0}}
    cfg, _ = parse(Outer, "prog", "desc", [], recipes=recipes, default_recipe="base")
    assert cfg == Outer()
    cfg, parser = parse(Outer, "prog", "desc", ["--recipe", "big"], recipes=recipes, default_recipe="base")
    assert cfg.steps == 100 and cfg.inner.alpha == 9.0
    assert "(default: 100)" in parser.format_help()  # --help shows the recipe's values
    cfg, _ = parse(Outer, "prog", "desc", ["--recipe", "big", "--steps", "7"], recipes=recipes, default_recipe="base")
    assert cfg.steps == 7 and cfg.inner.alpha == 9.0


def test_duplicate_option_names_are_refused():
    @dataclass
    class Clash:
        alpha: int = field(1, "clashes with Inner.alpha")
        inner: Inner = field(Inner, "nested")

    with pytest.raises(TypeError, match="declared twice"):
        build_parser(Clash, "prog", "desc")


# --------------------------------------------------------------------------- extensions


@dataclass
class Ext:
    name: str = field(REQUIRED, "a required option")
    text: list[str] = field([], "repeat for several", append=True)
    values: list[float] = field([0, 0.5, 2], "comma-separated values", sep=",")
    families: list[str] | None = field(None, "comma-separated, or none", sep=",")
    clip: str | None = field(None, "a clip file", metavar="CLIP.npz")


def test_required_option():
    assert _parse(Ext, ["--name", "n"]).name == "n"
    with pytest.raises(SystemExit):
        _parse(Ext, [])
    # The dataclass field has no default and is keyword-only (it may follow fields with defaults).
    with pytest.raises(TypeError):
        Ext()
    assert Ext(name="n").values == [0, 0.5, 2]
    # Defaults can supply it (a recipe): then the option is optional.
    assert _parse(Ext, [], defaults={"name": "from recipe"}).name == "from recipe"


def test_required_option_error_names_it(capsys):
    with pytest.raises(SystemExit) as e:
        _parse(Ext, ["--text", "x"])
    assert e.value.code == 2 and "--name" in capsys.readouterr().err


def test_append_option_repeats():
    assert _parse(Ext, ["--name", "n"]).text == []
    cfg = _parse(Ext, ["--name", "n", "--text", "a b", "--text", "c"])
    assert cfg.text == ["a b", "c"]
    # The default list is not shared with (or changed by) a parse.
    assert _parse(Ext, ["--name", "n"]).text == [] and Ext(name="n").text == []


def test_separated_list_option():
    p = build_parser(Ext, "prog", "desc")
    assert "(default: 0,0.5,2)" in p.format_help()
    assert from_args(Ext, p.parse_args(["--name", "n"])).values == [0.0, 0.5, 2.0]
    assert from_args(Ext, p.parse_args(["--name", "n", "--values", "1, 3"])).values == [1.0, 3.0]
    assert from_args(Ext, p.parse_args(["--name", "n"])).families is None
    assert from_args(Ext, p.parse_args(["--name", "n", "--families", "walk,run"])).families == ["walk", "run"]
    assert from_args(Ext, p.parse_args(["--name", "n", "--families", "none"])).families is None
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "n", "--values", "1,x"])
    with pytest.raises(TypeError, match="exclusive"):
        field([], "both", append=True, sep=",")


def test_metavar_and_config_error():
    assert "--clip CLIP.npz" in build_parser(Ext, "prog", "desc").format_help()
    assert issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------- every converted CLI


def _config_classes():
    from vmdm.data.build.bandai import BandaiConfig
    from vmdm.data.build.build_2d import Build2DRunConfig
    from vmdm.data.build.prepare import PrepareConfig
    from vmdm.data.build.stats import StatsConfig
    from vmdm.data.build.synth import SynthConfig
    from vmdm.data.build.train_teacher import TrainTeacherConfig
    from vmdm.experiments.lambda_align import LambdaAlignConfig
    from vmdm.sample import SampleConfig

    return [
        ("vmdm.sample", [], SampleConfig),
        ("vmdm.experiments.lambda_align", [], LambdaAlignConfig),
        ("vmdm.data.build.train_teacher", [], TrainTeacherConfig),
        ("vmdm.data.build.stats", [], StatsConfig),
        ("vmdm.data.build.build_2d", [], Build2DRunConfig),
        ("vmdm.data.build.prepare", ["build"], PrepareConfig),
        ("vmdm.data.build.prepare", ["check"], PrepareConfig),
        ("vmdm.data.build.prepare", ["bandai"], BandaiConfig),
        ("vmdm.data.build.synth.__main__", [], SynthConfig),
    ]


def _leaves(cls):
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            yield from _leaves(f.default_factory)
        else:
            yield f


@pytest.mark.parametrize("module,sub,cls", _config_classes(), ids=lambda x: x if isinstance(x, str) else None)
def test_help_documents_every_field(module, sub, cls, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main([*sub, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in _leaves(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
        assert "--" + f.name.replace("_", "-") in out, f"{module} --help lacks {f.name}"


def test_lambda_align_config_path_is_the_command_line(monkeypatch, tmp_path, capsys):
    from vmdm.experiments import lambda_align as la

    calls = []
    monkeypatch.setattr(la, "run_comparison", lambda budget, **kw: calls.append((budget, kw)) or {"rows": []})
    monkeypatch.setattr(la, "format_table", lambda summary: "table")
    argv = ["--values", "0,2.5", "--steps", "3", "--quick-data", "--out", str(tmp_path / "r.md"), "--work-dir",
            str(tmp_path / "w"), "--seed", "4", "--threads", "1", "--jobs", "1", "--no-progress"]
    assert la.main(argv) == 0
    assert f"wrote {tmp_path / 'r'}.md" in capsys.readouterr().out
    la.sweep(la.LambdaAlignConfig(values=[0, 2.5], steps=3, quick_data=True, out=str(tmp_path / "r.md"),
                                  work_dir=str(tmp_path / "w"), seed=4, threads=1, jobs=1, progress=False))
    (b1, kw1), (b2, kw2) = calls
    assert b1 == b2 and kw1 == kw2 and b1.quick_data
    assert set(kw1["variants"]) == {"align_0", "align_2.5"} and kw1["out"] == tmp_path / "r"
    assert kw1["variants"]["align_2.5"][1] == {"supervision": "2d", "lambda_align": 2.5}
    assert kw1["progress"] is False and kw1["split"] == "val" and kw1["steps"] == 3


def test_train_teacher_config_path_is_the_command_line(monkeypatch, capsys):
    from vmdm.data.build import train_teacher as tt

    calls = []
    monkeypatch.setattr(tt, "train_lifter_on_corpus", lambda *a, **kw: calls.append((a, kw)) or {"steps": 1})
    assert tt.main(["--corpus", "c", "--out", "o.pt", "--steps", "5", "--time-budget", "0", "--batch-size", "4",
                    "--channels", "16", "--lifter-families", "walk,jump", "--threads", "1", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out) == {"steps": 1}
    tt.train_teacher(tt.TrainTeacherConfig(corpus="c", out="o.pt", steps=5, time_budget=0, batch_size=4, channels=16,
                                           lifter_families=["walk", "jump"], threads=1, progress=False))
    assert calls[0] == calls[1]
    (corpus, out, train_cfg, model_cfg, families), kw = calls[0]
    assert (corpus, out, families, kw) == ("c", "o.pt", ["walk", "jump"], {"progress": False})
    assert train_cfg.steps == 5 and train_cfg.time_budget_s is None and train_cfg.batch_size == 4
    assert train_cfg.threads == 1 and model_cfg.channels == 16
    # Defaults: the lifter's own.
    cfg = tt.TrainTeacherConfig(corpus="c", out="o.pt")
    assert cfg.train_config() == tt.LifterTrainConfig() and cfg.model_config() == tt.LifterConfig()


def test_stats_config_path_is_the_command_line(monkeypatch, tmp_path, capsys):
    from vmdm.data.build import stats

    calls = []
    monkeypatch.setattr(stats, "collect", lambda *a, **kw: calls.append((a, kw)) or {})
    monkeypatch.setattr(stats, "markdown_table", lambda s: "| table |")
    docs = tmp_path / "data.md"
    assert stats.main(["--corpus", "c", "--cmu", "m", "--max-clips", "7", "--write-docs", str(docs)]) == 0
    assert capsys.readouterr().out.strip() == "| table |"
    assert "| table |" in docs.read_text()
    assert stats.report(stats.StatsConfig(corpus="c", cmu="m", max_clips=7)) == "| table |"
    assert calls == [(("c", "m", None, 7), {"bandai": None})] * 2
    monkeypatch.setattr(stats, "counterpart_statistics", lambda corpus, bandai: calls.append((corpus, bandai)) or {})
    assert stats.main(["--corpus", "c", "--cmu", "m", "--bandai", "b"]) == 0
    assert calls[-2:] == [(("c", "m", None, 400), {"bandai": "b"}), ("c", "b")]
    assert "Procedural families with a Bandai counterpart" in capsys.readouterr().out


def test_build_2d_config_maps_onto_build2dconfig(monkeypatch, tmp_path, capsys):
    from vmdm.data.build import build_2d as b2d

    calls = []

    def fake_build(corpus, out, config, **kw):
        calls.append((corpus, out, config, kw))
        (tmp_path / "o").mkdir(exist_ok=True)
        (tmp_path / "o" / "vmdm_2d.json").write_text(json.dumps({"splits": {}, "teacher": config.teacher,
                                                                 "build_s": 0}))
        return tmp_path / "o"

    monkeypatch.setattr(b2d, "build_2d", fake_build)
    assert b2d.main(["--corpus", "c", "--out", "o", "--teacher", "noise", "--lifter-families", "a,b",
                     "--per-frame-camera", "--distance", "3", "--seed", "2", "--workers", "1", "--overwrite",
                     "--no-progress"]) == 0
    assert "teacher noise" in capsys.readouterr().out
    b2d.run_build_2d(b2d.Build2DRunConfig(corpus="c", out="o", teacher="noise", lifter_families=["a", "b"],
                                          per_frame_camera=True, distance=3.0, seed=2, workers=1, overwrite=True,
                                          progress=False))
    assert calls[0] == calls[1]
    _, _, config, kw = calls[0]
    assert config == b2d.Build2DConfig(teacher="noise", camera=b2d.CameraConfig(distance=3.0, per_frame=True),
                                       lifter_families=["a", "b"], seed=2, workers=1)
    assert kw == {"progress": False, "overwrite": True}
    # The defaults build what Build2DConfig's defaults build (but for the CLI's worker count).
    default = b2d.Build2DRunConfig(corpus="c", out="o").build_config()
    assert dataclasses.replace(default, workers=1) == b2d.Build2DConfig()


@pytest.mark.parametrize("command", ["build", "check"])
def test_prepare_config_path_is_the_command_line(command, monkeypatch, tmp_path, capsys):
    from vmdm.data.build import prepare

    calls = []
    monkeypatch.setattr(prepare, "ensure_default_data",
                        lambda cache_dir, **kw: calls.append((cache_dir, kw)) or prepare.default_paths(tmp_path))
    monkeypatch.setattr(prepare, "check_default_data",
                        lambda cache_dir, **kw: calls.append((cache_dir, kw)) or (False, ["report"]))
    rc = prepare.main([command, "--quick", "--cache-dir", str(tmp_path), "--no-progress"])
    assert rc == (0 if command == "build" else 1)
    cfg = prepare.PrepareConfig(cache_dir=str(tmp_path), quick=True, progress=False)
    (prepare.build_data if command == "build" else prepare.check_data)(cfg)
    assert calls[0] == calls[1] == (str(tmp_path), {"quick": True, "progress": False})


def test_prepare_bandai_config_path_is_the_command_line(monkeypatch, tmp_path, capsys):
    from vmdm.data.build import bandai

    calls = []
    summary = {"split": {"counts": {"train": 8, "val": 1, "test": 1}}, "cut": 0, "max_seconds": 9.95,
               "short_clips": {"padded": 2, "dropped": 0, "min_seconds": 2.0}, "build_seconds": 1.0}
    monkeypatch.setattr(bandai, "build_bandai", lambda cfg: calls.append(cfg) or summary)
    from vmdm.data.build import prepare

    assert prepare.main(["bandai", "--root", "r", "--out", "o", "--clips", "walk_*,run_*", "--limit", "5", "--seed", "2",
                         "--no-retarget", "--short-clips", "drop", "--no-progress"]) == 0
    assert "train 8, val 1, test 1" in capsys.readouterr().out
    assert calls == [bandai.BandaiConfig(root="r", out="o", clips=["walk_*", "run_*"], limit=5, seed=2, retarget=False,
                                         short_clips="drop", progress=False)]


def test_synth_config_path_is_the_command_line(tmp_path, capsys):
    from vmdm.data.build.synth import SynthConfig, synthesize
    from vmdm.data.build.synth.__main__ import main

    assert main(["--out", str(tmp_path / "cli"), "--num-clips", "3", "--seed", "1", "--workers", "1",
                 "--no-progress"]) == 0
    assert "wrote 3 clips" in capsys.readouterr().out
    out = synthesize(SynthConfig(out=str(tmp_path / "py"), num_clips=3, seed=1, workers=1, progress=False))
    cli_files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    assert cli_files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) and cli_files
    for rel in cli_files:
        assert (tmp_path / "cli" / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_sample_config_parses_as_before():
    from vmdm.inference.lifting import LiftConfig
    from vmdm.sample import SampleConfig, build_parser as sample_parser

    p = sample_parser()
    cfg = from_args(SampleConfig, p.parse_args(["--checkpoint", "c", "--out", "o", "--text", "a", "--text", "b",
                                                "--lift", "k.npz", "--lift-strength", "0.5", "--no-progress"]))
    assert cfg == SampleConfig(checkpoint="c", out="o", text=["a", "b"], progress=False,
                               lifting=LiftConfig(lift=["k.npz"], lift_strength=0.5))
    assert from_args(SampleConfig, p.parse_args(["--checkpoint", "c", "--out", "o"])) == SampleConfig(
        checkpoint="c", out="o")
    assert isinstance(p, argparse.ArgumentParser) and "KEYPOINTS.npz" in p.format_help()


def test_lift_config_checks_name_the_option():
    from vmdm.inference.lifting import LiftConfig

    LiftConfig().check()
    for kw, option in (({"lift_strength": 1.5}, "--lift-strength"), ({"lift_smooth": -1}, "--lift-smooth"),
                       ({"lift_ramp": -1}, "--lift-ramp"), ({"lift_body_scale": 0}, "--lift-body-scale"),
                       ({"t_star": -1}, "--t-star"), ({"t_star": 3, "init": "noise"}, "--t-star")):
        with pytest.raises(ConfigError, match=option):
            LiftConfig(**kw).check()
    assert LiftConfig(lift_strength=0.5, lift_ramp=2).lift_kwargs() == {
        "guidance_strength": 0.5, "smooth": None, "ramp": 2, "body_scale": None, "init": "teacher", "t_star": None}


def test_run_main_reports_run_errors_as_usage_errors(capsys):
    from dataclasses import dataclass

    from vmdm.cli import run_main

    @dataclass
    class Cfg:
        name: str | None = field(None, "a name")
        n: int = field(1, "a count")

    def run(cfg):
        if cfg.n < 0:
            raise ConfigError(f"--n: expected >= 0, got {cfg.n}")
        return 3 if cfg.name == "three" else None

    assert run_main(Cfg, "prog", "d", run, ["--name", "x"], required=("name",)) == 0
    assert run_main(Cfg, "prog", "d", run, ["--name", "three"]) == 3
    for argv, msg in ((["--name", "x", "--n", "-1"], "--n: expected >= 0, got -1"), ([], "--name is required")):
        with pytest.raises(SystemExit) as e:
            run_main(Cfg, "prog", "d", run, argv, required=("name",))
        assert e.value.code == 2 and msg in capsys.readouterr().err
