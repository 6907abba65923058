"""The paper's comparison: ``python -m vmdm.experiments.compare [--quick|--full] [--out results/...]``.

Trains, with one budget and one seed for all:

(a) ``mdm_3d``        MDM on ground-truth 3D;
(b) ``mdm_teacher``   MDM on the teacher lifter's 3D;
(c) ``videomdm``      VideoMDM (2D supervision, the default losses);

and ablations of (c): ``no_depth_weight`` (depth weighting off), ``no_velocity`` (2D velocity
loss off), ``no_alignment`` (representation alignment off), ``point_depth_weight``
(per-point instead of per-sample depth weighting), and additions to it: ``multistep`` (the
t* multistep scheme, ``--multistep``), ``depth_offset`` (the frame-0 root-depth offset of the
2D loss, ``--depth-offset 5``), ``multistep_depth_offset`` (both) and ``depth_offset_bone`` (the
offset with the body-size loss ``--lambda-bone 30`` pinning the scale). One evaluator is trained on the train
split; every model is evaluated by :func:`vmdm.eval.run.evaluate` on the test split.
Writes one table (markdown + JSON) with FID, R-precision top-3, MM-Dist, Diversity, foot
skating and lifting MPJPE, the ratios FID(c)/FID(a) and FID(c)/FID(b), date, machine and
timings.

``--quick``: the built-in dataset (its learned teacher; the small test dataset's teacher is
too weak to compare against), the tiny denoiser at the demo recipe's 600 steps, a
1200-step evaluator, 3 metric repeats — finishes on a 2-core CPU in about 20 minutes
(the evaluator and the variants one per core, ``--jobs``) and exercises the whole pipeline, not meant to
reproduce the paper's numbers. ``--full``: the built-in dataset, the paper recipe and
protocol (20 repeats); for a GPU, one variant at a time.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass

from vmdm.cli import ConfigError, field, run_main
from pathlib import Path

import torch

__all__ = ["VARIANTS", "Budget", "QUICK", "FULL", "run_comparison", "default_jobs", "format_table", "main"]

log = logging.getLogger("vmdm.experiments.compare")

# name -> (label, TrainConfig overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "mdm_3d": ("(a) MDM, 3D-supervised", dict(supervision="3d")),
    "mdm_teacher": ("(b) MDM on teacher lifts", dict(supervision="teacher")),
    "videomdm": ("(c) VideoMDM, 2D-supervised", dict(supervision="2d")),
    "no_depth_weight": ("(c) without depth weighting", dict(supervision="2d", depth_weight="none")),
    "no_velocity": ("(c) without velocity loss", dict(supervision="2d", lambda_vel=0.0)),
    "no_alignment": ("(c) without representation alignment", dict(supervision="2d", lambda_align=0.0)),
    "point_depth_weight": ("(c) point instead of sample depth weighting", dict(supervision="2d", depth_weight="point")),
    "multistep": ("(c) with t* multistep training", dict(supervision="2d", multistep=True)),
    "depth_offset": ("(c) with the root-depth offset", dict(supervision="2d", depth_offset=5)),
    "multistep_depth_offset": ("(c) with multistep and the root-depth offset",
                               dict(supervision="2d", multistep=True, depth_offset=5)),
    "depth_offset_bone": ("(c) with the root-depth offset and the body-size loss",
                          dict(supervision="2d", depth_offset=5, lambda_bone=30.0)),
}


@dataclass(frozen=True)
class Budget:
    name: str
    quick_data: bool
    train: dict  # TrainConfig fields shared by every variant
    evaluator: dict  # EvaluatorTrainConfig fields
    eval_quick: bool  # EvalConfig.quick


QUICK = Budget(
    "quick", False,
    dict(recipe="demo", model="tiny", steps=600, batch_size=32, lr=3e-4, warmup=50, max_frames=120, ema_decay=0.99,
         text_encoder="minilm"),
    dict(steps=1200, time_budget=None, batch_size=64),
    True,
)
FULL = Budget(
    "full", False,
    dict(recipe="paper", text_encoder="minilm"),
    dict(steps=3000, time_budget=None, batch_size=64),
    False,
)


# Options that do not change what a run learns (where it writes, how it reports).
_BOOKKEEPING = {"out", "progress", "cache_dir", "resume", "log_every", "ckpt_every", "tensorboard", "profile",
                "profile_warmup", "profile_steps", "workers", "device", "recipe", "deterministic"}


# Loss options that only one kind of supervision reads.
_ONLY_2D = {"lambda_pos", "lambda_vel", "lambda_align", "lambda_bone", "align_smooth", "align_outlier", "depth_weight",
            "depth_power", "z_min", "depth_offset"}
_ONLY_3D = {"lambda_feature", "lambda_geo_pos", "lambda_geo_vel", "lambda_geo_foot"}


def _training_differences(saved: dict, cfg) -> dict:
    """``{option: (saved, wanted)}`` for the resolved options of ``cfg`` that differ from a
    checkpoint's saved configuration and change what its supervision mode learns."""
    from vmdm.cli import to_flat
    from vmdm.training.config import flat_saved_config

    want, saved = to_flat(cfg.resolved()), flat_saved_config(saved)
    unused = _ONLY_3D if want["supervision"] == "2d" else _ONLY_2D
    return {k: (saved.get(k), v) for k, v in want.items()
            if k not in _BOOKKEEPING and k not in unused and saved.get(k) != v}


