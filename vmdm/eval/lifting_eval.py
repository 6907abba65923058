"""Lifting accuracy: 2D keypoint sequences lifted to 3D, scored against the true 3D.

Two sources of cases, one scoring path:

* :func:`split_cases` — the 2D-only dataset's test split: the observed (noisy,
  detector-like) keypoints with their camera and the ground truth from ``gt/test.npz``,
  plus the teacher lift that was stored when the dataset was built (what the
  teacher-supervised models trained on), moved into the ground truth's frame.
* :func:`cmu_cases` — the paper's Fit3D-style protocol on real motion capture: every CMU
  clip (22 joints, 20 fps) cut into windows, each projected through a random camera with
  simulated detector noise (the same camera and noise models as the training data).

A lifter is any ``f(case, index) -> joints [F, J, 3]`` in the case's world frame; one
that also has ``lift_cases(cases) -> [joints, ...]`` is run on all cases at once.
:func:`teacher_lifter` wraps the learned teacher, :func:`prior_lifter` a trained motion
prior through :func:`vmdm.inference.lifting.lift` (ray-projection guidance). :func:`score_lifters`
pools per-frame errors over all cases: MPJPE without any alignment, PA-MPJPE, acceleration
error (all mm) and the 2D reprojection error against the observed keypoints (pixels).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vmdm.motion.cameras import (
    CameraConfig,
    DetectorNoiseConfig,
    compose_rigid,
    detector_noise,
    invert_extrinsic,
    pixels_to_normalized,
    project,
    sample_camera,
    transform_points,
)
from vmdm.eval.geometry import (
    accel_error_per_frame,
    body_size_ratio,
    canonical_mpjpe_per_frame,
    mpjpe_per_frame,
    pa_mpjpe_per_frame,
    reprojection_error_per_frame,
    root_error_per_frame,
    root_relative_mpjpe_per_frame,
)

__all__ = ["LiftCase", "split_cases", "cmu_cases", "teacher_lifter", "prior_lifter", "stored_teacher",
           "with_teacher", "score_lifters", "Lifter"]


@dataclass
class LiftCase:
    name: str
    keypoints: np.ndarray  # [F, J, 2] normalised image coordinates
    scores: np.ndarray  # [F, J], 0 = not detected
    camera: np.ndarray  # [3, 4] or [F, 3, 4]: world (the ground truth's frame) -> camera
    intrinsics: np.ndarray  # [4] pixel camera, for errors in pixels
    gt: np.ndarray  # [F, J, 3] true joints, world frame
    caption: str = ""
    teacher: np.ndarray | None = None  # a stored teacher lift [F, J, 3], world frame


Lifter = Callable[[LiftCase, int], np.ndarray]


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def split_cases(data_root: str | Path, max_frames: int = 196, limit: int | None = None,
                     split: str = "test") -> list[LiftCase]:
    """Cases from a 2D-only dataset (``vmdm_2d.json``); the first ``max_frames`` frames of each
    clip, the first ``limit`` clips. Empty for datasets without keypoints."""
    root = Path(data_root)
    if not (root / "vmdm_2d.json").is_file():
        return []
    obs = _load_npz(root / f"obs_{split}.npz")
    gt = _load_npz(root / "gt" / f"{split}.npz")
    texts = {}
    for line in (root / "texts.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            texts[str(rec["id"])] = rec["captions"]
    ids = [str(i) for i in obs["ids"]]
    if [str(i) for i in gt["ids"]] != ids:
        raise ValueError(f"{root}: gt/{split}.npz and obs_{split}.npz list different clips")
    cases = []
    for i, cid in enumerate(ids[:limit]):
        a, b = int(obs["feat_offsets"][i]), int(obs["feat_offsets"][i + 1])
        ja = int(obs["joint_offsets"][i])
        F = min(b - a, max_frames)
        per_frame = "camera_frames" in obs
        cam_obs = obs["camera_frames"][a:a + F] if per_frame else obs["camera"][i]
        cam_gt = gt["camera_frames"][a:a + F] if per_frame else gt["camera"][i]
        # The stored lift is in the teacher's canonical frame; its camera maps it to the same
        # camera frame as the ground truth's camera does, so chain the two to reach the GT frame.
        to_gt = compose_rigid(invert_extrinsic(torch.from_numpy(cam_gt).double()), torch.from_numpy(cam_obs).double())
        teacher = transform_points(torch.from_numpy(obs["teacher_joints"][ja:ja + F]).double(), to_gt).numpy()
        cases.append(LiftCase(
            name=cid, keypoints=obs["keypoints"][a:a + F].astype(np.float64), scores=obs["scores"][a:a + F].astype(np.float64),
            camera=cam_gt.astype(np.float64), intrinsics=obs["intrinsics"][i].astype(np.float64),
            gt=gt["gt_joints"][ja:ja + F].astype(np.float64), caption=(texts.get(cid) or [""])[0], teacher=teacher))
    return cases


def cmu_cases(root: str | Path | None = None, *, window: int = 120, max_windows_per_clip: int | None = None,
              views: int = 1, seed: int = 0, camera: CameraConfig = CameraConfig(),
              noise: DetectorNoiseConfig = DetectorNoiseConfig(), clips=None) -> list[LiftCase]:
    """Real CMU clips (``vmdm.data.formats.cmu.load_cmu_testset``) cut into non-overlapping windows of
    ``window`` frames (a shorter clip is one window), each filmed by ``views`` random cameras
    with detector noise. ``clips``: pre-loaded ``CmuClip`` list (else read from ``root``)."""
    if clips is None:
        from vmdm.data.formats.cmu import load_cmu_testset

        clips = load_cmu_testset(root)
    g = torch.Generator().manual_seed(seed)
    cases = []
    for clip in clips:
        j = np.asarray(clip.joints, dtype=np.float64)
        starts = list(range(0, max(1, len(j) - window + 1), window))
        if max_windows_per_clip is not None:
            starts = starts[:max_windows_per_clip]
        for s in starts:
            w = torch.from_numpy(j[s:s + window])
            if w.shape[0] < 3:
                continue
            for v in range(views):
                E, K = sample_camera(w, camera, generator=g)
                uv_px, depth = project(w, E, K)
                noisy, scores = detector_noise(uv_px.float(), depth.float(), noise, generator=g)
                cases.append(LiftCase(
                    name=f"{clip.name}@{s}#{v}", keypoints=pixels_to_normalized(noisy.double(), K).numpy(),
                    scores=scores.double().numpy(), camera=E.numpy(), intrinsics=K.numpy(), gt=w.numpy()))
    return cases


# --------------------------------------------------------------------------- lifters


def stored_teacher(case: LiftCase, index: int) -> np.ndarray:
    """The teacher lift stored with the dataset."""
    if case.teacher is None:
        raise ValueError(f"case {case.name}: no stored teacher lift")
    return case.teacher


def teacher_lifter(lifter_path: str | Path) -> Lifter:
    """Re-run the learned teacher lifter on each case's keypoints."""
    from vmdm.data.build.teacher import LearnedTeacher

    teacher = LearnedTeacher.from_checkpoint(lifter_path)

    def run(case: LiftCase, index: int) -> np.ndarray:
        out = teacher.lift(torch.from_numpy(case.keypoints).float(), torch.from_numpy(case.scores).float(),
                           torch.from_numpy(case.camera).float())
        return out.double().numpy()

    return run


