"""Choose ``lambda_align`` on the VALIDATION split: ``python -m vmdm.experiments.lambda_align``.

Trains VideoMDM (2D supervision) once per value of the representation-alignment weight,
with one budget and seed, and evaluates every model on the val split (generation metrics
and lifting on the val split's 2D keypoints) with an evaluator trained on the train split.
The test split is never touched, so the chosen value can later be reported on test
without having been tuned on it. Writes a table like ``vmdm.experiments.compare``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import sys
from pathlib import Path

from vmdm.experiments.compare import QUICK, default_jobs, format_table, run_comparison

__all__ = ["SWEEP_BUDGET", "main"]

# The demo-size model on the full built-in dataset (the quick dataset has only 3 val clips).
SWEEP_BUDGET = dataclasses.replace(
    QUICK, name="val-sweep", quick_data=False,
    evaluator=dict(steps=1500, time_budget=None, batch_size=64))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmdm.experiments.lambda_align", description=__doc__.split("\n\n")[0])
    p.add_argument("--values", default="0,0.3,1,3", help="comma-separated lambda_align values")
    p.add_argument("--steps", type=int, help="training steps of every model (default: the quick budget's)")
    p.add_argument("--quick-data", action="store_true", help="the small dataset (a smoke run: 3 val clips)")
    p.add_argument("--out", help="result file stem (default results/lambda_align_<date>)")
    p.add_argument("--work-dir", help="checkpoints and the evaluator (default runs/lambda_align)")
    p.add_argument("--cache-dir", help="built-in data cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (per value when several run at once)")
    p.add_argument("--jobs", type=int, help="values trained and evaluated at once, each in its own process "
                   "(default: one per CPU core on a CPU, 1 on a GPU)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    values = [float(v) for v in a.values.split(",")]
    variants = {f"align_{v:g}": (f"VideoMDM, lambda_align = {v:g}", dict(supervision="2d", lambda_align=v))
                for v in values}
    budget = dataclasses.replace(SWEEP_BUDGET, quick_data=True) if a.quick_data else SWEEP_BUDGET
    out = Path(a.out) if a.out else Path("results") / f"lambda_align_{datetime.date.today().isoformat()}"
    if out.suffix in (".md", ".json"):
        out = out.with_suffix("")
    work = Path(a.work_dir) if a.work_dir else Path("runs") / "lambda_align"
    jobs = a.jobs if a.jobs is not None else default_jobs(budget, len(variants))
    summary = run_comparison(budget, work=work, out=out, cache_dir=a.cache_dir, seed=a.seed, steps=a.steps,
                             variants=variants, progress=not a.no_progress, threads=a.threads, split="val",
                             cmu=False, title="lambda_align sweep on the validation split", jobs=jobs)
    print(format_table(summary))
    print(f"wrote {out}.md and {out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
