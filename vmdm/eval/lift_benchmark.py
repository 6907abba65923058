"""The lifting benchmark: fixed camera draws of real motion (and the 2D-only test split)
lifted by the teacher and by each prior, from the teacher's lift and from noise
(``python -m vmdm.eval --lift-benchmark``).

Case sets (each skipped, with a note, when its data are absent):

* ``test``: the 2D-only test split of the first checkpoint's training data, with the
  teacher lifts stored when it was built;
* ``cmu``: the real CMU clips (``shared/data/cmu_humanml``) in windows, random cameras
  and detector noise (:func:`vmdm.eval.lifting_eval.cmu_cases`);
* ``bandai``: the test split of the Bandai-Namco corpus (a folder written by ``python -m
  vmdm.data.build.prepare bandai``, built into the cache from ``shared/data/bandai_namco_2``
  when absent), filmed the same way.

The camera and noise draws depend only on ``--seed``, so every checkpoint is scored on the
same keypoints; the teacher is run once per case and its lift is both the ``teacher`` row
and the input of every teacher-initialised prior. Every lifter is scored by
:func:`vmdm.eval.lifting_eval.score_lifters`: MPJPE in the world frame and in the canonical
frame (the VideoMDM release's protocol), root-relative MPJPE, root and root-depth errors,
PA-MPJPE, body size, acceleration error, 2D reprojection error and seconds per clip.

``--tune`` first chooses each checkpoint's ``t*`` on the val split of its own training
data (lowest MPJPE over ``--tune-values``) and records it beside the checkpoint in
``lift_settings.json``, which :func:`vmdm.inference.loading.load_model` reads.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vmdm.cli import REQUIRED, ConfigError, field, run_main

log = logging.getLogger("vmdm.eval.lift_benchmark")

__all__ = ["LiftBenchmarkConfig", "run_benchmark", "corpus_cases", "tune_t_star", "format_markdown", "main"]

SETS = ("test", "val", "cmu", "bandai")
INITS = ("teacher", "noise")


@dataclass
class LiftBenchmarkConfig:
    """``python -m vmdm.eval --lift-benchmark``: the teacher and each prior as lifters on fixed
    camera draws of real motion."""

    checkpoint: list[str] = field([], "a prior to benchmark; repeat for several", append=True)
    name: list[str] = field([], "a row name per --checkpoint (default: its folder name)", append=True)
    out: str = field(REQUIRED, "output folder (results.json, results.md)")
    sets: list[str] = field(list(SETS), f"case sets among {','.join(SETS)}", sep=",")
    inits: list[str] = field(list(INITS), f"lift initialisations among {','.join(INITS)}", sep=",")
    teacher_lifter: str | None = field(None, "teacher lifter checkpoint (default: the one the first checkpoint's "
                                             "2D data were built with)")
    window: int = field(120, "frames per lifted window (at most each model's training length)")
    cmu_dir: str | None = field(None, "cmu_humanml folder (default $VMDM_CMU_DIR or shared/data/cmu_humanml)")
    cmu_windows_per_clip: int | None = field(None, "windows per CMU clip (default all)")
    bandai: str | None = field(None, "prepared Bandai folder, or the raw BVH data to prepare into the cache "
                                     "(default: $VMDM_BANDAI_DIR or shared/data/bandai_namco_2)")
    bandai_windows_per_clip: int | None = field(1, "windows per Bandai test clip")
    limit: int | None = field(None, "at most this many cases per set (the first ones)")
    t_star: int | None = field(None, "denoising steps of teacher-initialised lifts (default: each checkpoint's "
                                     "recorded value)")
    lift_steps: int | None = field(None, "DDIM steps of lifts from noise (default: the lifter's own)")
    noise_ramps: list[float] = field([], "guidance ramps of lifts from noise, one row each (default: one row with "
                                         "the lifter's own ramp)", sep=",")
    smooths: list[float] = field([], "Gaussian sigmas (frames) of the ray corrections of teacher-initialised lifts, "
                                     "one row each (default: one row with the lift's own: the checkpoint's recorded "
                                     "value, else 1)", sep=",")
    text: bool = field(False, "give the priors the clip's caption where there is one (test split)")
    tune: bool = field(False, "choose each checkpoint's t* on its val split first and record it beside it")
    tune_values: list[int] = field([0, 2, 3, 4, 6, 8, 12, 16], "t* values tried by --tune", sep=",")
    tune_smooths: list[float] = field([0, 1, 2, 3, 6], "correction smoothings (sigma, frames) --tune then tries at "
                                                       "the chosen t*", sep=",")
    tune_limit: int = field(40, "val clips --tune lifts")
    seed: int = field(0, "seed of the camera and noise draws and of the lifts")
    lift_batch: int = field(1, "clips of a length each prior lifts at once (vmdm.inference.lifting.lift_batch; "
                               "1: clip by clip, each with its own seed)")
    threads: int | None = field(None, "torch CPU threads")
    device: str | None = field(None, "device (default cpu: lifting is per clip)")
    progress: bool = field(True, "progress bars")

    def check(self) -> None:
        if not self.checkpoint:
            raise ConfigError("--checkpoint: give at least one")
        if self.name and len(self.name) != len(self.checkpoint):
            raise ConfigError(f"--name: expected one per --checkpoint ({len(self.checkpoint)}), got {len(self.name)}")
        for opt, vals, allowed in (("--sets", self.sets, SETS), ("--inits", self.inits, INITS)):
            bad = [v for v in vals if v not in allowed]
            if bad or not vals:
                raise ConfigError(f"{opt}: expected a comma-separated subset of {','.join(allowed)}, got {vals}")
        if self.window < 3:
            raise ConfigError(f"--window: expected >= 3 frames, got {self.window}")
        if any(not r >= 0 for r in self.noise_ramps):
            raise ConfigError(f"--noise-ramps: expected ramps >= 0, got {self.noise_ramps}")
        if any(not v >= 0 for v in self.smooths):
            raise ConfigError(f"--smooths: expected sigmas >= 0, got {self.smooths}")
        if self.lift_batch < 1:
            raise ConfigError(f"--lift-batch: expected >= 1 clips, got {self.lift_batch}")
        if any(v < 0 for v in self.tune_values) or not self.tune_values:
            raise ConfigError(f"--tune-values: expected t* values >= 0, got {self.tune_values}")
        if any(not v >= 0 for v in self.tune_smooths) or not self.tune_smooths:
            raise ConfigError(f"--tune-smooths: expected sigmas >= 0, got {self.tune_smooths}")


# --------------------------------------------------------------------------- case sets


def corpus_cases(root: str | Path, split: str = "test", **kw) -> list:
    """Clips of a HumanML3D-format folder's ``split`` (``new_joints/`` and ``<split>.txt``)
    as lifting cases: windows filmed by random cameras (keywords of
    :func:`vmdm.eval.lifting_eval.cmu_cases`)."""
    from vmdm.data.formats.cmu import CmuClip
    from vmdm.eval.lifting_eval import cmu_cases

    root = Path(root)
    ids_file = root / f"{split}.txt"
    if not ids_file.is_file():
        raise FileNotFoundError(f"{ids_file}: no {split} split")
    clips = []
    for cid in (ln.strip() for ln in ids_file.read_text().splitlines()):
        if cid:
            joints = np.load(root / "new_joints" / f"{cid}.npy", allow_pickle=False)
            clips.append(CmuClip(name=cid, joints=joints))
    return cmu_cases(clips=clips, **kw)


def _bandai_folder(cfg: LiftBenchmarkConfig) -> Path | None:
    """A prepared Bandai folder: ``--bandai`` if prepared, else the raw data prepared into the cache."""
    from vmdm.data.formats import find_shared_data

    raw = Path(cfg.bandai) if cfg.bandai else find_shared_data("VMDM_BANDAI_DIR", "bandai_namco_2", "README.md")
    if raw is None or not raw.is_dir():
        return None
    if (raw / "test.txt").is_file() and (raw / "new_joints").is_dir():
        return raw
    from vmdm.data.build.bandai import BandaiConfig, build_bandai
    from vmdm.data.build.prepare import default_cache_dir

    out = Path(default_cache_dir()) / "bandai"
    if not (out / "test.txt").is_file():
        log.info("preparing the Bandai-Namco corpus from %s into %s", raw, out)
        build_bandai(BandaiConfig(root=str(raw), out=str(out), overwrite=True, progress=cfg.progress))
    return out


def _case_sets(cfg: LiftBenchmarkConfig, data_root: str | None, window: int) -> dict[str, list | str]:
    """``{set: cases}``, or ``{set: "why it is skipped"}``."""
    from vmdm.eval.lifting_eval import cmu_cases, split_cases

    sets: dict[str, list | str] = {}
    for name in cfg.sets:
        try:
            if name in ("test", "val"):
                cases = split_cases(data_root, max_frames=window, split=name) if data_root else []
                sets[name] = cases or f"{data_root} has no 2D keypoints"
            elif name == "cmu":
                sets[name] = cmu_cases(cfg.cmu_dir, window=window, max_windows_per_clip=cfg.cmu_windows_per_clip,
                                       seed=cfg.seed)
            else:
                folder = _bandai_folder(cfg)
                sets[name] = (corpus_cases(folder, "test", window=window, seed=cfg.seed,
                                           max_windows_per_clip=cfg.bandai_windows_per_clip)
                              if folder is not None else "no Bandai-Namco data found (--bandai)")
        except FileNotFoundError as e:
            sets[name] = str(e)
        if isinstance(sets[name], list) and cfg.limit is not None:
            sets[name] = sets[name][:cfg.limit]
    return sets


# --------------------------------------------------------------------------- lifters


def tune_t_star(lm, cases: list, values: list[int], *, seed: int = 0, progress: bool = False,
                batch_size: int = 1, smooths: list[float] | None = None) -> dict:
    """Teacher-initialised lifts of ``cases`` (with their teacher lifts) for every ``t*`` in
    ``values`` (with the default teacher-init smoothing), then at the best ``t*`` for every correction
    smoothing in ``smooths`` (if given); returns ``{"t_star": best by MPJPE, "sweep": {t*:
    scores}, "smooth": best, "smooth_sweep": {sigma: scores}, "teacher": the teacher's
    scores}``."""
    from vmdm.eval.lifting_eval import prior_lifter, score_lifters
    from vmdm.inference.lifting import DEFAULT_TEACHER_SMOOTH

    lifters = {str(v): prior_lifter(lm, init="teacher", t_star=v, seed=seed, batch_size=batch_size,
                                    smooth=DEFAULT_TEACHER_SMOOTH) for v in values if v <= lm.diffusion.steps}
    sweep = score_lifters(cases, lifters, progress=progress, desc="tuning t*")
    best = min(sweep, key=lambda k: sweep[k]["mpjpe_mm"])
    rec = {"t_star": int(best), "criterion": "mpjpe_mm", "cases": len(cases), "sweep": sweep}
    if smooths:
        lifters = {f"{v:g}": prior_lifter(lm, init="teacher", t_star=int(best), seed=seed, batch_size=batch_size,
                                          smooth=float(v)) for v in smooths}
        rec["smooth_sweep"] = score_lifters(cases, lifters, progress=progress, desc="tuning smoothing")
        rec["smooth"] = float(min(rec["smooth_sweep"], key=lambda k: rec["smooth_sweep"][k]["mpjpe_mm"]))
    # The teacher on the same clips, for reference (not a candidate).
    rec["teacher"] = score_lifters(cases, {"teacher": lambda case, i: case.teacher})["teacher"]
    return rec


# --------------------------------------------------------------------------- run


def _names(cfg: LiftBenchmarkConfig) -> list[str]:
    if cfg.name:
        return list(cfg.name)
    names = [Path(c).parent.name or Path(c).stem for c in cfg.checkpoint]
    return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]


def run_benchmark(cfg: LiftBenchmarkConfig) -> dict:
    """Run the benchmark ``cfg`` describes; writes ``results.json`` and ``results.md`` to
    ``cfg.out`` and returns the results."""
    from vmdm.eval.lifting_eval import prior_lifter, score_lifters, teacher_lifter, with_teacher
    from vmdm.eval.run import lifter_path_for, lm_data_root
    from vmdm.inference.loading import LIFT_SETTINGS, load_model

    cfg.check()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_all = time.time()
    device = cfg.device or "cpu"
    models = {n: load_model(c, device) for n, c in zip(_names(cfg), cfg.checkpoint)}
    train_len = min(lm.train_frames for lm in models.values())
    window = min(cfg.window, train_len)
    data_root = lm_data_root(cfg.checkpoint[0])
    lifter = Path(cfg.teacher_lifter) if cfg.teacher_lifter else lifter_path_for(data_root)
    if lifter is None or not Path(lifter).is_file():
        raise ConfigError(f"--teacher-lifter: none given and none found for {data_root}")
    teacher = teacher_lifter(lifter)
    sets = _case_sets(cfg, data_root, window)

    tuned = {}
    if cfg.tune:
        for (name, lm), ck in zip(models.items(), cfg.checkpoint):
            from vmdm.eval.lifting_eval import split_cases

            val = split_cases(lm_data_root(ck), max_frames=window, limit=cfg.tune_limit, split="val")
            if not val:
                tuned[name] = {"skipped": "its training data have no 2D val split"}
                continue
            rec = tune_t_star(lm, val, cfg.tune_values, seed=cfg.seed, progress=cfg.progress,
                              batch_size=cfg.lift_batch, smooths=cfg.tune_smooths)
            rec["data_root"] = str(lm_data_root(ck))
            Path(ck).with_name(LIFT_SETTINGS).write_text(json.dumps(rec, indent=1) + "\n")
            lm.lift_settings = rec
            tuned[name] = rec
            log.info("%s: t* = %d, smoothing %s on %d val clips", name, rec["t_star"], rec.get("smooth"), rec["cases"])

    results: dict = {
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "config": asdict(cfg), "window": window, "teacher_lifter": str(lifter),
        "checkpoints": {n: {"path": c, "supervision": lm.config.get("supervision"), "steps": lm.config.get("steps"),
                            "seed": lm.config.get("seed"), "data_hash": lm.data_hash,
                            "t_star": (lm.lift_settings or {}).get("t_star"),
                            "smooth": (lm.lift_settings or {}).get("smooth")}
                        for (n, lm), c in zip(models.items(), cfg.checkpoint)},
        "tuning": tuned, "sets": {},
    }
    from vmdm.inference.lifting import default_t_star

    for set_name, cases in sets.items():
        if isinstance(cases, str):
            results["sets"][set_name] = {"skipped": cases}
            log.info("%s: skipped (%s)", set_name, cases)
            continue
        with_teacher(cases, teacher)
        lifters = {"teacher": lambda case, i: case.teacher}
        for name, lm in models.items():
            for init in cfg.inits:
                if init == "teacher":
                    t_star = cfg.t_star if cfg.t_star is not None else default_t_star(lm)
                    for smooth in cfg.smooths or [None]:
                        label = f"{name} (teacher, t*={t_star}" + ("" if smooth is None else f", smooth={smooth:g}")
                        lifters[label + ")"] = prior_lifter(lm, init=init, t_star=t_star, seed=cfg.seed,
                                                            use_text=cfg.text, batch_size=cfg.lift_batch,
                                                            smooth=smooth)
                    continue
                for ramp in cfg.noise_ramps or [None]:
                    label = f"{name} (noise)" if ramp is None else f"{name} (noise, ramp={ramp:g})"
                    lifters[label] = prior_lifter(lm, init=init, sample_steps=cfg.lift_steps, seed=cfg.seed,
                                                  use_text=cfg.text, ramp=ramp, batch_size=cfg.lift_batch)
        results["sets"][set_name] = score_lifters(cases, lifters, progress=cfg.progress, desc=set_name)
    results["seconds"] = round(time.time() - t_all, 1)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    (out / "results.md").write_text(format_markdown(results))
    return results


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON: {type(x).__name__}")


COLUMNS = [("mpjpe_mm", "MPJPE", ".1f"), ("canonical_mpjpe_mm", "canonical MPJPE", ".1f"),
           ("root_relative_mpjpe_mm", "root-rel. MPJPE", ".1f"), ("pa_mpjpe_mm", "PA-MPJPE", ".1f"),
           ("root_error_mm", "root err.", ".1f"), ("root_depth_error_mm", "root depth err.", ".1f"),
           ("body_size", "body size", ".3f"), ("accel_mm", "accel mm/f²", ".1f"), ("reproj_px", "2D px", ".1f"),
           ("seconds_per_clip", "s/clip", ".2f")]
_TITLES = {"test": "2D-only test split (stored teacher lifts)", "val": "2D-only val split (stored teacher lifts)",
           "cmu": "Real CMU motion, random cameras",
           "bandai": "Bandai-Namco test split, random cameras"}


def _sweep_table(title: str, fixed: list[str], labels: list[str], rows: list) -> list[str]:
    """Markdown lines of a tuning sweep: ``rows`` of (fixed cells, {label: scores}, chosen),
    one MPJPE column per label ("—" where a row has none)."""
    lines = ["", f"## {title}", "", "| " + " | ".join([*fixed, *labels, "chosen"]) + " |",
             "|" + "---|" * (len(fixed) + len(labels) + 1)]
    for cells, scores, chosen in rows:
        sweep = [f"{scores[k]['mpjpe_mm']:.1f}" if k in scores else "—" for k in labels]
        lines.append("| " + " | ".join([*cells, *sweep, chosen]) + " |")
    return lines


def format_markdown(res: dict) -> str:
    lines = ["# Lifting benchmark", "",
             f"{res['created']}; windows of {res['window']} frames; teacher lifter `{res['teacher_lifter']}`; "
             f"errors in mm (pooled over frames) unless stated; {res['seconds']} s in all.", ""]
    for name, ck in res["checkpoints"].items():
        lines.append(f"- **{name}**: `{ck['path']}` ({ck['supervision']}, {ck['steps']} steps, seed {ck['seed']}, "
                     f"recorded t* {ck['t_star']}, smoothing {ck.get('smooth')})")
    tuned = {n: t for n, t in res.get("tuning", {}).items() if "sweep" in t}
    if tuned:
        values = sorted({int(v) for t in tuned.values() for v in t["sweep"]})
        rows = []
        for n, t in tuned.items():
            teacher = t.get("teacher", {}).get("mpjpe_mm")
            rows.append(([n, str(t["cases"]), "—" if teacher is None else f"{teacher:.1f}"],
                         {f"t*={k}": r for k, r in t["sweep"].items()}, str(t["t_star"])))
        lines += _sweep_table("t* chosen on the val split (MPJPE, mm)", ["prior", "val clips", "teacher"],
                              [f"t*={v}" for v in values], rows)
        smoothed = {n: t for n, t in tuned.items() if "smooth_sweep" in t}
        if smoothed:
            sigmas = sorted({float(v) for t in smoothed.values() for v in t["smooth_sweep"]})
            rows = [([n, str(t["t_star"])], {f"sigma={float(k):g}": r for k, r in t["smooth_sweep"].items()},
                     f"{t['smooth']:g}") for n, t in smoothed.items()]
            lines += _sweep_table("Correction smoothing chosen on the val split at the chosen t* (MPJPE, mm)",
                                  ["prior", "t*"], [f"sigma={v:g}" for v in sigmas], rows)
    for set_name, block in res["sets"].items():
        lines += ["", f"## {_TITLES.get(set_name, set_name)}", ""]
        if "skipped" in block:
            lines.append(f"Skipped: {block['skipped']}")
            continue
        first = next(iter(block.values()))
        lines.append(f"{first['n_cases']} cases, {first['n_frames']} frames.")
        lines += ["", "| lifter | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        for lifter, row in block.items():
            cells = []
            for k, _, fmt in COLUMNS:
                v = row.get(k)
                cells.append("—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:{fmt}}")
            lines.append(f"| {lifter} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    def run(cfg: LiftBenchmarkConfig) -> None:
        res = run_benchmark(cfg)
        print(format_markdown(res))
        print(f"results: {cfg.out}/results.json")

    return run_main(LiftBenchmarkConfig, "python -m vmdm.eval --lift-benchmark", __doc__.split("\n\n")[0], run, argv,
                    errors=(ConfigError, FileNotFoundError, ValueError))