# A variant's name is its folder's name (``name_seed<k>`` for seed k), so it must be a plain
# file name that cannot be read as another variant's run of another seed.
_VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SEED_SUFFIX = re.compile(r"_seed\d+$")


def _check_variant_names(names) -> None:
    bad = [n for n in names if not isinstance(n, str) or not _VARIANT_NAME.fullmatch(n) or _SEED_SUFFIX.search(n)
           or n == "evaluator.pt"]
    if bad:
        raise ValueError(f"variants: names {bad} cannot name run folders; expected letters, digits, '_', '.' or '-' "
                         "(not starting with a symbol) and no '_seed<k>' ending, which is reserved for seed k's runs")


def run_dir_name(name: str, seed: int) -> str:
    """A variant's folder in the work directory: ``name`` for seed 0 (as before there were
    several seeds, so finished runs stay reusable), ``name_seed<k>`` for the others."""
    return name if seed == 0 else f"{name}_seed{seed}"


def _train_variant(name: str, overrides: dict, budget: Budget, work: Path, cache_dir: str | None, seed: int,
                   steps: int | None, progress: bool, data: str | None = None) -> tuple[Path, float]:
    from vmdm.training.trainer import TrainConfig, train

    out = work / run_dir_name(name, seed)
    ckpt = out / "checkpoint.pt"
    want = {**budget.train, **overrides, "seed": seed}
    if steps is not None:
        want["steps"] = steps
    cfg = TrainConfig.of(**want, quick_data=budget.quick_data, cache_dir=cache_dir, out=str(out), progress=progress,
                          data=data)
    if ckpt.is_file():
        # Reuse a finished run of exactly this configuration (an interrupted comparison resumes):
        # every resolved option that changes training must match, defaults included, so a
        # changed default retrains instead of reusing a stale model.
        from vmdm.training.checkpoint import load_checkpoint

        from vmdm.motion.representation import FEATURE_CONVENTION

        ck = load_checkpoint(ckpt)
        same_features = ck.get("feature_convention", 1) == FEATURE_CONVENTION  # else retrain
        from vmdm.data.build.fingerprint import dataset_hash, warn_mismatch

        # A run trained on data that have changed since is retrained, loudly.
        same_data = Path(ck.get("data_root", "")).is_dir() and not warn_mismatch(
            "the training data's", dataset_hash(ck["data_root"]), ck.get("data_hash"), str(ckpt))
        if (same_features and same_data and ck["step"] >= ck["config"]["steps"]
                and not _training_differences(ck["config"], cfg)):
            log.info("%s (seed %d): reusing %s", name, seed, ckpt)
            return ckpt, float("nan")
    t0 = time.time()
    path = train(cfg)
    return path, time.time() - t0


@dataclass(frozen=True)
class _Plan:
    """Everything a variant's training and evaluation needs, picklable for worker processes."""
    budget: Budget
    work: Path
    cache_dir: str | None
    seed: int
    steps: int | None
    progress: bool
    ecfg: object  # vmdm.eval.run.EvalConfig
    data_root: str
    ev_path: Path
    split: str
    cmu: bool
    data: str | None = None  # a 2D-only dataset given by the user (None: the built-in one)


