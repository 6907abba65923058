"""Train the teacher lifter on the corpus's held-out action families.

``python -m vmdm.data.build.train_teacher --corpus DIR --out lifter.pt [--time-budget 150]``

The lifter sees only clips of the held-out family group (see
:func:`vmdm.data.build.build_2d.family_split`); it is evaluated on its own validation clips and
on the main split, whose motions it has never seen in kind. The checkpoint records the
families it was trained on so that ``build_2d`` uses the same split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from vmdm.data.build.build_2d import family_split, load_corpus_joints
from vmdm.data.build.teacher import LifterConfig, LifterTrainConfig, evaluate_lifter, make_views, save_lifter, train_lifter

__all__ = ["train_lifter_on_corpus", "main"]


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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmdm.data.build.train_teacher", description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True, help="checkpoint path (written atomically)")
    p.add_argument("--steps", type=int, default=LifterTrainConfig.steps)
    p.add_argument("--time-budget", type=float, default=LifterTrainConfig.time_budget_s, help="seconds; 0 = no limit")
    p.add_argument("--batch-size", type=int, default=LifterTrainConfig.batch_size)
    p.add_argument("--channels", type=int, default=LifterConfig.channels)
    p.add_argument("--lifter-families", help="comma-separated families to train on (default: every third)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads; a fixed count makes the lifter reproducible "
                   "(default: the faster of all and one, timed on a few steps)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cfg = LifterTrainConfig(
        steps=a.steps, time_budget_s=a.time_budget or None, batch_size=a.batch_size, seed=a.seed, threads=a.threads
    )
    metrics = train_lifter_on_corpus(
        a.corpus, a.out, cfg, LifterConfig(channels=a.channels),
        a.lifter_families.split(",") if a.lifter_families else None, progress=not a.no_progress,
    )
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
