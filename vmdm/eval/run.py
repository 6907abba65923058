"""Evaluate a trained checkpoint: ``python -m vmdm.eval --checkpoint CKPT [--evaluator EV] [--quick]``.

Generation metrics on the TEST split's captions (FID, R-precision, MM-Dist, Diversity,
MultiModality — the HumanML3D protocol, repeated, mean ± 95% interval — plus foot
skating, floor penetration and jitter), lifting metrics on the test split's 2D keypoints
(the teacher lifter vs the checkpoint's prior used as a lifter) and on real CMU motion
capture filmed by random cameras. Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vmdm.cli import field, run_main
from vmdm.data.dataset import MotionDataset
from vmdm.data.build.fingerprint import dataset_hash, short, warn_mismatch
from vmdm.motion.representation import decode
from vmdm.eval.evaluator import UNIT_LENGTH, Evaluator, load_evaluator
from vmdm.eval.geometry import geometric_metrics
from vmdm.eval.metrics import diversity, fid, matching_distance, mean_ci, multimodality, r_precision
from vmdm.eval.train_evaluator import pad_features as _pad

__all__ = ["EvalConfig", "Settings", "TestSet", "load_test_set", "generation_metrics", "lifting_metrics",
           "ensure_evaluator", "evaluate", "format_markdown", "machine_description", "main"]

log = logging.getLogger("vmdm.eval")


@dataclass
class EvalConfig:
    checkpoint: str | None = field(None, "model checkpoint to evaluate (required)")
    evaluator: str | None = field(None, "evaluator checkpoint (default: evaluator.pt beside the dataset; trained "
                                        "there on the train split if missing)")
    quick: bool = field(False, "small settings for a CPU smoke run: 3 repeats, 10 sampling steps, fewer prompts "
                               "and lifting cases")
    data: str | None = field(None, "dataset root (default: the one the checkpoint was trained on)")
    split: str = field("test", "split to evaluate on: test (reporting) or val (model selection)",
                       choices=["test", "val"])
    out: str | None = field(None, "output folder (default: <checkpoint folder>/eval)")
    repeats: int | None = field(None, "repetitions of the generation metrics (default 20; quick 3)")
    mm_prompts: int | None = field(None, "MultiModality prompts (default 100; quick 10)")
    mm_generations: int | None = field(None, "generations per MultiModality prompt (default 10; quick 4)")
    diversity_pairs: int = field(300, "pairs for Diversity")
    rprecision_batch: int = field(32, "R-precision batch (1 true + batch-1 other captions)")
    guidance: float = field(2.5, "classifier-free guidance scale")
    sampler: str = field("ddim", "sampler", choices=["ddim", "ddpm"])
    sample_steps: int | None = field(None, "DDIM steps (default: all diffusion steps; quick 10)")
    batch_size: int = field(64, "generation batch size")
    lifting: bool = field(True, "lifting metrics on the test split's 2D keypoints")
    lifting_cases: int | None = field(None, "test clips to lift (default all; quick 6)")
    lift_init: str = field("teacher", "the prior's lifts start from each case's teacher lift diffused to the "
                                      "checkpoint's t* (as vmdm.sample --lift does) or from noise",
                           choices=["teacher", "noise"])
    lift_steps: int | None = field(None, "DDIM steps of the prior's lifts from noise (default: the lifter's own, 50 "
                                         "for 2D-supervised checkpoints and 10 for the others; quick 10)")
    lift_text: bool = field(False, "give the prior-as-lifter the clip's caption (default: unconditional, like "
                                   "the teacher)")
    cmu: bool = field(True, "lifting metrics on the real CMU clips (skipped when the data are absent)")
    cmu_dir: str | None = field(None, "cmu_humanml folder (default $VMDM_CMU_DIR or shared/data/cmu_humanml)")
    cmu_window: int = field(120, "CMU window length, frames at 20 fps")
    cmu_windows_per_clip: int | None = field(None, "windows per CMU clip (default all; quick 1)")
    cmu_views: int = field(1, "random cameras per CMU window")
    seed: int = field(0, "random seed (captions, crops, pairs, sampling noise)")
    device: str | None = field(None, "device (default cuda if available)")
    threads: int | None = field(None, "torch CPU threads")
    progress: bool = field(True, "progress bars")


@dataclass
class Settings:
    """Resolved numeric settings of one evaluation (what results.json records)."""

    repeats: int
    mm_prompts: int
    mm_generations: int
    diversity_pairs: int
    rprecision_batch: int
    guidance: float
    sampler: str
    sample_steps: int | None
    batch_size: int
    lifting_cases: int | None
    lift_init: str
    lift_steps: int | None
    lift_text: bool
    cmu_window: int
    cmu_windows_per_clip: int | None
    cmu_views: int
    seed: int

    @classmethod
    def from_config(cls, c: EvalConfig) -> "Settings":
        q = c.quick
        pick = lambda v, full, quick: v if v is not None else (quick if q else full)  # noqa: E731
        return cls(repeats=pick(c.repeats, 20, 3), mm_prompts=pick(c.mm_prompts, 100, 10),
                   mm_generations=pick(c.mm_generations, 10, 4), diversity_pairs=c.diversity_pairs,
                   rprecision_batch=c.rprecision_batch, guidance=c.guidance, sampler=c.sampler,
                   sample_steps=pick(c.sample_steps, None, 10), batch_size=c.batch_size,
                   lifting_cases=pick(c.lifting_cases, None, 6), lift_init=c.lift_init,
                   lift_steps=pick(c.lift_steps, None, 10),
                   lift_text=c.lift_text, cmu_window=c.cmu_window,
                   cmu_windows_per_clip=pick(c.cmu_windows_per_clip, None, 1), cmu_views=c.cmu_views, seed=c.seed)


# --------------------------------------------------------------------------- test data


@dataclass
class TestSet:
    ids: list[str]
    features: list[np.ndarray]  # raw ground-truth features [F_i, D]
    captions: list[list[str]]
    root: str

    def __len__(self) -> int:
        return len(self.ids)


def load_test_set(root: str | Path, split: str = "test") -> TestSet:
    """Ground-truth motions and captions of ``split`` (the evaluation reads 3D ground truth)."""
    ds = MotionDataset(str(root), split, mode="3d", max_frames=10**9, unit_length=1, random_crop=False, seed=0)
    ids, feats, caps = [], [], []
    for i in range(len(ds)):
        item = ds[i]
        if item["length"] < UNIT_LENGTH:
            continue
        ids.append(item["id"])
        feats.append(np.asarray(ds.normalizer.denormalize(item["motion"]), dtype=np.float32))
        caps.append(ds.captions(item["id"]))
    if len(ids) < 2:
        raise ValueError(f"{root}: the {split} split has {len(ids)} usable clips; need at least 2")
    return TestSet(ids, feats, caps, str(root))


def _crop_len(n: int, max_len: int) -> int:
    return min(n, max_len) // UNIT_LENGTH * UNIT_LENGTH


# --------------------------------------------------------------------------- generation


def _geo(features: torch.Tensor, lengths, skeleton) -> dict[str, float]:
    return geometric_metrics(decode(features.float(), skeleton), lengths, skeleton)


def reencode(features: torch.Tensor, lengths: torch.Tensor, skeleton) -> tuple[torch.Tensor, torch.Tensor]:
    """``encode(decode(features))`` per clip (its own length, no padding read): every channel
    recomputed from the joint positions alone, so rotations, velocities and contacts are
    those the positions imply. Returns the features ``[B, F - 1, D]`` (zero past each
    clip's end) and their lengths (one fewer)."""
    from vmdm.motion.representation import encode

    joints = decode(features.float(), skeleton).double()
    return encode(joints, skeleton, lengths).float(), (lengths - 1).clamp_min(1)


def generation_metrics(lm, ev: Evaluator, test: TestSet, s: Settings, progress: bool = False) -> dict:
    """Metrics of generations for the test captions, and of the real test motions, per repeat
    and as mean ± 95% CI: ``{"model": {metric: {...}}, "real": {...}, "per_repeat": [...]}``."""
    from tqdm import tqdm

    sk = lm.skeleton
    # Matched lengths: generate (and cut the real windows) at most at the training length.
    max_len = min(lm.train_frames, ev.cfg.max_frames)
    N = len(test)
    lengths = torch.tensor([_crop_len(len(f), max_len) for f in test.features])
    ref_x, _ = _pad([f[:int(L)] for f, L in zip(test.features, lengths)])
    ref_emb = ev.embed_motions(ref_x, lengths)
    # FID on positions only: what a model learnt of the motion itself, whatever it learnt of
    # the redundant channels (which the 2D-supervised model learns from ray targets).
    pos_x, pos_len = reencode(ref_x, lengths, sk)
    ref_pos_emb = ev.embed_motions(pos_x, pos_len)
    real_geo = _geo(ref_x, lengths, sk)
    per_repeat = []
    bar = tqdm(range(s.repeats), desc="generation metrics", disable=not progress, dynamic_ncols=True)
    for r in bar:
        rng = np.random.default_rng([s.seed, r])
        caps = [c[int(rng.integers(len(c)))] for c in test.captions]
        text_emb = ev.embed_texts(caps)
        gen = lm.generate(caps, lengths, guidance=s.guidance, sampler=s.sampler, sample_steps=s.sample_steps,
                          seed=s.seed * 100_003 + r, batch_size=s.batch_size)
        gen_emb = ev.embed_motions(gen["features"], lengths)
        # The real rows: other random windows of the same lengths give FID's noise floor.
        starts = [int(rng.integers(0, len(f) - int(L) + 1)) for f, L in zip(test.features, lengths)]
        real_x, _ = _pad([f[a:a + int(L)] for f, a, L in zip(test.features, starts, lengths)])
        real_emb = ev.embed_motions(real_x, lengths)
        pos_emb = {"model": ev.embed_motions(*reencode(gen["features"], lengths, sk)),
                   "real": ev.embed_motions(*reencode(real_x, lengths, sk))}
        row = {}
        for who, emb in (("model", gen_emb), ("real", real_emb)):
            top, bs = r_precision(emb, text_emb, 3, s.rprecision_batch, np.random.default_rng([s.seed, r, 1]))
            row[who] = {"fid": fid(ref_emb, emb), "fid_positions": fid(ref_pos_emb, pos_emb[who]),
                        "top1": top[0], "top2": top[1], "top3": top[2],
                        "mm_dist": matching_distance(emb, text_emb),
                        "diversity": diversity(emb, s.diversity_pairs, np.random.default_rng([s.seed, r, 2]))}
        row["model"].update(geometric_metrics(gen["joints"], lengths, sk))
        row["real"].update(real_geo)
        # MultiModality: several generations of the same prompts.
        P = min(s.mm_prompts, N)
        pick = rng.choice(N, P, replace=False)
        mm_caps = [caps[i] for i in pick for _ in range(s.mm_generations)]
        mm_len = torch.tensor([int(lengths[i]) for i in pick for _ in range(s.mm_generations)])
        mm = lm.generate(mm_caps, mm_len, guidance=s.guidance, sampler=s.sampler, sample_steps=s.sample_steps,
                         seed=s.seed * 100_003 + r + 50_000, batch_size=s.batch_size)
        mm_emb = ev.embed_motions(mm["features"], mm_len).reshape(P, s.mm_generations, -1)
        row["model"]["multimodality"] = multimodality(mm_emb, 10, np.random.default_rng([s.seed, r, 3]))
        row["rprecision_batch"] = bs
        per_repeat.append(row)
        bar.set_postfix(fid=f"{row['model']['fid']:.3f}", top3=f"{row['model']['top3']:.2f}")
    agg = {who: {k: mean_ci([row[who][k] for row in per_repeat]).as_dict() for k in per_repeat[0][who]}
           for who in ("model", "real")}
    return {**agg, "per_repeat": per_repeat, "n_test": N, "rprecision_batch": per_repeat[0]["rprecision_batch"],
            "max_frames": max_len}


# --------------------------------------------------------------------------- lifting


def lifter_path_for(data_root: str | Path) -> Path | None:
    root = Path(data_root)
    meta = root / "vmdm_2d.json"
    if meta.is_file():
        p = json.loads(meta.read_text()).get("lifter")
        if p and Path(p).is_file():
            return Path(p)
    cand = root.parent / "lifter.pt"
    return cand if cand.is_file() else None


def lifting_metrics(lm, cases, teacher, s: Settings, progress: bool = False, desc: str = "lifting") -> dict:
    """Teacher vs prior-as-lifter on ``cases`` (``teacher``: a lifter or None to skip it).
    With ``s.lift_init == "teacher"`` the prior starts from the teacher's lift of each case
    (run once and shared with the teacher row); without a teacher it lifts from noise, and
    the row's ``init`` says which."""
    from vmdm.eval.lifting_eval import prior_lifter, score_lifters, with_teacher
    from vmdm.inference.lifting import default_t_star

    lifters = {}
    if teacher is not None:
        with_teacher(cases, teacher)
        lifters["teacher"] = lambda case, i: case.teacher
    init = s.lift_init if all(c.teacher is not None for c in cases) else "noise"
    t_star = default_t_star(lm) if init == "teacher" else None
    lifters["prior"] = prior_lifter(lm, init=init, t_star=t_star, sample_steps=s.lift_steps, seed=s.seed,
                                    use_text=s.lift_text)
    out = score_lifters(cases, lifters, progress=progress, desc=desc)
    out["prior"].update(init=init, t_star=t_star)
    return out


# --------------------------------------------------------------------------- evaluator


def ensure_evaluator(path: str | None, data_root: str | Path, quick: bool, progress: bool) -> Path:
    """The evaluator checkpoint to use; trains one on the TRAIN split when none exists yet."""
    from vmdm.eval.train_evaluator import EvaluatorTrainConfig, default_evaluator_path, train_evaluator

    p = Path(path) if path else default_evaluator_path(data_root)
    if p.is_file():
        return p
    if path:
        raise FileNotFoundError(f"evaluator {p} does not exist (train one with python -m vmdm.eval.train_evaluator)")
    log.info("no evaluator at %s: training one on the train split of %s", p, data_root)
    cfg = EvaluatorTrainConfig(data=str(data_root), out=str(p), progress=progress,
                               **(dict(steps=600) if quick else {}))
    return train_evaluator(cfg)


def _check_disjoint(meta: dict, test: TestSet, data_root: str | Path) -> None:
    """Refuse to score with an evaluator that learnt from any of the test motions."""
    tr = meta.get("train_split", {})
    if tr.get("split") != "train":
        raise ValueError(f"evaluator was trained on split {tr.get('split')!r}, not 'train'")
    same_data = Path(tr.get("data_root", "")).resolve() == Path(data_root).resolve()
    overlap = set(tr.get("ids", [])) & set(test.ids)
    if same_data and overlap:
        raise ValueError(f"evaluator's training clips overlap the evaluated split ({sorted(overlap)[:5]}...)")


def machine_description(device: torch.device | str | None = None) -> str:
    """Host, the device that ran (default: the first GPU if any, else the CPU), torch and threads."""
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available()
                                                                          else "cpu")
    dev = (f"GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda"
           else f"CPU, {os.cpu_count()} cores ({platform.processor() or platform.machine()})")
    return f"{platform.node()}: {dev}, torch {torch.__version__}, {torch.get_num_threads()} torch threads"