def _load_inputs(plan: _Plan) -> dict:
    """The evaluation inputs every variant shares: evaluator, test set, lifting cases."""
    from vmdm.eval.evaluator import load_evaluator
    from vmdm.eval.lifting_eval import cmu_cases, split_cases
    from vmdm.eval.run import Settings, load_test_set
    from vmdm.training.trainer import TrainConfig

    evaluator, ev_meta = load_evaluator(plan.ev_path)
    ev_meta["path"] = str(plan.ev_path)
    s = Settings.from_config(plan.ecfg)
    # Matched lengths: lift windows no longer than the models' training windows.
    train_frames = TrainConfig.of(**plan.budget.train).max_frames
    ccases = None
    if plan.cmu:
        try:
            ccases = cmu_cases(None, window=min(s.cmu_window, train_frames),
                               max_windows_per_clip=s.cmu_windows_per_clip, views=s.cmu_views, seed=plan.seed)
        except FileNotFoundError as e:
            log.warning("CMU clips unavailable (%s): CMU lifting skipped", e)
    return {"evaluator": evaluator, "ev_meta": ev_meta, "test": load_test_set(plan.data_root, plan.split),
            "tcases": split_cases(plan.data_root, max_frames=train_frames, limit=s.lifting_cases, split=plan.split),
            "ccases": ccases}


def _train_run(plan: _Plan, name: str, overrides: dict, seed: int) -> dict:
    """Train (or reuse) one variant with one training seed."""
    c0 = time.process_time()
    ckpt, train_s = _train_variant(name, overrides, plan.budget, plan.work, plan.cache_dir, seed, plan.steps,
                                   plan.progress, plan.data)
    return {"checkpoint": ckpt, "train_s": train_s, "train_cpu_s": time.process_time() - c0}


def _eval_run(plan: _Plan, inputs: dict, label: str, trained: dict, seed: int) -> dict:
    """Evaluate one trained run: its table row. The evaluation's sampling is seeded with the
    run's training seed; the lifting cases (cameras) are the same for every seed."""
    from vmdm.eval.run import evaluate

    t0, c0 = time.time(), time.process_time()
    ckpt = trained["checkpoint"]
    res = evaluate(dataclasses.replace(plan.ecfg, checkpoint=str(ckpt), cmu=inputs["ccases"] is not None, seed=seed),
                   evaluator=inputs["evaluator"], evaluator_meta=inputs["ev_meta"], test=inputs["test"],
                   test_cases=inputs["tcases"], cmu_cases=inputs["ccases"])
    return {"label": label, "checkpoint": str(ckpt), "train_s": round(trained["train_s"], 1),
            "train_cpu_s": round(trained["train_cpu_s"], 1), "eval_s": round(time.time() - t0, 1),
            "eval_cpu_s": round(time.process_time() - c0, 1), "results": res}


def _train_evaluator(plan: _Plan) -> dict:
    """The comparison's evaluator, trained on the train split (once; an existing one is kept)."""
    from vmdm.eval.train_evaluator import EvaluatorTrainConfig, train_evaluator

    t0, c0 = time.time(), time.process_time()
    if not plan.ev_path.is_file():
        train_evaluator(EvaluatorTrainConfig(data=plan.data_root, out=str(plan.ev_path), seed=plan.seed,
                                             progress=plan.progress, **plan.budget.evaluator))
    return {"evaluator_s": round(time.time() - t0, 1), "evaluator_cpu_s": round(time.process_time() - c0, 1)}


# One worker process's evaluation inputs, loaded by its first evaluation.
_WORKER_INPUTS: dict = {}


def _worker_init(threads: int, log_level: int) -> None:
    logging.basicConfig(level=log_level, format=f"%(levelname)s [worker {os.getpid()}] %(name)s: %(message)s")
    torch.set_num_threads(threads)


def _worker_eval(plan: _Plan, label: str, trained: dict, seed: int) -> dict:
    if not _WORKER_INPUTS:
        _WORKER_INPUTS.update(_load_inputs(plan))
    return _eval_run(plan, _WORKER_INPUTS, label, trained, seed)


