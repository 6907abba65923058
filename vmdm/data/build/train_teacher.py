"""Train the teacher lifter on the corpus's held-out action families.

``python -m vmdm.data.build.train_teacher --corpus DIR --out lifter.pt [--time-budget 150]``

The lifter sees only clips of the held-out family group (see
:func:`vmdm.data.build.build_2d.family_split`); it is evaluated on its own validation clips and
on the main split, whose motions it has never seen in kind. The checkpoint records the
families it was trained on so that ``build_2d`` uses the same split.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vmdm.cli import REQUIRED, build_parser, field, from_args
from vmdm.data.build.build_2d import family_split, load_corpus_joints
from vmdm.data.build.teacher import LifterConfig, LifterTrainConfig, evaluate_lifter, make_views, save_lifter, train_lifter

__all__ = ["TrainTeacherConfig", "train_teacher", "train_lifter_on_corpus", "main"]


def train_lifter_on_corpus(
    corpus: str | Path,
    out: str | Path,
    config: LifterTrainConfig = LifterTrainConfig(),
    model_config: LifterConfig = LifterConfig(),
    lifter_families: Sequence[str] | None = None,
    main_eval_clips: int = 200,
    progress: bool = True,
) -> dict:
    """Train, evaluate on the lifter's val split and on (up to ``main_eval_clips``) main clips, save."""
    split = family_split(corpus, lifter_families, seed=config.seed)
    train = load_corpus_joints(corpus, split.lifter_train)
    val = load_corpus_joints(corpus, split.lifter_val)
    model, metrics = train_lifter(train, val, config, model_config, progress=progress)
    main_ids = [i for s in ("train", "val", "test") for i in split.main[s]]
    rng = np.random.default_rng(config.seed)
    pick = sorted(rng.choice(len(main_ids), size=min(main_eval_clips, len(main_ids)), replace=False).tolist())
    main_clips = load_corpus_joints(corpus, [main_ids[i] for i in pick])
    views = make_views(main_clips, 1, config.camera, config.noise, seed=config.seed + 2)
    metrics["main"] = evaluate_lifter(model, views)
    metrics["lifter_families"] = split.lifter_families
    metrics["train_clips"] = len(train)
    save_lifter(out, model, metrics, extra={"lifter_families": split.lifter_families, "corpus": str(corpus)})
    return metrics


@dataclass
class TrainTeacherConfig:
    """``python -m vmdm.data.build.train_teacher``: one lifter trained on a corpus's held-out families."""

    corpus: str = field(REQUIRED, "3D corpus folder (HumanML3D format + meta.jsonl)")
    out: str = field(REQUIRED, "checkpoint path (written atomically)")
    steps: int = field(LifterTrainConfig.steps, "optimisation steps")
    time_budget: float = field(LifterTrainConfig.time_budget_s, "also stop after this many wall-clock seconds; "
                                                                "0 = no limit")
    batch_size: int = field(LifterTrainConfig.batch_size, "training windows per batch")
    channels: int = field(LifterConfig.channels, "channels of the lifter's temporal convolutions")
    lifter_families: list[str] | None = field(None, "comma-separated families to train on (default: every third)",
                                              sep=",")
    seed: int = field(0, "random seed (family split, views, initialisation)")
    threads: int | None = field(None, "torch CPU threads; a fixed count makes the lifter reproducible (default: the "
                                      "faster of all and one, timed on a few steps)")
    progress: bool = field(True, "show a progress bar")

    def train_config(self) -> LifterTrainConfig:
        return LifterTrainConfig(steps=self.steps, time_budget_s=self.time_budget or None,
                                 batch_size=self.batch_size, seed=self.seed, threads=self.threads)

    def model_config(self) -> LifterConfig:
        return LifterConfig(channels=self.channels)


def train_teacher(cfg: TrainTeacherConfig) -> dict:
    """:func:`train_lifter_on_corpus` as ``cfg`` says; returns the lifter's metrics."""
    return train_lifter_on_corpus(cfg.corpus, cfg.out, cfg.train_config(), cfg.model_config(),
                                  cfg.lifter_families or None, progress=cfg.progress)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(TrainTeacherConfig, "python -m vmdm.data.build.train_teacher", __doc__.split("\n\n")[0])
    metrics = train_teacher(from_args(TrainTeacherConfig, parser.parse_args(argv)))
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