# --------------------------------------------------------------------------- whole run


def evaluate(cfg: EvalConfig, *, evaluator: Evaluator | None = None, evaluator_meta: dict | None = None,
             test: TestSet | None = None, test_cases=None, cmu_cases=None) -> dict:
    """Run every evaluation of ``cfg``; returns the results dict (also written to ``cfg.out``
    unless it is the empty string). Pre-loaded pieces may be passed to share them between runs."""
    from vmdm.inference.loading import load_model

    if not cfg.checkpoint:
        raise ValueError("--checkpoint is required")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_all = time.time()
    s = Settings.from_config(cfg)
    device = torch.device(cfg.device) if cfg.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lm = load_model(cfg.checkpoint, device)
    data_root = cfg.data or lm_data_root(cfg.checkpoint)
    timings = {}
    if evaluator is None:
        ev_path = ensure_evaluator(cfg.evaluator, data_root, cfg.quick, cfg.progress)
        evaluator, evaluator_meta = load_evaluator(ev_path, device)
        evaluator_meta["path"] = str(ev_path)
    t0 = time.time()
    test = test if test is not None else load_test_set(data_root, cfg.split)
    _check_disjoint(evaluator_meta, test, data_root)
    data_hash = dataset_hash(data_root)
    if lm.data_hash is not None and cfg.data is None:  # its own data root: changed since training?
        warn_mismatch("the evaluated data's", data_hash, lm.data_hash, f"{cfg.checkpoint} (the data it was trained on)")
    _check_extending(cfg, data_hash, evaluator_meta["train_split"]["hash"])
    res: dict = {
        "checkpoint": str(cfg.checkpoint),
        "supervision": lm.config.get("supervision"),
        "train_config": {k: lm.config.get(k) for k in ("supervision", "model", "steps", "batch_size", "depth_weight",
                                                       "lambda_pos", "lambda_vel", "lambda_align", "align_smooth",
                                                       "align_outlier", "text_encoder", "seed")},
        "data_root": str(data_root),
        "data_hash": data_hash,
        "model_data_hash": lm.data_hash,
        "split": cfg.split,
        "evaluator": {"path": evaluator_meta.get("path"), "hash": evaluator_meta["train_split"]["hash"],
                      "heldout": evaluator_meta.get("metrics", {}).get("heldout")},
        "settings": dataclasses.asdict(s),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_description(device),
    }
    res["generation"] = generation_metrics(lm, evaluator, test, s, cfg.progress)
    timings["generation_s"] = round(time.time() - t0, 1)
    if cfg.lifting:
        t0 = time.time()
        from vmdm.eval.lifting_eval import stored_teacher, split_cases

        cases = test_cases if test_cases is not None else split_cases(
            data_root, max_frames=lm.train_frames, limit=s.lifting_cases, split=cfg.split)
        if cases:
            res["lifting_test"] = lifting_metrics(lm, cases, stored_teacher, s, cfg.progress, "lifting (test)")
        else:
            res["lifting_test"] = {"skipped": f"{data_root} has no 2D keypoints"}
        timings["lifting_test_s"] = round(time.time() - t0, 1)
    if cfg.cmu:
        t0 = time.time()
        res["lifting_cmu"] = _cmu(lm, cfg, s, data_root, cmu_cases)
        timings["lifting_cmu_s"] = round(time.time() - t0, 1)
    timings["total_s"] = round(time.time() - t_all, 1)
    res["timings"] = timings
    if cfg.out != "":
        out = Path(cfg.out) if cfg.out else Path(cfg.checkpoint).parent / "eval"
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(_jsonable(res), indent=1) + "\n")
        (out / "results.md").write_text(format_markdown(res))
        res["out"] = str(out)
    return res


