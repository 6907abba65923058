"""Choose ``lambda_align`` on the VALIDATION split: ``python -m vmdm.experiments.lambda_align``.

Trains VideoMDM (2D supervision) once per value of the representation-alignment weight,
with one budget and seed, and evaluates every model on the val split (generation metrics
and lifting on the val split's 2D keypoints) with an evaluator trained on the train split.
The test split is never touched, so the chosen value can later be reported on test
without having been tuned on it. Writes a table like ``vmdm.experiments.compare``.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from dataclasses import dataclass
from pathlib import Path

from vmdm.cli import ConfigError, field, run_main
from vmdm.experiments.compare import QUICK, default_jobs, format_table, run_comparison

__all__ = ["SWEEP_BUDGET", "LambdaAlignConfig", "sweep", "main"]

# The demo-size model on the full built-in dataset (the quick dataset has only 3 val clips).
SWEEP_BUDGET = dataclasses.replace(
    QUICK, name="val-sweep", quick_data=False,
    evaluator=dict(steps=1500, time_budget=None, batch_size=64))


@dataclass
class LambdaAlignConfig:
    """``python -m vmdm.experiments.lambda_align``: one lambda_align sweep on the val split."""

    values: list[float] = field([0, 0.3, 1, 3], "comma-separated lambda_align values", sep=",")
    steps: int | None = field(None, "training steps of every model (default: the quick budget's)")
    quick_data: bool = field(False, "the small dataset (a smoke run: 3 val clips)")
    out: str | None = field(None, "result file stem (default results/lambda_align_<date>)")
    work_dir: str | None = field(None, "checkpoints and the evaluator (default runs/lambda_align)")
    cache_dir: str | None = field(None, "built-in data cache (default $VMDM_CACHE or ~/.cache/vmdm)")
    seed: int = field(0, "random seed of every training run")
    threads: int | None = field(None, "torch CPU threads (per value when several run at once)")
    jobs: int | None = field(None, "values trained and evaluated at once, each in its own process (default: one "
                                   "per CPU core on a CPU, 1 on a GPU)")
    progress: bool = field(True, "show progress bars")


def out_stem(cfg: LambdaAlignConfig) -> Path:
    """The result file stem: ``<stem>.md`` and ``<stem>.json`` are written."""
    out = Path(cfg.out) if cfg.out else Path("results") / f"lambda_align_{datetime.date.today().isoformat()}"
    return out.with_suffix("") if out.suffix in (".md", ".json") else out


def sweep(cfg: LambdaAlignConfig) -> dict:
    """Train and evaluate one model per value of ``cfg.values``; returns the comparison summary."""
    variants = {f"align_{v:g}": (f"VideoMDM, lambda_align = {v:g}", dict(supervision="2d", lambda_align=v))
                for v in (float(v) for v in cfg.values)}
    budget = dataclasses.replace(SWEEP_BUDGET, quick_data=True) if cfg.quick_data else SWEEP_BUDGET
    work = Path(cfg.work_dir) if cfg.work_dir else Path("runs") / "lambda_align"
    jobs = cfg.jobs if cfg.jobs is not None else default_jobs(budget, len(variants))
    return run_comparison(budget, work=work, out=out_stem(cfg), cache_dir=cfg.cache_dir, seed=cfg.seed,
                          steps=cfg.steps, variants=variants, progress=cfg.progress, threads=cfg.threads,
                          split="val", cmu=False, title="lambda_align sweep on the validation split", jobs=jobs)


def main(argv=None) -> int:
    def run(cfg: LambdaAlignConfig) -> None:
        if not cfg.values:
            raise ConfigError("--values: give at least one value")
        summary = sweep(cfg)
        out = out_stem(cfg)
        print(format_table(summary))
        print(f"wrote {out}.md and {out}.json")

    return run_main(LambdaAlignConfig, "python -m vmdm.experiments.lambda_align", __doc__.split("\n\n")[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
