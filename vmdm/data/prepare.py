"""Make sure the default data exist: built-in corpus, teacher lifter, 2D-only dataset.

``ensure_default_data()`` is what ``python -m vmdm.train`` calls first. Each artefact is
built only if missing, into a temporary name that is renamed into place when complete,
so an interrupted build leaves nothing that looks finished and two processes racing
each other both end up with one complete copy. The cache lives in ``cache_dir``, else
``$VMDM_CACHE``, else ``~/.cache/vmdm``; ``quick=True`` builds a small variant (a few
hundred clips, a briefly trained lifter) in its own sub-folder for tests and CI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .build_2d import Build2DConfig, build_2d
from .dataset import check_corpus_convention
from .lifter import LifterConfig, LifterTrainConfig, load_lifter
from .representation import FeatureConventionError, check_feature_convention

__all__ = ["DataPaths", "default_cache_dir", "ensure_default_data", "QUICK", "FULL"]


@dataclass(frozen=True)
class _Recipe:
    name: str
    num_clips: int
    lifter_steps: int
    lifter_time_s: float | None  # None: train for lifter_steps whatever the machine's load
    lifter_channels: int
    views_per_clip: int


# Fixed step counts, not wall-clock budgets: on a busy machine a time budget left the default
# teacher with a few dozen steps, and the teacher's quality is part of the experiment.
FULL = _Recipe("default", 3000, 2000, None, 128, 3)
QUICK = _Recipe("quick", 200, 100, None, 96, 2)


@dataclass(frozen=True)
class DataPaths:
    root: Path  # the cache sub-folder holding the three below
    corpus: Path  # HumanML3D-format built-in corpus (+ meta.jsonl)
    lifter: Path  # teacher lifter checkpoint
    dataset_2d: Path  # 2D-only dataset (MotionDataset root)


def default_cache_dir() -> Path:
    env = os.environ.get("VMDM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vmdm"


def _clean_stale(target: Path, max_age_s: float = 3600.0) -> None:
    """Remove temp leftovers of ``target`` from builds that died more than an hour ago."""
    for p in target.parent.glob(target.name + ".tmp-*"):
        try:
            if time.time() - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        except OSError:
            pass


def _publish_dir(tmp: Path, target: Path) -> None:
    try:
        os.rename(tmp, target)
    except OSError:
        # Someone else finished first: theirs is complete, drop ours.
        if target.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise


def _stale(target: Path, check) -> bool:
    """True (and ``target`` removed) when a finished artefact holds features of another
    convention: it is rebuilt rather than mixed with the new ones."""
    try:
        check(target)
        return False
    except FeatureConventionError as e:
        print(f"vmdm: rebuilding {target}: {str(e).split(';')[0]}")
        shutil.rmtree(target)
        return True


def _ensure_corpus(target: Path, recipe: _Recipe, progress: bool) -> None:
    """The corpus's joints do not depend on the feature convention (nor does the lifter
    trained on them); its features do, so a stale corpus is regenerated."""
    if (target / "meta.jsonl").is_file() and not _stale(target, check_corpus_convention):
        return
    from .synth import generate_corpus

    _clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        generate_corpus(tmp, num_clips=recipe.num_clips, seed=0, progress=progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish_dir(tmp, target)


def _ensure_lifter(target: Path, corpus: Path, recipe: _Recipe, progress: bool) -> bool:
    """True when a new lifter was trained (so a 2D dataset built with an old one is stale)."""
    if target.is_file():
        try:
            load_lifter(target)
            return False
        except Exception:  # unreadable (e.g. written by an incompatible version): rebuild
            target.unlink()
    from .train_lifter import train_lifter_on_corpus

    # One thread, not the faster of one and all (the lifter's own default, timed at run
    # time): float sums split over another number of threads round differently, and over
    # thousands of steps that makes another teacher. The default teacher is part of every
    # experiment, so it must be the same on every machine, however loaded.
    cfg = LifterTrainConfig(
        steps=recipe.lifter_steps, time_budget_s=recipe.lifter_time_s, views_per_clip=recipe.views_per_clip,
        threads=1,
    )
    train_lifter_on_corpus(corpus, target, cfg, LifterConfig(channels=recipe.lifter_channels), progress=progress)
    return True


def _dataset_convention(target: Path) -> None:
    import json

    check_feature_convention(json.loads((target / "vmdm_2d.json").read_text()), target / "vmdm_2d.json")


def _ensure_dataset(target: Path, corpus: Path, lifter: Path, progress: bool) -> None:
    if (target / "vmdm_2d.json").is_file() and not _stale(target, _dataset_convention):
        return
    _clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent)) / "d"
    try:
        build_2d(corpus, tmp, Build2DConfig(teacher="learned", lifter=str(lifter), workers=min(2, os.cpu_count() or 1)),
                 progress=progress)
    except BaseException:
        shutil.rmtree(tmp.parent, ignore_errors=True)
        raise
    _publish_dir(tmp, target)
    shutil.rmtree(tmp.parent, ignore_errors=True)


def ensure_default_data(cache_dir: str | os.PathLike | None = None, *, progress: bool = True, quick: bool = False) -> DataPaths:
    """Build whatever of corpus, lifter and 2D-only dataset is missing; return their paths."""
    recipe = QUICK if quick else FULL
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = root / recipe.name
    root.mkdir(parents=True, exist_ok=True)
    paths = DataPaths(root, root / "corpus", root / "lifter.pt", root / "data_2d")
    _ensure_corpus(paths.corpus, recipe, progress)
    if _ensure_lifter(paths.lifter, paths.corpus, recipe, progress) and paths.dataset_2d.exists():
        shutil.rmtree(paths.dataset_2d)
    _ensure_dataset(paths.dataset_2d, paths.corpus, paths.lifter, progress)
    return paths
