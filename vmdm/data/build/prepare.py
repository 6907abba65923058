"""Make sure the default data exist: built-in corpus, teacher lifter, 2D-only dataset.

``python -m vmdm.data.build.prepare bandai --root DIR --out OUT`` imports Bandai-Namco
motion capture into a HumanML3D-format folder instead (:mod:`vmdm.data.build.bandai`).

``ensure_default_data()`` is what ``python -m vmdm.train`` calls first. Each artefact is
built only if missing, into a temporary name that is renamed into place when complete,
so an interrupted build leaves nothing that looks finished and two processes racing
each other both end up with one complete copy. The cache lives in ``cache_dir``, else
``$VMDM_CACHE``, else ``~/.cache/vmdm``; ``quick=True`` builds a small variant (a few
hundred clips, a briefly trained lifter) in its own sub-folder for tests and CI.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vmdm.cli import ConfigError, build_parser, field, from_args
from vmdm.data.build.build_2d import Build2DConfig, build_2d
from vmdm.data.dataset import check_corpus_convention
from vmdm.data.build.fingerprint import HASH_FILE, data_record, short
from vmdm.data.build.teacher import LifterConfig, LifterTrainConfig, load_lifter
from vmdm.data.build.numerics import numerics_pinned, pinned_torch, run_pinned
from vmdm.motion.representation import FeatureConventionError, check_feature_convention

__all__ = ["DataPaths", "default_cache_dir", "default_paths", "ensure_default_data", "check_default_data",
           "read_data_record", "expected_hashes", "QUICK", "FULL", "PrepareConfig", "build_data", "check_data"]


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


def _check_error(target: Path, check, errors=(FeatureConventionError,)) -> Exception | None:
    """The error of one of the types ``errors`` that ``check(target)`` raises, or None."""
    try:
        check(target)
    except errors as e:
        return e
    return None


def _stale(target: Path, check) -> bool:
    """True (and ``target`` removed) when a finished artefact holds features of another
    convention: it is rebuilt rather than mixed with the new ones."""
    e = _check_error(target, check)
    if e is None:
        return False
    print(f"vmdm: rebuilding {target}: {str(e).split(';')[0]}")
    shutil.rmtree(target)
    return True


def _ensure_corpus(target: Path, recipe: _Recipe, progress: bool) -> None:
    """The corpus's joints do not depend on the feature convention (nor does the lifter
    trained on them); its features do, so a stale corpus is regenerated."""
    if (target / "meta.jsonl").is_file() and not _stale(target, check_corpus_convention):
        return
    from vmdm.data.build.synth import generate_corpus

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
    from vmdm.data.build.train_teacher import train_lifter_on_corpus

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


def _complete(paths: DataPaths) -> bool:
    return ((paths.corpus / "meta.jsonl").is_file() and paths.lifter.is_file() and (paths.root / _BUILD_FILE).is_file()
            and (paths.dataset_2d / "vmdm_2d.json").is_file() and (paths.root / HASH_FILE).is_file())


# The build's own version: artefacts made by another (before numerics were pinned: none)
# are rebuilt, not mixed with new ones.
DATA_BUILD = 1
_BUILD_FILE = "build.json"


def _start_build(paths: DataPaths) -> None:
    marker = paths.root / _BUILD_FILE
    try:
        same = json.loads(marker.read_text()).get("build") == DATA_BUILD
    except (OSError, ValueError, AttributeError):
        same = False
    if same:
        return
    old = [p for p in (paths.corpus, paths.lifter, paths.dataset_2d, paths.root / HASH_FILE) if p.exists()]
    if old:
        print(f"vmdm: rebuilding the default data in {paths.root}: built by an earlier version "
              f"(not data build {DATA_BUILD}, whose bytes are the same on every machine)")
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    marker.write_text(json.dumps({"build": DATA_BUILD}) + "\n")


def _build(paths: DataPaths, recipe: _Recipe, progress: bool) -> None:
    """Build what is missing (in this process, whose numerics must be pinned) and record hashes."""
    _start_build(paths)
    with pinned_torch():
        _ensure_corpus(paths.corpus, recipe, progress)
        if _ensure_lifter(paths.lifter, paths.corpus, recipe, progress) and paths.dataset_2d.exists():
            shutil.rmtree(paths.dataset_2d)
        _ensure_dataset(paths.dataset_2d, paths.corpus, paths.lifter, progress)
    record = {"recipe": recipe.name, **data_record(paths.corpus, paths.lifter, paths.dataset_2d)}
    tmp = paths.root / f"{HASH_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, paths.root / HASH_FILE)


def default_paths(cache_dir: str | os.PathLike | None = None, *, quick: bool = False) -> DataPaths:
    recipe = QUICK if quick else FULL
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = root / recipe.name
    return DataPaths(root, root / "corpus", root / "lifter.pt", root / "data_2d")


def ensure_default_data(cache_dir: str | os.PathLike | None = None, *, progress: bool = True, quick: bool = False) -> DataPaths:
    """Build whatever of corpus, lifter and 2D-only dataset is missing; return their paths.

    The build runs in a child process with pinned numerics (:mod:`vmdm.data.build.numerics`), so
    the data are the same bytes on every machine; their hashes go to ``data_hash.json``.
    """
    paths = default_paths(cache_dir, quick=quick)
    paths.root.mkdir(parents=True, exist_ok=True)
    stale = [p for p, check in ((paths.corpus, check_corpus_convention), (paths.dataset_2d, _dataset_convention))
             if p.is_dir() and _is_stale(p, check)]
    if _complete(paths) and not stale:
        return paths
    if numerics_pinned():
        _build(paths, QUICK if quick else FULL, progress)
    else:
        args = ["build", "--cache-dir", str(paths.root.parent)] + (["--quick"] if quick else [])
        run_pinned("vmdm.data.build.prepare", args + ([] if progress else ["--no-progress"]))
    return paths


def _is_stale(target: Path, check) -> bool:
    """Whether ``target`` fails ``check`` (another convention, or missing or unreadable parts)."""
    return _check_error(target, check, (FeatureConventionError, FileNotFoundError, ValueError)) is not None


def read_data_record(paths: DataPaths) -> dict | None:
    """The hash record of a built default-data folder (None if it has none)."""
    try:
        return json.loads((paths.root / HASH_FILE).read_text())
    except (OSError, ValueError):
        return None


def expected_hashes() -> dict:
    """The published hashes of the default data, per recipe (``vmdm/data/build/expected_hashes.json``)."""
    return json.loads((Path(__file__).with_name("expected_hashes.json")).read_text())


def check_default_data(cache_dir: str | os.PathLike | None = None, *, quick: bool = False,
                       progress: bool = True) -> tuple[bool, list[str]]:
    """Build if needed, re-hash the default data and compare with the published hashes."""
    paths = ensure_default_data(cache_dir, progress=progress, quick=quick)
    rec = {"recipe": (QUICK if quick else FULL).name, **data_record(paths.corpus, paths.lifter, paths.dataset_2d)}
    want = expected_hashes().get(rec["recipe"], {})
    lines, ok = [], True
    for k, path in (("corpus", paths.corpus), ("lifter", paths.lifter), ("dataset_2d", paths.dataset_2d),
                    ("data", paths.root)):
        same = want.get(k) == rec[k]
        ok &= same
        lines.append(f"{k:10s} {short(rec[k])}  {'ok' if same else 'DIFFERS from the published ' + short(want.get(k))}"
                     f"  ({path})")
    saved = read_data_record(paths)
    if saved is not None and saved.get("data") != rec["data"]:
        ok = False
        lines.append(f"the files changed since they were built: {HASH_FILE} says {short(saved.get('data'))}")
    if not ok:
        exp_num, num = want.get("numerics", {}), rec["numerics"]
        diff = [f"{k} {num.get(k)} (published: {exp_num.get(k)})" for k in sorted(exp_num) if num.get(k) != exp_num.get(k)]
        lines.append("numerics that differ: " + (", ".join(diff) if diff else "none recorded; see docs/data.md"))
    return ok, lines


@dataclass
class PrepareConfig:
    """Options of ``python -m vmdm.data.build.prepare build`` and ``... check``."""

    cache_dir: str | None = field(None, "cache folder (default: $VMDM_CACHE, else ~/.cache/vmdm)")
    quick: bool = field(False, "the small variant used by tests and CI")
    progress: bool = field(True, "show progress bars")


def build_data(cfg: PrepareConfig) -> DataPaths:
    """``prepare build``: :func:`ensure_default_data` as ``cfg`` says."""
    return ensure_default_data(cfg.cache_dir, progress=cfg.progress, quick=cfg.quick)


def check_data(cfg: PrepareConfig) -> tuple[bool, list[str]]:
    """``prepare check``: :func:`check_default_data` as ``cfg`` says; ``(match, report lines)``."""
    return check_default_data(cfg.cache_dir, quick=cfg.quick, progress=cfg.progress)


COMMANDS = {"build": "build the default data where missing (pinned numerics)",
            "check": "build if needed, then compare the default data's hashes with the published ones",
            "bandai": "import Bandai-Namco motion capture (BVH) into a HumanML3D-format folder (docs/data.md)"}


def main(argv=None) -> int:
    import argparse

    from vmdm.data.build.bandai import BandaiConfig, build_bandai

    prog = "python -m vmdm.data.build.prepare"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    configs = {"build": PrepareConfig, "check": PrepareConfig, "bandai": BandaiConfig}
    parsers = {}
    for name, help_ in COMMANDS.items():
        q = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        parsers[name] = build_parser(configs[name], f"{prog} {name}", help_, parser=q)
    a = p.parse_args(argv)
    cfg = from_args(configs[a.cmd], a)
    if a.cmd == "bandai":
        try:
            summary = build_bandai(cfg)
        except ConfigError as e:
            parsers["bandai"].error(str(e))
        counts = summary["split"]["counts"]
        short = summary["short_clips"]
        print(f"wrote {cfg.out}: {sum(counts.values())} clips (train {counts['train']}, val {counts['val']}, test "
              f"{counts['test']}; {short['padded']} padded to {short['min_seconds']} s, {short['dropped']} dropped, "
              f"{summary['cut']} cut to {summary['max_seconds']} s) in {summary['build_seconds']} s")
        return 0
    if a.cmd == "build":
        paths = build_data(cfg)
        if not numerics_pinned():
            print(f"default data in {paths.root}")
        return 0
    ok, lines = check_data(cfg)
    print("\n".join(lines))
    print("the default data match the published hashes" if ok else
          "the default data differ from the published hashes: results made with them are not comparable with "
          "the tables in results/")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