def _cmu(lm, cfg: EvalConfig, s: Settings, data_root, cases) -> dict:
    from vmdm.eval.lifting_eval import cmu_cases, teacher_lifter

    if cases is None:
        try:
            cases = cmu_cases(cfg.cmu_dir, window=min(s.cmu_window, lm.train_frames),
                              max_windows_per_clip=s.cmu_windows_per_clip, views=s.cmu_views, seed=s.seed)
        except FileNotFoundError as e:
            return {"skipped": str(e)}
    lp = lifter_path_for(data_root)
    teacher = teacher_lifter(lp) if lp is not None else None
    out = lifting_metrics(lm, cases, teacher, s, cfg.progress, "lifting (CMU)")
    if teacher is None:
        out["teacher"] = {"skipped": f"no teacher lifter found for {data_root}"}
    return out


def _check_extending(cfg, data_hash: str, evaluator_hash: str) -> None:
    """Warn loudly when the results file about to be replaced was made with other data or
    another evaluator: a table that mixes the two compares unlike things."""
    if cfg.out == "":
        return
    old = (Path(cfg.out) if cfg.out else Path(cfg.checkpoint).parent / "eval") / "results.json"
    try:
        prev = json.loads(old.read_text())
    except (OSError, ValueError):
        return
    warn_mismatch("the data's", data_hash, prev.get("data_hash"), str(old))
    warn_mismatch("the evaluator's train split", evaluator_hash, (prev.get("evaluator") or {}).get("hash"), str(old))