def prior_lifter(loaded_model, *, init: str = "noise", t_star: int | None = None, ramp: float | None = None,
                 sample_steps: int | None = None, seed: int = 0, use_text: bool = False,
                 guidance_strength: float = 1.0, batch_size: int = 1, smooth: float | None = None) -> Lifter:
    """A trained motion prior used as a lifter (:func:`vmdm.inference.lifting.lift`), from
    each case's teacher lift (``init="teacher"``, ``case.teacher`` must be set; ``t_star``
    default: the checkpoint's) or from noise (``ramp``, ``sample_steps``: default the
    lifter's own); unconditional unless ``use_text`` (the teacher sees no text either); ``smooth``: the
    Gaussian over the ray corrections (default: the lift's own).

    ``batch_size`` > 1: :func:`score_lifters` lifts the cases through
    :func:`vmdm.inference.lifting.lift_batch`, that many clips of a length at a time (the
    lifter's ``lift_cases``); a stochastic lift then draws different noise than case by case
    (seed + batch instead of seed + case)."""
    from vmdm.inference.lifting import lift, lift_batch

    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    max_f = loaded_model.model.cfg.max_frames

    def options(case: LiftCase) -> dict:
        F = case.keypoints.shape[0]
        if F > max_f:
            raise ValueError(f"case {case.name}: {F} frames exceed the model's {max_f}")
        kw = {"init": init, "ramp": ramp, "guidance_strength": guidance_strength}
        if smooth is not None:
            kw["smooth"] = smooth
        if init == "teacher":
            if case.teacher is None:
                raise ValueError(f"case {case.name}: init='teacher' needs the case's teacher lift")
            kw["t_star"] = t_star
        else:
            kw["sample_steps"] = sample_steps
        return kw

    def run(case: LiftCase, index: int) -> np.ndarray:
        kw = options(case)
        if init == "teacher":
            kw["teacher"] = case.teacher
        out = lift(loaded_model, case.keypoints, case.scores, case.camera, None,
                   case.caption if use_text else "", seed=seed + index, **kw)
        return np.asarray(out, dtype=np.float64)

    def lift_cases(cases: list[LiftCase]) -> list[np.ndarray]:
        kw = [options(c) for c in cases][0]  # every case checked; the options are the same for all
        res = lift_batch(loaded_model, [c.keypoints for c in cases], [c.scores for c in cases],
                         [c.camera for c in cases], None, [c.caption if use_text else "" for c in cases],
                         teachers=[c.teacher for c in cases] if init == "teacher" else None, seed=seed,
                         batch_size=batch_size, **kw)
        return [r.joints[0].double().numpy() for r in res]

    if batch_size > 1:
        run.lift_cases = lift_cases
    return run


