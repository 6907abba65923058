"""vmdm.sample and the lifter from Python: SampleConfig / LiftConfig run what the command line runs."""

import json

import numpy as np
import pytest
import torch

from vmdm.cli import ConfigError
from vmdm.inference.lifting import LiftConfig, lift, lift_details
from vmdm.sample import SampleConfig, main, sample

FAST = dict(length=16, sample_steps=4, progress=False, formats="npy")


def test_python_config_samples_what_the_command_line_samples(tiny_checkpoint, tmp_path):
    argv = ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "cli"), "--length", "16", "--sample-steps",
            "4", "--no-progress", "--formats", "npy", "--text", "a person walks.", "--text", "a person jumps.",
            "--num-samples", "2", "--seed", "3"]
    assert main(argv) == 0
    res = sample(SampleConfig(checkpoint=str(tiny_checkpoint), out=str(tmp_path / "py"),
                              text=["a person walks.", "a person jumps."], num_samples=2, seed=3, **FAST))
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert [s["name"] for s in res["samples"]] == [s["name"] for s in cli["samples"]]
    assert [s["text"] for s in res["samples"]] == [s["text"] for s in cli["samples"]]
    for s in cli["samples"]:
        f = f"{s['name']}_joints.npy"
        assert np.array_equal(np.load(tmp_path / "cli" / f), np.load(tmp_path / "py" / f))


def test_python_config_errors_name_the_option(tiny_checkpoint, tmp_path):
    base = dict(checkpoint=str(tiny_checkpoint), out=str(tmp_path / "o"), **FAST)
    with pytest.raises(ConfigError, match="--text"):
        sample(SampleConfig(**base))
    with pytest.raises(ConfigError, match="--num-samples"):
        sample(SampleConfig(**base, text=["x"], num_samples=0))
    with pytest.raises(ConfigError, match="--lift-strength"):
        sample(SampleConfig(**{**base, "length": None}, lifting=LiftConfig(lift="clip.npz", lift_strength=2.0)))
    with pytest.raises(ConfigError, match="--checkpoint"):
        sample(SampleConfig(**{**base, "checkpoint": str(tmp_path / "none.pt")}, text=["x"]))
    assert not (tmp_path / "o").exists()


def test_lift_config_is_the_same_as_the_keywords(loaded_tiny, known_clip):
    joints, E, K, kp = known_clip
    scores = torch.ones(kp.shape[:2])
    kw = dict(sample_steps=5, seed=0)
    by_keywords = lift_details(loaded_tiny, kp, scores, E, K, "a person walks.", guidance_strength=0.7, smooth=1.0,
                               ramp=2.0, body_scale=1.1, **kw)
    cfg = LiftConfig(lift_strength=0.7, lift_smooth=1.0, lift_ramp=2.0, lift_body_scale=1.1, init="noise")
    by_config = lift_details(loaded_tiny, kp, scores, E, K, "a person walks.", config=cfg, **kw)
    assert torch.equal(by_keywords.joints, by_config.joints)
    assert torch.equal(lift(loaded_tiny, kp, scores, E, K, "a person walks.", config=cfg, **kw), by_config.joints[0])
    with pytest.raises(TypeError, match="smooth"):
        lift_details(loaded_tiny, kp, scores, E, K, config=cfg, smooth=0.0, **kw)


def test_lift_config_defaults_to_teacher_init(loaded_tiny, known_clip):
    # The command line lifts from the teacher by default; the Python keyword default stays
    # "noise" (a caller without a teacher lift keeps working), so a default LiftConfig
    # needs the teacher's lift and equals the keywords init="teacher".
    joints, E, K, kp = known_clip
    scores = torch.ones(kp.shape[:2])
    kw = dict(sample_steps=5, seed=0)
    cfg = LiftConfig(t_star=2)
    assert cfg.init == "teacher"
    with pytest.raises(ValueError, match="teacher"):
        lift_details(loaded_tiny, kp, scores, E, K, config=cfg, **kw)
    by_config = lift_details(loaded_tiny, kp, scores, E, K, config=cfg, teacher=joints, **kw)
    by_keywords = lift_details(loaded_tiny, kp, scores, E, K, init="teacher", t_star=2, teacher=joints, **kw)
    assert torch.equal(by_config.joints, by_keywords.joints)
