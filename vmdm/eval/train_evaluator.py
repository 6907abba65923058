"""Train the text–motion evaluator: ``python -m vmdm.eval.train_evaluator``.

The evaluator learns from the ground-truth 3D motions and captions of the dataset's
TRAIN split only — never val or test, which is what it later scores models on. A small
part of the train split (whole clips, chosen by a seeded hash) is held out to report
how well it matches motions to captions it has not seen. With no ``--data`` it uses the
built-in dataset (built into the cache if missing) and writes ``evaluator.pt`` next to it,
where ``python -m vmdm.eval`` looks by default.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vmdm.training.schedule import Budget
from vmdm.cli import field, run_main
from vmdm.data.dataset import GTStore, MotionDataset
from vmdm.motion.representation import Normalizer, compute_mean_std
from vmdm.motion.skeleton import get_skeleton
from vmdm.eval.evaluator import (
    UNIT_LENGTH,
    Evaluator,
    EvaluatorConfig,
    save_evaluator,
    split_hash,
)
from vmdm.eval.metrics import matching_distance, r_precision
from vmdm.model.text import build_text_encoder

__all__ = ["EvaluatorTrainConfig", "TrainSplit", "load_train_split", "train_evaluator", "heldout_metrics",
           "default_evaluator_path", "main"]

log = logging.getLogger("vmdm.eval.train_evaluator")

# The one split the evaluator may learn from.
TRAIN_SPLIT = "train"


@dataclass
class EvaluatorTrainConfig:
    data: str | None = field(None, "dataset root (2D-only dataset with gt/, or a HumanML3D folder); default: the "
                                   "built-in dataset, built into the cache if missing")
    cache_dir: str | None = field(None, "cache for the built-in data (default $VMDM_CACHE or ~/.cache/vmdm)")
    quick_data: bool = field(False, "use the small built-in dataset")
    out: str | None = field(None, "checkpoint path (default: evaluator.pt beside the dataset folder)")
    text_encoder: str = field("minilm", "frozen sentence encoder under the text head: minilm or bow (tests)",
                              choices=["minilm", "clip", "bow"])
    embed_dim: int = field(512, "shared embedding size")
    movement_dim: int = field(256, "movement (conv) encoder channels")
    gru_dim: int = field(256, "motion GRU hidden size per direction")
    steps: int = field(1500, "optimisation steps (about 5 CPU-minutes on the built-in data)")
    time_budget: float | None = field(None, "also stop after this many wall-clock seconds (none: train all steps; "
                                            "a budget makes the result depend on machine load)")
    batch_size: int = field(64, "clips per batch")
    lr: float = field(1e-3, "AdamW peak learning rate (warm-up then cosine decay)")
    weight_decay: float = field(1e-4, "AdamW weight decay")
    temperature: float = field(0.1, "InfoNCE temperature on cosine similarities")
    max_frames: int = field(196, "longest motion crop in frames (HumanML3D's 196)")
    heldout_frac: float = field(0.1, "fraction of TRAIN clips held out to measure retrieval (never val/test)")
    seed: int = field(0, "random seed")
    threads: int | None = field(1, "torch CPU threads; a fixed count makes the evaluator the same on every machine "
                                   "(float sums split over other thread counts round differently); 0: torch's choice")
    progress: bool = field(True, "show a progress bar")


@dataclass
class TrainSplit:
    """Ground-truth motions of the train split: raw features, all captions per clip."""

    ids: list[str]
    features: list[np.ndarray]  # raw (denormalised) [F_i, D]
    captions: list[list[str]]
    data_root: str


def _open_split(root: str, split: str, gt_store: GTStore | None) -> MotionDataset:
    if split != TRAIN_SPLIT:
        # The evaluator must never learn from the motions it will be used to score.
        raise PermissionError(f"the evaluator trains on the {TRAIN_SPLIT!r} split only, not {split!r}")
    # Whole clips: no crop, unit 1; cropping happens per batch below.
    return MotionDataset(root, split, mode="3d", max_frames=10**9, unit_length=1, random_crop=False,
                         gt_store=gt_store, seed=0)


def load_train_split(root: str | Path, gt_store: GTStore | None = None) -> TrainSplit:
    """Read the TRAIN split's ground-truth features and captions from ``root``."""
    ds = _open_split(str(root), TRAIN_SPLIT, gt_store)
    ids, feats, caps = [], [], []
    for i in range(len(ds)):
        item = ds[i]
        ids.append(item["id"])
        feats.append(np.asarray(ds.normalizer.denormalize(item["motion"]), dtype=np.float32))
        caps.append(ds.captions(item["id"]))
    if not ids:
        raise ValueError(f"{root}: the {TRAIN_SPLIT} split is empty")
    return TrainSplit(ids, feats, caps, str(root))