def _run_parallel(plan: _Plan, variants: dict, tasks: list, jobs: int, per_job: int) -> tuple[dict, dict]:
    """Train the evaluator and every run's model in ``jobs`` worker processes at once, and
    evaluate each run as soon as both its model and the evaluator are ready: the evaluator
    (the longest single job) trains beside the variants instead of before them. Returns the
    rows by ``(name, seed)`` and the evaluator's timings."""
    import concurrent.futures as cf
    import multiprocessing as mp

    done: dict = {}
    trained: dict = {}
    ev_timings = None
    log.info("%d runs, %d at a time, %d thread(s) each", len(tasks), jobs, per_job)
    with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                initargs=(per_job, logging.getLogger().level)) as pool:
        # Submitted first, so it starts first: the queue is served in order.
        pending = {pool.submit(_train_evaluator, plan): ("evaluator", None, None)}
        pending.update({pool.submit(_train_run, plan, name, variants[name][1], s): ("train", name, s)
                        for name, s in tasks})

        def evaluate_later(name, s):
            pending[pool.submit(_worker_eval, plan, variants[name][0], trained[name, s], s)] = ("eval", name, s)

        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                kind, name, s = pending.pop(f)
                try:
                    result = f.result()
                except BaseException:
                    # Stop at the first failure as the sequential run does; finished runs
                    # keep their checkpoints, which a rerun reuses.
                    what = "the evaluator" if kind == "evaluator" else f"{name} (seed {s})"
                    log.error("%s failed; cancelling the jobs not yet started (evaluated: %s)", what,
                              ", ".join(f"{n}/{k}" for n, k in done) or "none")
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                if kind == "evaluator":
                    ev_timings = result
                    for key in trained:
                        evaluate_later(*key)
                elif kind == "train":
                    trained[name, s] = result
                    if ev_timings is not None:
                        evaluate_later(name, s)
                else:
                    done[name, s] = result
                    log.info("%s (seed %d): FID %.3f (%d/%d done)", name, s,
                             result["results"]["generation"]["model"]["fid"]["mean"], len(done), len(tasks))
    return done, ev_timings


def _children_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def default_jobs(budget: Budget, n_variants: int) -> int:
    """Variants run at once: on a CPU every core takes one (a tiny-model run keeps one thread
    busy far better than it splits over several); a GPU budget runs one at a time (one device)."""
    if budget.name == "full" or torch.cuda.is_available():
        return 1
    return max(1, min(n_variants, _cores()))


