"""Writing the built-in corpus in the HumanML3D directory format.

Besides the HumanML3D files the corpus root holds ``meta.jsonl`` (one JSON
object per clip, sorted by id: ``id``, ``split``, ``plan``, ``families``,
``composition``, ``params``, ``subject_scale``, ``length``, ``captions``) and
``families.json`` (family -> group), which other tools use to hold out whole
action families (e.g. the teacher lifter's training split).

Everything is a function of ``seed``: the plan of every clip and its split
are drawn up front, and clip ``i`` is generated from its own generator
``default_rng([seed, i])``, so any number of worker processes gives
byte-identical files.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmdm.cli import REQUIRED, field
from vmdm.data.formats.humanml3d import write_clip, write_ids
from vmdm.data.build.numerics import round_significand
from vmdm.motion.representation import (Normalizer, canonicalize, encode, feature_convention_record, feature_dim,
                                      group_std)
from vmdm.motion.skeleton import SMPL22
from vmdm.data.build.synth.clip import MAX_FRAMES, generate_clip
from vmdm.data.build.synth.families import FAMILIES, family_groups

DEFAULT_NUM_CLIPS = 3000
SPLIT_FRACTIONS = {"train": 0.80, "val": 0.05, "test": 0.15}
# Share of single actions, two- and three-action sequences, and gait + gesture.
DEFAULT_MIX = {"single": 0.70, "sequence2": 0.14, "sequence3": 0.06, "simultaneous": 0.10}


def plan_corpus(num_clips: int, seed: int, mix: dict | None = None) -> list[str]:
    """The plan of every clip (see ``clip.parse_plan``), balanced over families."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    rng = np.random.default_rng([seed, 0x5EED])
    names = sorted(FAMILIES)
    composable = [n for n in names if FAMILIES[n].composable]
    carriers = [n for n in names if FAMILIES[n].carrier]
    overlays = [n for n in names if FAMILIES[n].overlay]
    kinds = list(mix)
    p = np.array([mix[k] for k in kinds], dtype=np.float64)
    choice = rng.choice(len(kinds), size=num_clips, p=p / p.sum())
    order = list(rng.permutation(names))
    plans, k_single = [], 0
    for c in choice:
        kind = kinds[c]
        if kind == "single":
            # Round-robin over a shuffled family order keeps families balanced.
            if k_single % len(order) == 0 and k_single:
                order = list(rng.permutation(names))
            plans.append(order[k_single % len(order)])
            k_single += 1
        elif kind.startswith("sequence"):
            n = int(kind[-1])
            while True:
                seq = [str(rng.choice(composable))]
                while len(seq) < n:
                    nxt = str(rng.choice(composable))
                    if nxt != seq[-1]:
                        seq.append(nxt)
                if sum(FAMILIES[f].min_frames for f in seq) <= MAX_FRAMES:
                    break
            plans.append(">".join(seq))
        elif kind == "simultaneous":
            plans.append(f"{rng.choice(carriers)}+{rng.choice(overlays)}")
        else:
            raise ValueError(f"mix: unknown kind {kind!r}; expected {sorted(DEFAULT_MIX)}")
    return plans


def split_plans(plans: list[str], seed: int, fractions: dict | None = None) -> list[str]:
    """Split name of every clip, stratified by the clip's first family."""
    fractions = SPLIT_FRACTIONS if fractions is None else fractions
    rng = np.random.default_rng([seed, 0x5B17])
    by_family: dict[str, list[int]] = {}
    for i, p in enumerate(plans):
        by_family.setdefault(p.replace("+", ">").split(">")[0], []).append(i)
    out = ["train"] * len(plans)
    for fam in sorted(by_family):
        idx = [by_family[fam][k] for k in rng.permutation(len(by_family[fam]))]
        n = len(idx)
        n_val = int(round(n * fractions["val"]))
        n_test = int(round(n * fractions["test"]))
        for k, i in enumerate(idx):
            out[i] = "val" if k < n_val else "test" if k < n_val + n_test else "train"
    return out


def clip_id(i: int) -> str:
    return f"{i:06d}"