def _partition(ids: list[str], frac: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (fit, held-out): held-out clips are the ``frac`` with the smallest seeded hash."""
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"heldout_frac: expected 0 <= frac < 1, got {frac}")
    keys = [int.from_bytes(hashlib.blake2b(f"{seed}:{c}".encode(), digest_size=8).digest(), "little")
            for c in ids]
    order = np.argsort(keys, kind="stable")
    n_held = int(round(frac * len(ids)))
    held = sorted(order[:n_held].tolist())
    fit = sorted(order[n_held:].tolist())
    return fit, held


def _crop(f: np.ndarray, rng: np.random.Generator, max_frames: int) -> np.ndarray:
    """A random window of whole units, as Guo et al.'s loader draws it: a third of the time
    one unit shorter than the longest that fits, at a random start."""
    n = len(f)
    units = min(n, max_frames) // UNIT_LENGTH
    if units > 1 and rng.random() < 1 / 3:
        units -= 1
    L = units * UNIT_LENGTH
    s = int(rng.integers(0, n - L + 1))
    return f[s:s + L]


def pad_features(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips ``[F_i, D]`` -> zero-padded ``[N, max F, D]`` and lengths ``[N]``."""
    L = torch.tensor([len(f) for f in feats])
    out = np.zeros((len(feats), int(L.max()), feats[0].shape[1]), np.float32)
    for k, f in enumerate(feats):
        out[k, :len(f)] = f
    return torch.from_numpy(out), L


@torch.no_grad()
def heldout_metrics(model: Evaluator, split: TrainSplit, idx: list[int], seed: int = 0, draws: int = 5,
                    max_frames: int = 196) -> dict:
    """Retrieval on clips the evaluator did not train on: each clip (first ``max_frames``
    frames) against one random caption per clip, ``draws`` times; R-precision in batches of
    32 (or all clips when fewer) with its chance level, and MM-Dist."""
    if len(idx) < 2:
        return {}
    feats = [split.features[i][:max_frames // UNIT_LENGTH * UNIT_LENGTH] for i in idx]
    x, L = pad_features(feats)
    m = model.embed_motions(x, L)
    rng = np.random.default_rng(seed)
    tops, mm, bs = [], [], None
    for _ in range(draws):
        caps = [split.captions[i][int(rng.integers(len(split.captions[i])))] for i in idx]
        t = model.embed_texts(caps)
        r, bs = r_precision(m, t, 3, 32, rng)
        tops.append(r)
        mm.append(matching_distance(m, t))
    tops = np.mean(tops, axis=0)
    return {"n_clips": len(idx), "batch_size": bs, "top1": float(tops[0]), "top2": float(tops[1]),
            "top3": float(tops[2]), "chance_top1": 1.0 / bs, "chance_top3": min(3, bs) / bs,
            "mm_dist": float(np.mean(mm))}


def default_evaluator_path(data_root: str | Path) -> Path:
    return Path(data_root).parent / "evaluator.pt"


def _resolve_data(cfg: EvaluatorTrainConfig) -> str:
    if cfg.data is not None:
        return cfg.data
    from vmdm.data.build.prepare import ensure_default_data

    return str(ensure_default_data(cfg.cache_dir, progress=cfg.progress, quick=cfg.quick_data).dataset_2d)


def train_evaluator(cfg: EvaluatorTrainConfig, *, gt_store: GTStore | None = None) -> Path:
    """Train on the TRAIN split of ``cfg.data`` and save; returns the checkpoint path."""
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, gt_store)
    finally:
        torch.set_num_threads(previous_threads)


def _train(cfg: EvaluatorTrainConfig, gt_store: GTStore | None) -> Path:
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    root = _resolve_data(cfg)
    split = load_train_split(root, gt_store)
    fit, held = _partition(split.ids, cfg.heldout_frac, cfg.seed)
    if len(fit) < 2:
        raise ValueError(f"{root}: only {len(fit)} train clips left to fit on")
    skeleton_name = "smpl22"
    D = split.features[0].shape[1]
    # Statistics of the clips it fits on, with HumanML3D's evaluator grouping (feat_bias 5).
    norm = Normalizer(*compute_mean_std([split.features[i] for i in fit], get_skeleton(skeleton_name), feat_bias=5.0))
    text_encoder = build_text_encoder(cfg.text_encoder, cache_dir=Path(root).parent / "text_cache")
    ecfg = EvaluatorConfig(feature_dim=D, skeleton=skeleton_name, text_encoder=cfg.text_encoder,
                           text_dim=text_encoder.dim, embed_dim=cfg.embed_dim, movement_dim=cfg.movement_dim,
                           gru_dim=cfg.gru_dim, max_frames=cfg.max_frames)
    model = Evaluator(ecfg, norm, text_encoder)

    # Frozen sentence embeddings of every train caption, computed once.
    all_caps = sorted({c for cs in split.captions for c in cs})
    sent = dict(zip(all_caps, text_encoder(all_caps)))
    text_encoder.save_cache()

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = min(cfg.batch_size, len(fit))
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, desc="train evaluator", disable=not cfg.progress, dynamic_ncols=True)
    step, loss_ema = 0, None
    budget = Budget(cfg.steps, cfg.time_budget, warmup=min(100, cfg.steps // 10))
    model.train()
    while step < cfg.steps:
        if budget.out_of_time():
            log.info("time budget of %.0f s reached after %d steps", cfg.time_budget, step)
            break
        budget.set_lr(opt, cfg.lr, step)
        pick = rng.choice(len(fit), bs, replace=False)
        clips = [fit[k] for k in pick]
        caps = [split.captions[i][int(rng.integers(len(split.captions[i])))] for i in clips]
        x, L = pad_features([_crop(split.features[i], rng, cfg.max_frames) for i in clips])
        xin, L = model.prepare(x, L)
        zm = model.embed_motion_normalised(xin, L)
        zt = model.embed_sentence(torch.stack([sent[c] for c in caps]))
        logits = zm @ zt.T / cfg.temperature
        # Pairs of one clip or one identical caption are not negatives of each other.
        same = torch.tensor([[a == b or ca == cb for b, cb in zip(clips, caps)] for a, ca in zip(clips, caps)])
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
        target = torch.arange(bs)
        loss = 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                      + torch.nn.functional.cross_entropy(logits.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        lv = float(loss.detach())
        loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss_ema:.3f}")
    bar.close()
    train_s = budget.elapsed()
    model.eval()
    metrics = {"steps": step, "train_s": round(train_s, 1), "final_loss_ema": loss_ema,
               "heldout": heldout_metrics(model, split, held, seed=cfg.seed, max_frames=cfg.max_frames),
               "fit": heldout_metrics(model, split, fit[:len(held) or 32], seed=cfg.seed, max_frames=cfg.max_frames)}
    out = Path(cfg.out) if cfg.out else default_evaluator_path(root)
    train_split = {
        "split": TRAIN_SPLIT,
        "data_root": str(root),
        "ids": list(split.ids),
        "fit_ids": [split.ids[i] for i in fit],
        "heldout_ids": [split.ids[i] for i in held],
        "hash": split_hash(split.ids, split.features),
        "n_clips": len(split.ids),
    }
    tcfg = dataclasses.asdict(cfg)
    tcfg.update(created=datetime.datetime.now().isoformat(timespec="seconds"), machine=platform.node(),
                cpu_threads=torch.get_num_threads(), total_s=round(time.time() - t0, 1))
    save_evaluator(out, model, train_split=train_split, train_config=tcfg, metrics=metrics)
    log.info("evaluator: %d steps in %.0f s; held-out %s", step, train_s, metrics["heldout"])
    return out


def main(argv=None) -> int:
    def run(cfg: EvaluatorTrainConfig) -> None:
        from vmdm.eval.evaluator import load_evaluator

        path = train_evaluator(cfg)
        _, meta = load_evaluator(path)
        h = meta["metrics"]["heldout"]
        if h:
            print(f"held-out train clips ({h['n_clips']}, batches of {h['batch_size']}): R@1 {h['top1']:.3f} "
                  f"(chance {h['chance_top1']:.3f}), R@3 {h['top3']:.3f} (chance {h['chance_top3']:.3f}), "
                  f"MM-Dist {h['mm_dist']:.3f}")
        print(f"evaluator: {path}")

    return run_main(EvaluatorTrainConfig, "python -m vmdm.eval.train_evaluator", __doc__.split("\n\n")[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