def _cores() -> int:
    """CPU cores this process may run on (affinity / cgroup-restricted machines report fewer
    than ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_comparison(budget: Budget, *, work: Path, out: Path | None, cache_dir: str | None = None, seed: int = 0,
                   steps: int | None = None, variants: list[str] | dict | None = None, progress: bool = True,
                   threads: int | None = None, eval_overrides: dict | None = None, split: str = "test",
                   cmu: bool = True, title: str = "VideoMDM comparison", jobs: int = 1,
                   seeds: list[int] | None = None, data: str | os.PathLike | None = None) -> dict:
    """Train each variant (a list of :data:`VARIANTS` names, or ``{name: (label, TrainConfig
    overrides)}``) with ``budget`` and one seed, evaluate all on ``split`` with one evaluator
    trained on the train split, and write the table to ``out`` (.md/.json).

    ``seeds`` (default ``[seed]``) trains every variant once per training seed; the table
    then gives each metric's mean over the seeds with a 95 % Student-t interval (the
    spread of training, which one run's interval over evaluation repeats does not show),
    and each seed's run is kept in the row's ``runs``. The evaluator and the lifting
    cameras come from the first seed.

    ``data``: a 2D-only dataset folder (``build_2d``'s layout, e.g. the Bandai one) to train
    and evaluate on instead of the built-in data; its ``gt/`` part trains the evaluator
    (train split) and scores the models.

    ``jobs`` > 1 runs that many jobs at once in worker processes of ``threads`` threads each
    (default: the cores shared out): the evaluator's training, each run's training, and
    each run's evaluation once its model and the evaluator are both ready. The table is
    the same, in the order of ``variants``."""
    from vmdm.data.build.prepare import ensure_default_data
    from vmdm.eval.run import EvalConfig, machine_description

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    seeds = [seed] if seeds is None else [int(v) for v in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected distinct training seeds, got {seeds}")
    seed = seeds[0]
    if threads:
        torch.set_num_threads(threads)
    t_all, c_all, cc_all = time.time(), time.process_time(), _children_cpu_s()
    load_start = os.getloadavg()
    if not isinstance(variants, dict):
        names = variants or list(VARIANTS)
        unknown = [v for v in names if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; expected some of {list(VARIANTS)}")
        variants = {v: VARIANTS[v] for v in names}
    _check_variant_names(variants)
    tasks = [(name, s) for name in variants for s in seeds]
    # The evaluator, when it has to be trained, is one more job.
    jobs = min(jobs, len(tasks) + (not (work / "evaluator.pt").is_file()))
    work.mkdir(parents=True, exist_ok=True)
    if data is None:
        paths = ensure_default_data(cache_dir, progress=progress, quick=budget.quick_data)
        data_root, data_hashes = str(paths.dataset_2d), _data_hashes(paths)
    else:
        from vmdm.data.build.fingerprint import dataset_hash

        data_root = str(Path(data).resolve())
        if not (Path(data_root) / "vmdm_2d.json").is_file():
            raise ValueError(f"data: {data} is not a 2D-only dataset (no vmdm_2d.json; build one with "
                             "python -m vmdm.data.build.build_2d)")
        data_hashes = {"data": dataset_hash(data_root), "corpus": None, "lifter": None, "dataset_2d": None}

    # One evaluator for every model, trained on the train split only.
    ev_path = work / "evaluator.pt"
    ecfg = EvalConfig(checkpoint="-", quick=budget.eval_quick, seed=seed, progress=progress and jobs == 1, out="",
                      split=split, **(eval_overrides or {}))
    # Progress bars of several processes would overwrite each other: workers log instead.
    plan = _Plan(budget, work, cache_dir, seed, steps, progress and jobs == 1, ecfg, data_root, ev_path, split, cmu,
                 None if data is None else data_root)
    if jobs == 1:
        timings = _train_evaluator(plan)
        inputs = _load_inputs(plan)
        done: dict = {}
        for name, s in tasks:
            label, overrides = variants[name]
            done[name, s] = _eval_run(plan, inputs, label, _train_run(plan, name, overrides, s), s)
            log.info("%s (seed %d): FID %.3f", name, s, done[name, s]["results"]["generation"]["model"]["fid"]["mean"])
        ev_meta = inputs["ev_meta"]
    else:
        per_job = threads or max(1, _cores() // jobs)
        done, timings = _run_parallel(plan, variants, tasks, jobs, per_job)
        from vmdm.eval.evaluator import load_evaluator

        ev_meta = load_evaluator(ev_path)[1]
    rows = {name: done[name, seeds[0]] if len(seeds) == 1 else _across_seeds({s: done[name, s] for s in seeds})
            for name in variants}
    timings["jobs"] = jobs
    machine = machine_description()
    if jobs > 1:
        machine = f"{machine.rsplit(',', 1)[0]}, {jobs} runs at a time with {per_job} torch thread(s) each"
    timings["total_s"] = round(time.time() - t_all, 1)
    # CPU seconds of this process and its workers (all threads): comparable across runs on a
    # shared machine, where wall time mostly measures the other users' load (given here as
    # load averages).
    timings["total_cpu_s"] = round(time.process_time() - c_all + _children_cpu_s() - cc_all, 1)
    timings["load_avg_start"] = [round(v, 1) for v in load_start]
    timings["load_avg_end"] = [round(v, 1) for v in os.getloadavg()]
    summary = {
        "title": title,
        "budget": budget.name,
        "split": split,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "data_root": data_root,
        "data": data_hashes,
        "seed": seed,
        "seeds": seeds,
        "train": {**budget.train, **({"steps": steps} if steps is not None else {})},
        "settings": next(iter(rows.values()))["results"]["settings"] if rows else None,
        "evaluator": {"path": str(ev_path), "hash": ev_meta["train_split"]["hash"],
                      "heldout": ev_meta["metrics"]["heldout"], "train": ev_meta["metrics"].get("steps"),
                      "n_train_clips": ev_meta["train_split"]["n_clips"]},
        "n_test": next(iter(rows.values()))["results"]["generation"]["n_test"] if rows else 0,
        "timings": timings,
        "rows": rows,
    }
    summary["ratios"] = _ratios(rows)
    if len(seeds) > 1:
        summary["ratios"]["per_seed"] = {
            str(s): _ratios({n: r["runs"][str(s)] for n, r in rows.items()}) for s in seeds}
    if out is not None:
        _check_extending(out.with_suffix(".json"), summary)
        out.parent.mkdir(parents=True, exist_ok=True)
        from vmdm.eval.run import _jsonable

        out.with_suffix(".json").write_text(json.dumps(_jsonable(summary), indent=1) + "\n")
        out.with_suffix(".md").write_text(format_table(summary))
    return summary


def _data_hashes(paths) -> dict:
    from vmdm.data.build.prepare import read_data_record

    rec = read_data_record(paths) or {}
    return {k: rec.get(k) for k in ("data", "corpus", "lifter", "dataset_2d")}


def _check_extending(path: Path, summary: dict) -> None:
    """Warn loudly when the table about to be replaced was made with other data or another
    evaluator."""
    from vmdm.data.build.fingerprint import warn_mismatch

    try:
        prev = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    warn_mismatch("the default data's", summary["data"]["data"], (prev.get("data") or {}).get("data"), str(path))
    warn_mismatch("the evaluator's train split", summary["evaluator"]["hash"],
                  (prev.get("evaluator") or {}).get("hash"), str(path))


def _across_seeds(runs: dict[int, dict]) -> dict:
    """One row for a variant trained with several seeds: each generation metric's mean over
    the seeds' values with a 95 % Student-t interval, lifting errors averaged over seeds,
    times summed over the runs trained here (``reused`` counts the finished runs that were
    reused, whose times are unknown); every seed's own row under ``runs``."""
    from vmdm.eval.metrics import mean_ci_t

    first = next(iter(runs.values()))
    res = copy.deepcopy(first["results"])
    model = res["generation"]["model"]
    for m, v in model.items():
        if isinstance(v, dict) and "mean" in v:  # every per-run metric of the form {mean, ci95, n}
            model[m] = mean_ci_t(r["results"]["generation"]["model"][m]["mean"] for r in runs.values()).as_dict()
    for part in ("lifting_test", "lifting_cmu"):
        prior = res.get(part, {}).get("prior")
        if prior:
            for k, v in prior.items():
                if k.endswith(("_mm", "_px")) and isinstance(v, (int, float)):
                    prior[k] = sum(r["results"][part]["prior"][k] for r in runs.values()) / len(runs)
    res.pop("per_repeat", None)
    res["generation"].pop("per_repeat", None)
    trained = [r for r in runs.values() if math.isfinite(r["train_s"])]

    def total(rs, k):
        return round(sum(r[k] for r in rs), 1) if rs else float("nan")

    return {"label": first["label"], "checkpoint": [r["checkpoint"] for r in runs.values()],
            "train_s": total(trained, "train_s"), "train_cpu_s": total(trained, "train_cpu_s"),
            "eval_s": total(list(runs.values()), "eval_s"), "eval_cpu_s": total(list(runs.values()), "eval_cpu_s"),
            "reused": len(runs) - len(trained), "results": res, "seeds": list(runs),
            "runs": {str(s): r for s, r in runs.items()}}


def _fid(rows, name):
    try:
        return rows[name]["results"]["generation"]["model"]["fid"]["mean"]
    except KeyError:
        return None


def _ratios(rows: dict) -> dict:
    c, a, b = _fid(rows, "videomdm"), _fid(rows, "mdm_3d"), _fid(rows, "mdm_teacher")
    div = lambda x, y: (x / y) if (x is not None and y not in (None, 0)) else None  # noqa: E731
    return {"fid_c_over_a": div(c, a), "fid_c_over_b": div(c, b)}


def _ci(d: dict | None, fmt: str) -> str:
    if not d or d.get("mean") is None or not math.isfinite(d["mean"]):
        return "—"
    if d.get("ci95") is None or not math.isfinite(d["ci95"]):  # one value: no interval (NaN, null in JSON)
        return f"{d['mean']:{fmt}} (n={d.get('n')})"
    return f"{d['mean']:{fmt}} ± {d['ci95']:{fmt}}"


def _num(v, fmt: str) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:{fmt}}"