def _round_floats(obj, digits: int = 8):
    """Floats of a JSON record to ``digits`` significant digits: a last-bit difference of
    the math that drew a parameter must not change the record's text."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round_floats(v, digits) for v in obj]
    return obj


def _work(args):
    out_dir, seed, items = args
    import torch

    torch.set_num_threads(1)
    D = feature_dim(SMPL22)
    n, s1, s2 = 0, np.zeros(D), np.zeros(D)
    metas = []
    for i, plan, split in items:
        rng = np.random.default_rng([seed, i])
        joints, captions, meta = generate_clip(plan, rng)
        canon, _ = canonicalize(joints.astype(np.float64), SMPL22)
        # Rounded so that the last-bit differences of numpy's math on other CPUs never
        # reach the files (see vmdm.data.build.numerics); features come from the stored joints.
        canon = round_significand(canon)
        feats = round_significand(encode(canon.astype(np.float64), SMPL22))
        write_clip(out_dir, clip_id(i), canon, captions, skeleton=SMPL22, features=feats)
        if split == "train":
            f64 = feats.astype(np.float64)
            n += len(f64)
            s1 += f64.sum(0)
            s2 += (f64 * f64).sum(0)
        metas.append({"id": clip_id(i), "split": split, **_round_floats(meta), "captions": captions})
    return metas, n, s1, s2


def generate_corpus(
    out_dir,
    num_clips: int = DEFAULT_NUM_CLIPS,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    mix: dict | None = None,
) -> Path:
    """Generate the corpus into ``out_dir`` (created) and return its path.

    ``workers`` processes (default: up to 2, the CPU count) generate
    interleaved chunks of clips; the output does not depend on it.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips: must be >= 1, got {num_clips}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_corpus(num_clips, seed, mix)
    splits = split_plans(plans, seed)
    items = [(i, plans[i], splits[i]) for i in range(num_clips)]
    chunk = 25
    jobs = [(str(out), seed, items[k : k + chunk]) for k in range(0, num_clips, chunk)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    from tqdm import tqdm

    bar = tqdm(total=num_clips, desc="synth corpus", unit="clip", disable=not progress)
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(_work(job))
            bar.update(len(job[2]))
    else:
        # spawn: never fork a process that may already run torch threads.
        with mp.get_context("spawn").Pool(workers) as pool:
            for res in pool.imap(_work, jobs):
                results.append(res)
                bar.update(len(res[0]))
    bar.close()
    metas = sorted((m for r in results for m in r[0]), key=lambda m: m["id"])
    n = sum(r[1] for r in results)
    if n == 0:
        raise ValueError(f"num_clips={num_clips} is too small: no training clip to compute Mean/Std from")
    s1 = sum(r[2] for r in results)
    s2 = sum(r[3] for r in results)
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    Normalizer(*group_std(mean, std, SMPL22)).save(out)
    for split in ("train", "val", "test"):
        write_ids(out, split, [m["id"] for m in metas if m["split"] == split])
    (out / "features.json").write_text(json.dumps(feature_convention_record(), indent=1) + "\n")
    with open(out / "meta.jsonl", "w") as f:
        for m in metas:
            f.write(json.dumps(m, sort_keys=True) + "\n")
    groups = family_groups()
    (out / "families.json").write_text(
        json.dumps({"groups": groups, "family_group": {f: g for g, fs in groups.items() for f in fs}}, indent=1,
                   sort_keys=True) + "\n"
    )
    return out


def read_meta(root) -> list[dict]:
    """The ``meta.jsonl`` records of a generated corpus."""
    path = Path(root) / "meta.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (not a corpus written by generate_corpus?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class SynthConfig:
    """``python -m vmdm.data.build.synth``: one procedural corpus."""

    out: str = field(REQUIRED, "output directory (HumanML3D format)")
    num_clips: int = field(DEFAULT_NUM_CLIPS, "clips to generate")
    seed: int = field(0, "random seed (same seed and clip count: the same corpus, whatever --workers)")
    workers: int | None = field(None, "processes (default: up to 2)")
    progress: bool = field(True, "show a progress bar")


def synthesize(cfg: SynthConfig) -> Path:
    """:func:`generate_corpus` as ``cfg`` says; returns the corpus folder."""
    return generate_corpus(cfg.out, cfg.num_clips, cfg.seed, cfg.workers, progress=cfg.progress)