def with_teacher(cases: list[LiftCase], teacher: Lifter) -> list[LiftCase]:
    """Give every case without a stored teacher lift ``teacher``'s lift of its keypoints (run
    once per case: the teacher row and a teacher-initialised prior then share it)."""
    for i, case in enumerate(cases):
        if case.teacher is None:
            case.teacher = np.asarray(teacher(case, i), dtype=np.float64)
    return cases


# --------------------------------------------------------------------------- scoring


def root_depth_error_per_frame(pred: np.ndarray, gt: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """``|z_pred - z_gt|`` of the root in the camera's frame, per frame (the part of the
    placement that 2D cannot see)."""
    cam = torch.from_numpy(np.asarray(camera, dtype=np.float64))
    z = lambda x: transform_points(torch.from_numpy(np.asarray(x[:, :1], dtype=np.float64)), cam)[:, 0, 2]  # noqa: E731
    return (z(pred) - z(gt)).abs().numpy()


def case_errors(pred: np.ndarray, case: LiftCase) -> dict[str, np.ndarray]:
    """Per-frame errors of one lift: mm for 3D, pixels for 2D."""
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != case.gt.shape:
        raise ValueError(f"case {case.name}: lift has shape {pred.shape}, ground truth {case.gt.shape}")
    kp_px = case.keypoints * case.intrinsics[:2] + case.intrinsics[2:]
    out = {
        "mpjpe": 1000 * mpjpe_per_frame(pred, case.gt),
        "canonical_mpjpe": 1000 * canonical_mpjpe_per_frame(pred, case.gt),
        "root_relative_mpjpe": 1000 * root_relative_mpjpe_per_frame(pred, case.gt),
        "root_error": 1000 * root_error_per_frame(pred, case.gt),
        "root_depth_error": 1000 * root_depth_error_per_frame(pred, case.gt, case.camera),
        "body_size": np.full(len(pred), body_size_ratio(pred, case.gt)),
        "pa_mpjpe": 1000 * pa_mpjpe_per_frame(pred, case.gt),
        "reproj_px": reprojection_error_per_frame(pred, kp_px, case.camera, case.scores, case.intrinsics),
    }
    if len(pred) >= 3:
        out["accel"] = 1000 * accel_error_per_frame(pred, case.gt)
    return out


# Pooled per-frame errors in millimetres, reported as "<name>_mm".
_MM_METRICS = ("mpjpe", "canonical_mpjpe", "root_relative_mpjpe", "root_error", "root_depth_error", "pa_mpjpe",
               "accel")


def score_lifters(cases: list[LiftCase], lifters: dict[str, Lifter], progress: bool = False,
                  desc: str = "lifting") -> dict[str, dict]:
    """Pooled errors of each lifter over all cases' frames:
    ``{name: {mpjpe_mm, pa_mpjpe_mm, accel_mm, reproj_px, n_cases, n_frames, seconds}}``."""
    from tqdm import tqdm

    out = {}
    for name, fn in lifters.items():
        pooled: dict[str, list[np.ndarray]] = {}
        t0 = time.time()
        batched = getattr(fn, "lift_cases", None)
        if batched is not None and cases:
            preds = batched(cases)
        else:
            preds = (fn(case, i) for i, case in enumerate(cases))
        for case, pred in zip(tqdm(cases, desc=f"{desc}: {name}", disable=not progress, leave=False), preds):
            for k, v in case_errors(pred, case).items():
                pooled.setdefault(k, []).append(v)
        cat = {k: np.concatenate(v) for k, v in pooled.items()}
        mean = lambda k: float(np.nanmean(cat[k])) if k in cat else float("nan")  # noqa: E731
        seconds = time.time() - t0
        out[name] = {
            **{f"{k}_mm": mean(k) for k in _MM_METRICS},
            "reproj_px": mean("reproj_px"),
            "body_size": mean("body_size"),
            "n_cases": len(cases),
            "n_frames": int(sum(len(c.gt) for c in cases)),
            "seconds": round(seconds, 1),
            "seconds_per_clip": round(seconds / max(len(cases), 1), 3),
        }
    return out