def _seeds_text(seeds: list) -> str:
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"training seeds {', '.join(map(str, seeds))}"


def _spread_text(seeds: list, repeats) -> str:
    if len(seeds) == 1:
        return f"{repeats} repeats, mean ± 95% CI"
    return (f"mean ± 95% Student-t interval over the {len(seeds)} training seeds (each seed's value the mean of "
            f"{repeats} evaluation repeats); lifting: mean over seeds; times: summed")


def _short(h) -> str:
    from vmdm.data.build.fingerprint import short

    return short(h)


def format_table(summary: dict) -> str:
    rows = summary["rows"]
    seeds = summary.get("seeds") or [summary["seed"]]
    st = summary["settings"] or {}
    ev = summary["evaluator"]
    h = ev["heldout"] or {}
    lines = [
        f"# {summary.get('title', 'VideoMDM comparison')} ({summary['budget']} budget)", "",
        f"- date: {summary['created']}",
        f"- machine: {summary['machine']}",
        f"- data: `{summary['data_root']}`, evaluated on the {summary.get('split', 'test')} split "
        f"({summary['n_test']} clips); data hash {_short((summary.get('data') or {}).get('data'))} (corpus "
        f"{_short((summary.get('data') or {}).get('corpus'))}, teacher {_short((summary.get('data') or {}).get('lifter'))}, "
        f"2D {_short((summary.get('data') or {}).get('dataset_2d'))})",
        f"- training (every model): {json.dumps(summary['train'], sort_keys=True)}, {_seeds_text(seeds)}",
        f"- metrics: {_spread_text(seeds, st.get('repeats'))}; R-precision batches of "
        f"{next(iter(rows.values()))['results']['generation']['rprecision_batch'] if rows else '—'}; "
        f"sampler {st.get('sampler')} with {st.get('sample_steps') or 'all'} steps, guidance {st.get('guidance')}",
        f"- evaluator: trained on {ev['n_train_clips']} train-split clips ({ev['train']} steps), hash "
        f"{ev['hash'][:12]}; held-out train clips: R@1 {_num(h.get('top1'), '.3f')} (chance "
        f"{_num(h.get('chance_top1'), '.3f')}), R@3 {_num(h.get('top3'), '.3f')} (chance {_num(h.get('chance_top3'), '.3f')})",
        f"- lifting MPJPE: no alignment, mm; prior used as a lifter with ray guidance vs the teacher lifter; "
        f"test = the dataset's {summary.get('split', 'test')}-split 2D keypoints, CMU = real motion capture through "
        f"random cameras",
        "",
        f"| model | FID ↓ | R@3 ↑ | MM-Dist ↓ | Diversity → | Foot skate ↓ | Lift MPJPE {summary.get('split', 'test')} ↓ "
        "| Lift MPJPE CMU ↓ | train s (CPU s) | eval s (CPU s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = next(iter(rows.values()), None)
    if first:
        g = first["results"]["generation"]["real"]
        lt = first["results"].get("lifting_test", {}).get("teacher", {})
        lc = first["results"].get("lifting_cmu", {}).get("teacher", {})
        lines.append(f"| Real {summary.get('split', 'test')} motions | {_ci(g['fid'], '.3f')} | {_ci(g['top3'], '.3f')} | {_ci(g['mm_dist'], '.3f')} | "
                     f"{_ci(g['diversity'], '.3f')} | {_ci(g['foot_skating'], '.3f')} | "
                     f"teacher: {_num(lt.get('mpjpe_mm'), '.0f')} | teacher: {_num(lc.get('mpjpe_mm'), '.0f')} | | |")
    for name, row in rows.items():
        r = row["results"]
        g = r["generation"]["model"]
        lt = r.get("lifting_test", {}).get("prior", {})
        lc = r.get("lifting_cmu", {}).get("prior", {})
        reused = f", {row['reused']} reused" if row.get("reused") else ""
        lines.append(f"| {row['label']} | {_ci(g['fid'], '.3f')} | {_ci(g['top3'], '.3f')} | {_ci(g['mm_dist'], '.3f')} | "
                     f"{_ci(g['diversity'], '.3f')} | {_ci(g['foot_skating'], '.3f')} | {_num(lt.get('mpjpe_mm'), '.0f')} | "
                     f"{_num(lc.get('mpjpe_mm'), '.0f')} | {_num(row['train_s'], '.0f')} ({_num(row.get('train_cpu_s'), '.0f')})"
                     f"{reused} | "
                     f"{_num(row['eval_s'], '.0f')} ({_num(row.get('eval_cpu_s'), '.0f')}) |")
    ra = summary["ratios"]
    if ra["fid_c_over_a"] is not None or ra["fid_c_over_b"] is not None:
        lines += ["", f"FID(c)/FID(a) = {_num(ra['fid_c_over_a'], '.2f')}; FID(c)/FID(b) = {_num(ra['fid_c_over_b'], '.2f')} "
                  "(the paper, HumanML3D: 0.88/0.54 = 1.63 for c/a, and c < b)."]
        if ra.get("per_seed"):
            lines[-1] = lines[-1][:-1] + "; per seed: " + ", ".join(
                f"{s}: {_num(r['fid_c_over_a'], '.2f')} / {_num(r['fid_c_over_b'], '.2f')}"
                for s, r in ra["per_seed"].items()) + "."
    lines += ["", f"Timings: {json.dumps(summary['timings'])}.", ""]
    return "\n".join(lines)


@dataclass
class CompareConfig:
    """The options of ``python -m vmdm.experiments.compare``."""

    quick: bool = field(False, "2-core CPU budget (the default when neither --quick nor --full is given)")
    full: bool = field(False, "paper budget, for a GPU")
    out: str | None = field(None, "result file stem (writes .md and .json; default results/compare_<budget>_<date>)")
    work_dir: str | None = field(None, "checkpoints and the evaluator (default runs/compare_<budget>)")
    cache_dir: str | None = field(None, "built-in data cache (default $VMDM_CACHE or ~/.cache/vmdm)")
    seed: int = field(0, "training seed (and the evaluator's)")
    seeds: list[int] = field([], "comma-separated training seeds: every variant is trained once per seed and the "
                                 "table gives the mean over seeds with a 95%% t-interval (overrides --seed)", sep=",")
    steps: int | None = field(None, "override the training steps of every model")
    variants: list[str] = field([], f"comma-separated subset of {','.join(VARIANTS)}", sep=",")
    threads: int | None = field(None, "torch CPU threads (per run when several run at once)")
    jobs: int | None = field(None, "runs (variant x seed) trained and evaluated at once, each in its own process "
                                   "(default: one per CPU core on a CPU, 1 on a GPU or with --full)")
    data: str | None = field(None, "2D-only dataset to train and evaluate on (build_2d's layout, e.g. the Bandai one "
                                   "of docs/data.md); default: the built-in data")
    cmu: bool = field(True, "also score lifting on the real CMU clips (when they are found)")
    progress: bool = field(True, "progress bars")

    def budget(self) -> Budget:
        if self.quick and self.full:
            raise ConfigError("--full: not allowed with --quick")
        return FULL if self.full else QUICK

    def out_stem(self) -> Path:
        out = Path(self.out) if self.out else Path("results") / f"compare_{self.budget().name}_{datetime.date.today()}"
        return out.with_suffix("") if out.suffix in (".md", ".json") else out


def compare(cfg: CompareConfig) -> dict:
    """Run the comparison ``cfg`` describes, write its table to ``cfg.out_stem()`` and return the summary."""
    budget = cfg.budget()
    work = Path(cfg.work_dir) if cfg.work_dir else Path("runs") / f"compare_{budget.name}"
    names = list(cfg.variants) or None
    seeds = list(cfg.seeds) or [cfg.seed]
    jobs = cfg.jobs if cfg.jobs is not None else default_jobs(budget, len(names or VARIANTS) * len(seeds))
    return run_comparison(budget, work=work, out=cfg.out_stem(), cache_dir=cfg.cache_dir, seed=cfg.seed,
                          steps=cfg.steps, variants=names, progress=cfg.progress, threads=cfg.threads, jobs=jobs,
                          seeds=seeds, data=cfg.data, cmu=cfg.cmu)


def main(argv=None) -> int:
    def run(cfg: CompareConfig) -> None:
        summary = compare(cfg)
        print(format_table(summary))
        print(f"wrote {cfg.out_stem()}.md and {cfg.out_stem()}.json")

    return run_main(CompareConfig, "python -m vmdm.experiments.compare", __doc__.split("\n\n")[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