def lm_data_root(checkpoint: str | Path) -> str:
    from vmdm.training.checkpoint import load_checkpoint

    root = load_checkpoint(checkpoint).get("data_root")
    if not root:
        raise ValueError(f"{checkpoint}: records no data_root; pass --data")
    return root


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


# --------------------------------------------------------------------------- report

GEN_COLUMNS = [("fid", "FID ↓", ".3f"), ("fid_positions", "FID (positions) ↓", ".3f"), ("top1", "R@1 ↑", ".3f"), ("top2", "R@2 ↑", ".3f"), ("top3", "R@3 ↑", ".3f"),
               ("mm_dist", "MM-Dist ↓", ".3f"), ("diversity", "Diversity →", ".3f"),
               ("multimodality", "MModality ↑", ".3f"), ("foot_skating", "Foot skate ↓", ".3f"),
               ("penetration_cm", "Penetration cm ↓", ".2f"), ("jitter", "Jitter m/s² ↓", ".2f")]
LIFT_COLUMNS = [("mpjpe_mm", "MPJPE mm", ".1f"), ("pa_mpjpe_mm", "PA-MPJPE mm", ".1f"), ("accel_mm", "Accel mm/f²", ".1f"),
                ("reproj_px", "2D reproj px", ".1f"), ("n_cases", "cases", "d"), ("n_frames", "frames", "d")]


