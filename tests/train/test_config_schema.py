"""The training config (nested loss options, recipes laid over the defaults) and the denoiser
checkpoint's schema (one class writes and reads every key; format 2 files still read)."""

import dataclasses

import numpy as np
import pytest
import torch

from vmdm.cli import parse, to_flat
from vmdm.training.checkpoint import (FORMAT, CheckpointFormatError, DenoiserCheckpoint, atomic_save,
                                      nest_loss_options)
from vmdm.training.config import RECIPES, LossConfig, TrainConfig, flat_saved_config


def test_recipes_are_overlays_and_explicit_options_win():
    demo, paper = TrainConfig(), TrainConfig.of("paper")
    assert demo.steps == RECIPES["demo"]["steps"] and demo.model == "tiny"
    assert paper.steps == 200_000 and paper.model == "base" and paper.loss == LossConfig()
    mixed = TrainConfig.of("paper", steps=7, lambda_align=2.5)
    assert (mixed.steps, mixed.batch_size, mixed.loss.lambda_align) == (7, 64, 2.5)
    with pytest.raises(ValueError, match="recipe: expected one of"):
        TrainConfig.of("fast")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['lambda_typo'\]"):
        TrainConfig.of(lambda_typo=1.0)


def test_command_line_reads_the_recipe_first():
    cfg, _ = parse(TrainConfig, "train", "", ["--recipe", "paper", "--steps", "5", "--lambda-vel", "3"],
                   recipes=RECIPES, default_recipe="demo")
    assert (cfg.steps, cfg.lr, cfg.max_frames, cfg.loss.lambda_vel) == (5, 1e-4, 196, 3.0)
    cfg, parser = parse(TrainConfig, "train", "", [], recipes=RECIPES, default_recipe="demo")
    assert cfg == TrainConfig()
    assert "(default: 200000)" in parse(TrainConfig, "t", "", ["--recipe", "paper"], recipes=RECIPES,
                                        default_recipe="demo")[1].format_help()


def test_saved_configs_read_in_either_layout():
    cfg = TrainConfig.of(lambda_align=3.0)
    nested, flat = dataclasses.asdict(cfg), to_flat(cfg)
    assert nested["loss"]["lambda_align"] == 3.0 and "lambda_align" not in nested
    assert flat_saved_config(nested) == flat_saved_config(flat) == flat
    assert nest_loss_options(flat) == nested == nest_loss_options(nested)


def _record(**over):
    ck = DenoiserCheckpoint(step=3, model={"w": torch.ones(2)}, ema={"w": torch.zeros(2)},
                            model_config={"preset": "tiny"}, config=dataclasses.asdict(TrainConfig()),
                            normalizer={"mean": np.zeros(4), "std": np.ones(4)}, skeleton="smpl22",
                            data_pos=(1, 2), rng=[{}], body_scale=1.05, data_hash="abc")
    return {**ck.to_dict(), **over}


def test_schema_round_trip_and_clear_errors(tmp_path):
    path = atomic_save(_record(), tmp_path / "c.pt")
    ck = DenoiserCheckpoint.load(path)
    assert ck.step == 3 and ck.data_pos == (1, 2) and ck.body_scale == 1.05 and ck.data_hash == "abc"
    assert torch.equal(ck.ema["w"], torch.zeros(2)) and torch.load(path, weights_only=True)["format"] == FORMAT
    assert isinstance(ck.normalizer["mean"], torch.Tensor)

    # Format 2 (loss options flat in the config) is read as format 3.
    old = _record(format=2)
    old["config"] = to_flat(TrainConfig.of(lambda_vel=9.0))
    ck2 = DenoiserCheckpoint.from_dict(old, "old.pt")
    assert ck2.config["loss"]["lambda_vel"] == 9.0 and "lambda_vel" not in ck2.config

    bad = _record()
    del bad["ema"]
    with pytest.raises(CheckpointFormatError, match=r"x.pt: checkpoint lacks \['ema'\]"):
        DenoiserCheckpoint.from_dict(bad, "x.pt")
    with pytest.raises(CheckpointFormatError, match=r"x.pt: checkpoint format 9; this code reads formats \[2, 3\]"):
        DenoiserCheckpoint.from_dict(_record(format=9), "x.pt")
    with pytest.raises(CheckpointFormatError, match="x.pt: not a denoiser checkpoint"):
        DenoiserCheckpoint.from_dict({"weights": 1}, "x.pt")
    with pytest.raises(CheckpointFormatError, match="'normalizer' must hold 'mean' and 'std'"):
        DenoiserCheckpoint.from_dict(_record(normalizer={"mean": np.zeros(4)}), "x.pt")
