"""What ``python -m vmdm.train`` shows at the end: samples of held-out captions, and the
command that samples more."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vmdm.data.dataset import MotionDataset

if TYPE_CHECKING:
    from vmdm.training.config import TrainConfig

__all__ = ["heldout_captions", "sample_command", "write_samples"]

log = logging.getLogger("vmdm.train")


def _caption_key(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def heldout_captions(data_root: str | os.PathLike, n: int, seed: int = 0, mode: str = "2d") -> list[str]:
    """``n`` distinct captions of the val split of ``data_root`` that no train-split clip has
    (compared case- and punctuation-insensitively), picked with a generator seeded by ``seed``
    from the sorted candidates: the same data and seed give the same captions."""
    if n < 1:
        return []
    val = MotionDataset(str(data_root), "val", mode=mode, max_frames=10**9, unit_length=1, random_crop=False, seed=0)
    trn = MotionDataset(str(data_root), "train", mode=mode, max_frames=10**9, unit_length=1, random_crop=False,
                        seed=0)
    seen = {_caption_key(c) for i in trn.ids for c in trn.captions(i)}
    cands: dict[str, str] = {}
    for i in val.ids:
        for c in val.captions(i):
            if _caption_key(c) not in seen:
                cands.setdefault(_caption_key(c), c.strip())
    pool = [cands[k] for k in sorted(cands)]
    if not pool:
        raise ValueError(f"{data_root}: the val split has no caption that the train split lacks")
    pick = np.random.default_rng([seed, 0x5A3B1E]).choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[int(i)] for i in pick]


def sample_command(ckpt: str | os.PathLike, captions: list[str], out: str | os.PathLike, num_samples: int = 3,
                   seed: int = 1) -> str:
    """The ``python -m vmdm.sample`` command line (shell-quoted) that samples more of ``captions``."""
    import shlex

    args = ["python", "-m", "vmdm.sample", "--checkpoint", str(ckpt)]
    for c in captions:
        args += ["--text", c]
    args += ["--num-samples", str(num_samples), "--seed", str(seed), "--out", str(out)]
    return " ".join(shlex.quote(a) for a in args)


def write_samples(cfg: "TrainConfig", ckpt_path: str | os.PathLike) -> Path | None:
    """Sample ``cfg.samples`` held-out captions with the checkpoint and write them to
    ``<checkpoint folder>/samples/`` through ``vmdm.sample`` (videos, joints, results.json);
    prints where they are and the command that samples more. Never raises: a failure is
    logged as a warning (the checkpoint is already on disk) and None is returned."""
    if cfg.samples <= 0:
        return None
    ckpt_path = Path(ckpt_path)
    out = ckpt_path.parent / "samples"
    try:
        from vmdm.training.checkpoint import load_checkpoint as _load
        from vmdm.sample import main as sample_main

        data_root = cfg.data or _load(ckpt_path).get("data_root")
        captions = heldout_captions(data_root, cfg.samples, cfg.seed, cfg.supervision)
        argv = ["--checkpoint", str(ckpt_path), "--num-samples", "1", "--seed", str(cfg.seed), "--out", str(out),
                "--formats", "mp4,npy"]
        for c in captions:
            argv += ["--text", c]
        if cfg.device is not None:
            argv += ["--device", cfg.device]
        if not cfg.progress:
            argv.append("--no-progress")
        try:
            rc = sample_main(argv)
        except SystemExit as e:  # argparse errors of vmdm.sample
            rc = e.code
        if rc not in (0, None):
            raise RuntimeError(f"vmdm.sample exited with status {rc}")
        results = json.loads((out / "results.json").read_text())
        videos = [(out / f, s["text"]) for s in results["samples"] for k, f in s["files"].items()
                  if k in ("mp4", "gif")]
        if len(videos) != len(captions):
            raise RuntimeError(f"vmdm.sample wrote {len(videos)} video(s) for {len(captions)} caption(s)")
    except Exception as e:  # noqa: BLE001 - rendering must never fail a finished training run
        log.warning("could not write the end-of-training samples to %s (%s: %s); the checkpoint %s is intact",
                    out, type(e).__name__, e, ckpt_path)
        return None
    print(f"samples of {len(captions)} caption(s) the model was not trained on (val split):")
    for f, c in videos:
        print(f"  {f}  {c!r}")
    print("sample more with:")
    print("  " + sample_command(ckpt_path, captions, ckpt_path.parent / "more_samples"))
    return out
