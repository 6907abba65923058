"""Build the 2D-only training set from a 3D corpus: ``python -m vmdm.data.build.build_2d``.

For every clip of the main split: a random camera, detector-like 2D keypoints with
confidence scores, and the teacher's 3D lift of those keypoints (joints and 263-dim
features in the lift's own canonical frame). The 3D ground truth is written separately,
under ``gt/``, for evaluation only. Output layout (``FORMAT``)::

    out/
      vmdm_2d.json         format, skeleton, fps, teacher, camera and split summary
      texts.jsonl          {"id": ..., "captions": [...]} per clip
      train.txt val.txt test.txt
      obs_<split>.npz      everything a 2D-supervised model may see
      teacher/Mean.npy Std.npy   teacher-feature statistics (train split)
      gt/<split>.npz       ground truth, evaluation only
      gt/Mean.npy Std.npy  ground-truth feature statistics (train split)

``obs_<split>.npz`` packs all clips of a split along the frame axis. For clip ``i`` with
``T`` joint frames the features have ``F = T - 1`` frames, at rows
``feat_offsets[i]:feat_offsets[i+1]``; keypoints, scores and per-frame cameras share
those rows (aligned to the first ``F`` frames); ``teacher_joints`` (all ``T`` frames) use
``joint_offsets``. Arrays: ``ids``, ``feat_offsets``, ``joint_offsets``, ``keypoints``
``[N, J, 2]`` (normalised image coordinates), ``scores`` ``[N, J]`` (0 = missed),
``camera`` ``[C, 3, 4]`` (static) or ``camera_frames`` ``[N, 3, 4]`` (per frame),
``intrinsics`` ``[C, 4]`` (the pixel camera the noise was simulated with),
``teacher_features`` ``[N, D]``, ``teacher_joints`` ``[M, J, 3]``. Cameras are expressed
in the teacher lift's canonical frame: projecting ``decode(teacher_features)`` through
them reproduces the observed keypoints up to the teacher's reprojection error.
``gt/<split>.npz`` holds ``gt_features``, ``gt_joints`` (GT canonical frame, ``T``
frames) and ``camera``/``camera_frames`` expressed in the GT canonical frame.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vmdm.cli import REQUIRED, build_parser, field as cli_field, from_args
from vmdm.motion.cameras import (
    CameraConfig,
    DetectorNoiseConfig,
    detector_noise,
    pixels_to_normalized,
    project,
    sample_camera,
)
from vmdm.data.formats.humanml3d import read_ids, read_texts
from vmdm.data.build.teacher import LearnedTeacher, NoiseTeacher, NoiseTeacherConfig, OracleTeacher, Teacher
from vmdm.data.build.numerics import round_significand
from vmdm.data.build.staging import staged_folder
from vmdm.motion.representation import canonicalize, compute_mean_std, encode, feature_convention_record
from vmdm.motion.skeleton import SMPL22, Skeleton

__all__ = [
    "FORMAT",
    "CorpusSplit",
    "corpus_families",
    "family_split",
    "load_corpus_joints",
    "observe_clip",
    "build_2d",
    "Build2DConfig",
    "Build2DRunConfig",
    "run_build_2d",
    "main",
]

FORMAT = "vmdm-2d-1"
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- corpus splits


def corpus_families(corpus: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    """Clip id -> the action families it contains, from the corpus's ``meta.jsonl``."""
    path = Path(corpus) / "meta.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: corpus metadata missing (needed for the lifter's family split)")
    out: dict[str, tuple[str, ...]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        cid = rec.get("id", rec.get("clip_id"))
        fam = next((rec[k] for k in ("families", "family", "action_family") if k in rec), None)
        if cid is None or fam is None:
            raise ValueError(f"{path}:{n}: expected fields 'id' and 'families', got {sorted(rec)}")
        out[str(cid)] = tuple(str(f) for f in (fam if isinstance(fam, list) else [fam]))
    return out


@dataclass
class CorpusSplit:
    """Which corpus clips the lifter sees and which make the main (2D) dataset."""

    lifter_families: list[str]
    main_families: list[str]
    lifter_train: list[str]
    lifter_val: list[str]
    main: dict[str, list[str]]  # split -> ids (corpus split, clips without lifter families)
    dropped: int = 0  # clips mixing both groups, used by neither


def _family_order(corpus: Path, families: Sequence[str]) -> list[str]:
    """Families sorted by (group, name), groups from the corpus's ``families.json`` if any."""
    group: dict[str, str] = {}
    path = Path(corpus) / "families.json"
    if path.is_file():
        group = json.loads(path.read_text()).get("family_group", {})
    return sorted(families, key=lambda f: (group.get(f, ""), f))


def family_split(
    corpus: str | os.PathLike, lifter_families: Sequence[str] | None = None, every: int = 3, seed: int = 0
) -> CorpusSplit:
    """Hold out a group of action families for the teacher lifter.

    By default every ``every``-th family in (group, name) order, starting with the
    second, goes to the lifter: a third of the families, spread over all groups, so the
    lifter knows every kind of body movement but none of the main split's actions. A
    clip belongs to the lifter when all its families are lifter families, to the main
    split when none is; clips mixing both are used by neither.
    """
    fam = corpus_families(corpus)
    families = _family_order(corpus, sorted({f for fs in fam.values() for f in fs}))
    if lifter_families is None:
        lifter_families = families[1::every]
    lifter_families = sorted(str(f) for f in lifter_families)
    unknown = set(lifter_families) - set(families)
    if unknown:
        raise ValueError(f"lifter_families: {sorted(unknown)} not in the corpus families {sorted(families)}")
    if len(lifter_families) == len(families):
        raise ValueError("lifter_families: would leave no family for the main split")
    lf = set(lifter_families)
    is_lifter = {i: all(f in lf for f in fs) for i, fs in fam.items()}
    is_main = {i: not any(f in lf for f in fs) for i, fs in fam.items()}
    main: dict[str, list[str]] = {}
    for split in SPLITS:
        try:
            ids = read_ids(corpus, split)
        except ValueError:
            ids = []
        missing = [i for i in ids if i not in fam]
        if missing:
            raise ValueError(f"{Path(corpus) / 'meta.jsonl'}: no families for clips {missing[:5]} of split {split!r}")
        main[split] = [i for i in ids if is_main[i]]
    lifter_ids = sorted(i for i in fam if is_lifter[i])
    if not lifter_ids:
        raise ValueError(f"{corpus}: no clip consists only of the lifter families {lifter_families}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lifter_ids))
    n_val = max(1, len(lifter_ids) // 10)
    val = sorted(lifter_ids[i] for i in perm[:n_val])
    train = sorted(lifter_ids[i] for i in perm[n_val:])
    dropped = sum(1 for i in fam if not is_lifter[i] and not is_main[i])
    return CorpusSplit(lifter_families, sorted(f for f in families if f not in lf), train, val, main, dropped)


def split_from_files(corpus: str | os.PathLike) -> CorpusSplit:
    """The corpus's own ``train.txt``/``val.txt``/``test.txt`` as the main split, no clip for
    the lifter: for a corpus the teacher was not trained on (real motion capture)."""
    main = {s: read_ids(corpus, s) for s in SPLITS}
    if not any(main.values()):
        raise ValueError(f"{corpus}: no clip in {', '.join(f'{s}.txt' for s in SPLITS)}")
    return CorpusSplit(lifter_families=[], main_families=[], lifter_train=[], lifter_val=[], main=main)


def teacher_error(records: Sequence[dict]) -> dict[str, float]:
    """How far the teacher's lifts are from the truth, in millimetres, over all frames of
    ``records`` (from :func:`observe_clip`), both taken into the camera's frame:
    ``mpjpe_mm`` root-relative, ``pa_mpjpe_mm`` after per-frame Procrustes alignment,
    ``abs_mpjpe_mm`` with the root where each puts it."""
    from vmdm.eval.geometry import mpjpe_per_frame, pa_mpjpe_per_frame
    from vmdm.motion.cameras import transform_points

    def to_camera(joints, cam):
        return transform_points(torch.from_numpy(joints), torch.from_numpy(cam).double()).numpy()

    rel, pa, absolute, n = 0.0, 0.0, 0.0, 0
    for r in records:
        F = r["teacher_features"].shape[0]
        if F == 0:
            continue
        tj = to_camera(r["teacher_joints"][:F].astype(np.float64), r["camera"])
        gj = to_camera(r["gt_joints"][:F].astype(np.float64), r["camera_gt"])
        rel += mpjpe_per_frame(tj - tj[:, :1], gj - gj[:, :1]).sum()
        pa += pa_mpjpe_per_frame(tj, gj).sum()
        absolute += mpjpe_per_frame(tj, gj).sum()
        n += F
    n = max(n, 1)
    return {"mpjpe_mm": round(1000 * rel / n, 1), "pa_mpjpe_mm": round(1000 * pa / n, 1),
            "abs_mpjpe_mm": round(1000 * absolute / n, 1), "frames": n}


def load_corpus_joints(corpus: str | os.PathLike, ids: Sequence[str]) -> list[np.ndarray]:
    """World-frame joints ``[T, J, 3]`` of corpus clips (HumanML3D ``new_joints``)."""
    out = []
    for i in ids:
        path = Path(corpus) / "new_joints" / f"{i}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: joints of corpus clip {i!r} missing")
        out.append(np.load(path).astype(np.float32))
    return out


# --------------------------------------------------------------------------- one clip


def _clip_seed(seed: int, clip_id: str) -> int:
    # Per-clip seeds make the build independent of worker count and clip order.
    return (seed * 1_000_003 + zlib.crc32(clip_id.encode())) % (2**63)


def observe_clip(
    joints: np.ndarray | torch.Tensor,
    teacher: Teacher,
    *,
    camera: CameraConfig = CameraConfig(),
    noise: DetectorNoiseConfig = DetectorNoiseConfig(),
    skeleton: Skeleton = SMPL22,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Film one clip ``[T, J, 3]`` (world, y up) and lift it with ``teacher``.

    Returns per-clip arrays: ``keypoints`` [F, J, 2] (normalised), ``scores`` [F, J],
    ``camera`` [3, 4] or [F, 3, 4] (teacher canonical frame), ``camera_gt`` (GT canonical
    frame), ``intrinsics`` [4], ``teacher_features`` [F, D], ``teacher_joints`` [T, J, 3]
    (canonical), ``gt_features`` [F, D], ``gt_joints`` [T, J, 3] (canonical).
    """
    g = torch.Generator().manual_seed(seed)
    j = torch.as_tensor(np.asarray(joints), dtype=torch.float64)
    if j.ndim != 3 or j.shape[1:] != (skeleton.num_joints, 3) or j.shape[0] < 2:
        raise ValueError(f"joints: expected [T >= 2, {skeleton.num_joints}, 3], got {tuple(j.shape)}")
    E, K = sample_camera(j, camera, generator=g)
    uv_px, depth = project(j, E, K)
    noisy_px, scores = detector_noise(uv_px, depth, noise, skeleton, generator=g)
    lift = teacher.lift(noisy_px.float(), scores.float(), E.float(), K.float(), reference=j.float()).double()
    if not torch.isfinite(lift).all():
        raise ValueError("teacher lift contains NaN or inf")
    T = j.shape[0]
    F = T - 1

    def to_canonical(world):
        canon, tf = canonicalize(world, skeleton)
        R, t = tf.apply_camera(E[..., :3], E[..., 3])
        cam = torch.cat([R, t[..., None]], dim=-1)
        return canon, (cam[:F] if cam.ndim == 3 else cam)

    t_canon, cam_t = to_canonical(lift)
    g_canon, cam_g = to_canonical(j)
    # Rounded so that last-bit differences between CPUs never reach the files (vmdm.data.build.numerics).
    f32 = lambda x: round_significand(x.detach().cpu().numpy())  # noqa: E731
    # Features are encoded from the joints as stored, so re-encoding a file's joints gives
    # its features (the encoding is invariant to the canonical frame).
    t_canon, g_canon = (torch.from_numpy(f32(x)).double() for x in (t_canon, g_canon))
    return {
        "keypoints": f32(pixels_to_normalized(noisy_px, K)[:F]),
        "scores": f32(scores[:F]),
        "camera": f32(cam_t),
        "camera_gt": f32(cam_g),
        "intrinsics": f32(K),
        "teacher_features": f32(encode(t_canon, skeleton)),
        "teacher_joints": f32(t_canon),
        "gt_features": f32(encode(g_canon, skeleton)),
        "gt_joints": f32(g_canon),
    }


# --------------------------------------------------------------------------- whole build


@dataclass
class Build2DConfig:
    teacher: str = "learned"  # "learned" (needs lifter), "noise" or "oracle" (the true motion)
    lifter: str | None = None  # checkpoint path for the learned teacher
    camera: CameraConfig = field(default_factory=CameraConfig)
    noise: DetectorNoiseConfig = field(default_factory=DetectorNoiseConfig)
    noise_teacher: NoiseTeacherConfig = field(default_factory=NoiseTeacherConfig)
    lifter_families: list[str] | None = None
    seed: int = 0
    workers: int = 1


_WORKER: dict = {}


def _make_teacher(cfg: Build2DConfig, seed: int) -> Teacher:
    if cfg.teacher == "noise":
        return NoiseTeacher(cfg.noise_teacher, seed=seed)
    if cfg.teacher == "oracle":
        return OracleTeacher()
    if cfg.teacher == "learned":
        if not cfg.lifter:
            raise ValueError("Build2DConfig.lifter: the learned teacher needs a lifter checkpoint path")
        # One model per process and checkpoint (file identity includes its mtime, so a
        # retrained lifter at the same path is reloaded).
        st = os.stat(cfg.lifter)
        key = ("learned", os.path.abspath(cfg.lifter), st.st_mtime_ns, st.st_size)
        if key not in _WORKER:
            _WORKER.clear()
            _WORKER[key] = LearnedTeacher.from_checkpoint(cfg.lifter)
        return _WORKER[key]
    raise ValueError(f"teacher: expected 'learned', 'noise' or 'oracle', got {cfg.teacher!r}")


def _work(args):
    corpus, clip_id, cfg = args
    torch.set_num_threads(1)
    joints = np.load(Path(corpus) / "new_joints" / f"{clip_id}.npy")
    seed = _clip_seed(cfg.seed, clip_id)
    rec = observe_clip(joints, _make_teacher(cfg, seed), camera=cfg.camera, noise=cfg.noise, seed=seed)
    return clip_id, rec


def _empty_record(J: int = 22, D: int = 263) -> dict:
    z = lambda *shape: np.zeros(shape, dtype=np.float32)  # noqa: E731
    return {
        "keypoints": z(0, J, 2), "scores": z(0, J), "camera": z(0, 3, 4), "camera_gt": z(0, 3, 4),
        "intrinsics": z(4), "teacher_features": z(0, D), "teacher_joints": z(0, J, 3),
        "gt_features": z(0, D), "gt_joints": z(0, J, 3),
    }


def _pack(records: list[tuple[str, dict]], per_frame: bool) -> tuple[dict, dict]:
    if not records:
        # An empty split keeps its array shapes so readers need no special case.
        obs, gt = _pack([("", _empty_record())], per_frame)
        for d in (obs, gt):
            d["ids"] = d["ids"][:0]
            d["feat_offsets"] = d["feat_offsets"][:1]
            d["joint_offsets"] = d["joint_offsets"][:1]
            if "intrinsics" in d:
                d["intrinsics"] = np.zeros((0, 4), dtype=np.float32)
            if "camera" in d:
                d["camera"] = np.zeros((0, 3, 4), dtype=np.float32)
        return obs, gt
    ids = np.array([cid for cid, _ in records])
    F = np.array([r["teacher_features"].shape[0] for _, r in records])
    T = np.array([r["teacher_joints"].shape[0] for _, r in records])
    off_f = np.concatenate([[0], np.cumsum(F)]).astype(np.int64)
    off_j = np.concatenate([[0], np.cumsum(T)]).astype(np.int64)
    cat = lambda k: np.concatenate([r[k] for _, r in records])  # noqa: E731
    stack = lambda k: np.stack([r[k] for _, r in records])  # noqa: E731
    obs = {
        "ids": ids, "feat_offsets": off_f, "joint_offsets": off_j,
        "keypoints": cat("keypoints"), "scores": cat("scores").astype(np.float32),
        "intrinsics": stack("intrinsics"),
        "teacher_features": cat("teacher_features"), "teacher_joints": cat("teacher_joints"),
    }
    gt = {
        "ids": ids, "feat_offsets": off_f, "joint_offsets": off_j,
        "gt_features": cat("gt_features"), "gt_joints": cat("gt_joints"),
    }
    if per_frame:
        obs["camera_frames"], gt["camera_frames"] = cat("camera"), cat("camera_gt")
    else:
        obs["camera"], gt["camera"] = stack("camera"), stack("camera_gt")
    return obs, gt


def _save_npz(path: Path, arrays: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def build_2d(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    config: Build2DConfig = Build2DConfig(),
    *,
    progress: bool = True,
    overwrite: bool = False,
    split: CorpusSplit | None = None,
) -> Path:
    """Build the 2D-only dataset of ``corpus`` into ``out`` (written to a temp folder, then renamed)."""
    corpus, out = Path(corpus), Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    if config.teacher == "learned" and not (config.lifter and Path(config.lifter).is_file()):
        raise FileNotFoundError(f"lifter checkpoint: {config.lifter!r} not found (train one with python -m vmdm.data.build.train_teacher)")
    if split is None and not (corpus / "meta.jsonl").is_file() and (corpus / "train.txt").is_file():
        # A corpus of real motion (no action families): every clip of its own splits is
        # observed, and the lifter, trained elsewhere, saw none of them.
        split = split_from_files(corpus)
    families = config.lifter_families
    if split is None and config.teacher == "learned":
        # The main split must exclude exactly the families the lifter was trained on.
        from vmdm.data.build.teacher import load_lifter

        trained_on = load_lifter(config.lifter).extra.get("lifter_families")
        if families is None:
            families = trained_on
        elif trained_on is not None and sorted(families) != sorted(trained_on):
            raise ValueError(
                f"lifter_families: {sorted(families)} differ from the families the lifter "
                f"{config.lifter} was trained on ({sorted(trained_on)})"
            )
    split = split or family_split(corpus, families, seed=config.seed)
    t0 = time.time()
    jobs = [(str(corpus), cid, config) for s in SPLITS for cid in split.main[s]]
    if not jobs:
        raise ValueError(f"{corpus}: the main split is empty (families {split.main_families})")
    results: dict[str, dict] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="build 2D dataset", unit="clip")
    if config.workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        with ctx.Pool(config.workers) as pool:
            for cid, rec in pool.imap_unordered(_work, jobs, chunksize=8):
                results[cid] = rec
                if bar is not None:
                    bar.update(1)
    else:
        threads = torch.get_num_threads()
        try:
            for job in jobs:
                cid, rec = _work(job)
                results[cid] = rec
                if bar is not None:
                    bar.update(1)
        finally:
            torch.set_num_threads(threads)
    if bar is not None:
        bar.close()

    with staged_folder(out) as tmp:
        (tmp / "gt").mkdir()
        texts = []
        counts = {}
        for s in SPLITS:
            recs = [(cid, results[cid]) for cid in split.main[s]]
            obs, gt = _pack(recs, config.camera.per_frame)
            _save_npz(tmp / f"obs_{s}.npz", obs)
            _save_npz(tmp / "gt" / f"{s}.npz", gt)
            (tmp / f"{s}.txt").write_text("".join(f"{c}\n" for c in split.main[s]))
            counts[s] = len(recs)
            for cid in split.main[s]:
                caps = [c.caption for c in read_texts(corpus / "texts" / f"{cid}.txt")]
                texts.append(json.dumps({"id": cid, "captions": caps}))
        (tmp / "texts.jsonl").write_text("\n".join(texts) + "\n")
        train = [results[c] for c in split.main["train"]] or list(results.values())
        for sub, key in (("teacher", "teacher_features"), ("gt", "gt_features")):
            mean, std = compute_mean_std([r[key] for r in train], SMPL22)
            (tmp / sub).mkdir(exist_ok=True)
            np.save(tmp / sub / "Mean.npy", mean)
            np.save(tmp / sub / "Std.npy", std)
        meta = {
            "format": FORMAT,
            **feature_convention_record(),
            "skeleton": SMPL22.name,
            "fps": 20.0,
            "feature_dim": SMPL22.feature_dim,
            "keypoints": "normalized",
            "per_frame_camera": config.camera.per_frame,
            "teacher": config.teacher,
            "lifter": str(config.lifter) if config.lifter else None,
            "corpus": str(corpus),
            "lifter_families": split.lifter_families,
            "main_families": split.main_families,
            "splits": counts,
            "teacher_error": {sp: teacher_error([results[c] for c in split.main[sp]]) for sp in SPLITS},
            "seed": config.seed,
            "camera": asdict(config.camera),
            "noise": asdict(config.noise),
            "build_s": round(time.time() - t0, 1),
        }
        (tmp / "vmdm_2d.json").write_text(json.dumps(meta, indent=1))
    return out


@dataclass
class Build2DRunConfig:
    """``python -m vmdm.data.build.build_2d``: one build, from a corpus folder to an output folder.

    The build itself is configured by :class:`Build2DConfig` (:meth:`build_config`); this adds
    the folders and run options, and exposes the camera options the command line has.
    """

    corpus: str = cli_field(REQUIRED, "3D corpus folder in HumanML3D format: the built-in corpus (its meta.jsonl "
                                      "gives the lifter's family split) or real motion such as the Bandai folder of "
                                      "prepare bandai (its train/val/test.txt are used, every clip observed)")
    out: str = cli_field(REQUIRED, "output folder (must not exist unless --overwrite)")
    teacher: str = cli_field("learned", "learned (a lifter checkpoint), noise (analytic lifter errors) or oracle "
                                        "(the true motion: an upper bound for 2D supervision)",
                             choices=["learned", "noise", "oracle"])
    lifter: str | None = cli_field(None, "lifter checkpoint for --teacher learned")
    lifter_families: list[str] | None = cli_field(None, "comma-separated families held out for the lifter", sep=",")
    per_frame_camera: bool = cli_field(False, "slowly panning per-frame cameras")
    distance: float = cli_field(2.5, "camera distance to the closest joint, metres")
    seed: int = cli_field(0, "random seed (family split, cameras, detector noise, teacher errors)")
    workers: int = cli_field(min(2, os.cpu_count() or 1), "processes observing clips")
    overwrite: bool = cli_field(False, "replace an existing output folder")
    progress: bool = cli_field(True, "show a progress bar")

    def build_config(self) -> Build2DConfig:
        return Build2DConfig(teacher=self.teacher, lifter=self.lifter,
                             camera=CameraConfig(distance=self.distance, per_frame=self.per_frame_camera),
                             lifter_families=self.lifter_families or None, seed=self.seed, workers=self.workers)


def run_build_2d(cfg: Build2DRunConfig) -> Path:
    """:func:`build_2d` as ``cfg`` says; returns the output folder."""
    return build_2d(cfg.corpus, cfg.out, cfg.build_config(), progress=cfg.progress, overwrite=cfg.overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(Build2DRunConfig, "python -m vmdm.data.build.build_2d", __doc__.split("\n\n")[0])
    out = run_build_2d(from_args(Build2DRunConfig, parser.parse_args(argv)))
    meta = json.loads((out / "vmdm_2d.json").read_text())
    print(f"wrote {out}: splits {meta['splits']}, teacher {meta['teacher']}, {meta['build_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