def _cell(v, fmt):
    if isinstance(v, dict) and "mean" in v:
        if v["mean"] is None or not math.isfinite(v["mean"]):
            return "—"
        return f"{v['mean']:{fmt}} ± {v['ci95']:{fmt}}"
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:{fmt}}"


def format_markdown(res: dict) -> str:
    g = res["generation"]
    s = res["settings"]
    lift_steps = f"{s['lift_steps']} DDIM steps" if s.get("lift_steps") else "the lifter's default steps"
    lines = [f"# Evaluation of `{res['checkpoint']}` ({res.get('supervision')})", "",
             f"{res['created']} on {res['machine']}. Split {res.get('split', 'test')}: {g['n_test']} clips, {s['repeats']} repeats "
             f"(mean ± 95% CI); R-precision in batches of {g['rprecision_batch']}; sampler {s['sampler']}, "
             f"{s['sample_steps'] or 'all'} steps, guidance {s['guidance']}; lifts with {lift_steps}; motions "
             f"(generated and real) of at most {g.get('max_frames', '?')} frames, the training length.", "",
             "## Generation", "",
             "| | " + " | ".join(c[1] for c in GEN_COLUMNS) + " |",
             "|---|" + "---|" * len(GEN_COLUMNS)]
    for who, label in (("real", f"Real ({res.get('split', 'test')})"), ("model", "Model")):
        lines.append(f"| {label} | " + " | ".join(_cell(g[who].get(k), f) for k, _, f in GEN_COLUMNS) + " |")
    for key, title in (("lifting_test", f"Lifting: {res.get('split', 'test')} split 2D keypoints"),
                       ("lifting_cmu", "Lifting: real CMU motion, random cameras")):
        if key not in res:
            continue
        lines += ["", f"## {title}", ""]
        block = res[key]
        if "skipped" in block:
            lines.append(f"Skipped: {block['skipped']}")
            continue
        lines += ["| lifter | " + " | ".join(c[1] for c in LIFT_COLUMNS) + " |", "|---|" + "---|" * len(LIFT_COLUMNS)]
        for name, row in block.items():
            if "skipped" in row:
                lines.append(f"| {name} | skipped: {row['skipped']} |")
                continue
            if "init" in row:  # the prior: how its lifts started
                name += f" (from {row['init']}" + (f", t*={row['t_star']})" if row["init"] == "teacher" else ")")
            lines.append(f"| {name} | " + " | ".join(_cell(row.get(k), f) for k, _, f in LIFT_COLUMNS) + " |")
    ev = res["evaluator"]
    lines += ["", f"Data `{res.get('data_root')}` (hash {short(res.get('data_hash'))}; the model was trained on data "
              f"with hash {short(res.get('model_data_hash'))}). Evaluator `{ev['path']}` (train split hash "
              f"{ev['hash'][:12]}); timings {res.get('timings')}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    def run(cfg: EvalConfig) -> None:
        res = evaluate(cfg)
        print(format_markdown(res))
        print(f"results: {res['out']}/results.json")

    return run_main(EvalConfig, "python -m vmdm.eval", __doc__.split("\n\n")[0], run, argv, required=("checkpoint",))


if __name__ == "__main__":
    sys.exit(main())
