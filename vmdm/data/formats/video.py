"""Real-video 2D data: detector joint layouts, PnP, and the video ``.npz`` clip format.

A video dataset is a folder (the format is specified in ``docs/data.md``)::

    root/
      video_format.json          {"format": "vmdm-video-1"}
      clips/<id>.npz             one clip: 2D keypoints, scores, teacher lift, captions, ...
      train.txt val.txt test.txt optional split lists (default: every clip is "train")
      Mean.npy Std.npy           optional teacher-feature statistics (default: from train)

Each clip's 2D keypoints (any supported detector layout) are mapped to SMPL22; joints
the detector does not have get weight 0 (their positions are interpolated from
neighbours so that nothing is NaN, see :data:`JOINT_MAPS`). The teacher lift (from any
external lifter) is canonicalised like the project's own lifts, the camera (given, or
estimated from the lift by PnP) is moved into the lift's canonical frame, and the lift
is encoded into 263-dim features. Clips come out in the same record layout as the
project's own 2D-only dataset, so :class:`vmdm.data.dataset.MotionDataset` serves both
(mode ``"2d"``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vmdm.motion.cameras import pixels_to_normalized
from vmdm.motion.representation import canonicalize, encode
from vmdm.motion.skeleton import SMPL22

__all__ = [
    "JointMap",
    "JOINT_MAPS",
    "map_keypoints",
    "solve_pnp",
    "VideoFormatError",
    "VIDEO_FORMAT",
    "load_video_clip",
    "load_video_dataset",
    "write_video_clip",
    "convert_2d_dataset",
]

log = logging.getLogger(__name__)

VIDEO_FORMAT = "vmdm-video-1"
SMPL_INDEX = {n: i for i, n in enumerate(SMPL22.joint_names)}


class VideoFormatError(ValueError):
    """A malformed clip or folder; the message names the file and field."""


# --------------------------------------------------------------------------- joint layouts


@dataclass(frozen=True)
class JointMap:
    """How a detector layout becomes SMPL22.

    ``exact``: SMPL joint -> source joint index (the detector's joint is the same body
    point). ``derived``: SMPL joint -> ``((source index, weight), ...)``, a weighted
    average of source joints standing in for a joint the detector lacks; derived joints
    get weight ``derived_weight`` x min(source scores) (0 by default: used to fill
    positions, never trusted by the 2D loss).
    """

    name: str
    num_joints: int
    exact: dict
    derived: dict


def _mid(*idx: int) -> tuple[tuple[int, float], ...]:
    return tuple((i, 1.0 / len(idx)) for i in idx)


def _lerp(a: tuple, b: tuple, t: float) -> tuple[tuple[int, float], ...]:
    """(1 - t) * a + t * b for weighted source lists a, b."""
    acc: dict[int, float] = {}
    for i, w in a:
        acc[i] = acc.get(i, 0.0) + (1 - t) * w
    for i, w in b:
        acc[i] = acc.get(i, 0.0) + t * w
    return tuple(acc.items())


def _torso_derived(pelvis, neck, l_sh, r_sh, head, l_ankle, r_ankle) -> dict:
    """Spine, collars, head and toes interpolated along the torso for layouts lacking them."""
    out = {
        "spine1": _lerp(pelvis, neck, 0.25),
        "spine2": _lerp(pelvis, neck, 0.5),
        "spine3": _lerp(pelvis, neck, 0.62),
        "left_collar": _lerp(neck, ((l_sh, 1.0),), 0.45),
        "right_collar": _lerp(neck, ((r_sh, 1.0),), 0.45),
        "left_foot": ((l_ankle, 1.0),),
        "right_foot": ((r_ankle, 1.0),),
    }
    if head is not None:
        out["head"] = head
    return out


def _coco17() -> JointMap:
    # nose, l_eye, r_eye, l_ear, r_ear, l_sho, r_sho, l_elb, r_elb, l_wri, r_wri,
    # l_hip, r_hip, l_knee, r_knee, l_ank, r_ank
    exact = {
        "left_shoulder": 5, "right_shoulder": 6, "left_elbow": 7, "right_elbow": 8,
        "left_wrist": 9, "right_wrist": 10, "left_hip": 11, "right_hip": 12,
        "left_knee": 13, "right_knee": 14, "left_ankle": 15, "right_ankle": 16,
    }
    pelvis, neck = _mid(11, 12), _mid(5, 6)
    derived = {"pelvis": pelvis, "neck": neck}
    derived.update(_torso_derived(pelvis, neck, 5, 6, _mid(3, 4), 15, 16))
    return JointMap("coco17", 17, exact, derived)


def _h36m17() -> JointMap:
    # pelvis, r_hip, r_knee, r_ank, l_hip, l_knee, l_ank, spine, thorax, neck/nose, head,
    # l_sho, l_elb, l_wri, r_sho, r_elb, r_wri
    exact = {
        "pelvis": 0, "right_hip": 1, "right_knee": 2, "right_ankle": 3, "left_hip": 4,
        "left_knee": 5, "left_ankle": 6, "left_shoulder": 11, "left_elbow": 12,
        "left_wrist": 13, "right_shoulder": 14, "right_elbow": 15, "right_wrist": 16,
    }
    derived = _torso_derived(((0, 1.0),), ((8, 1.0),), 11, 14, _mid(9, 10), 6, 3)
    derived["neck"] = ((8, 1.0),)
    return JointMap("h36m17", 17, exact, derived)


def _alphapose16() -> JointMap:
    # The project's DETECTOR16 order: pelvis, r_hip, r_knee, r_ank, l_hip, l_knee, l_ank,
    # thorax, neck, head_top, r_sho, r_elb, r_wri, l_sho, l_elb, l_wri
    exact = {
        "pelvis": 0, "right_hip": 1, "right_knee": 2, "right_ankle": 3, "left_hip": 4,
        "left_knee": 5, "left_ankle": 6, "right_shoulder": 10, "right_elbow": 11,
        "right_wrist": 12, "left_shoulder": 13, "left_elbow": 14, "left_wrist": 15,
    }
    derived = _torso_derived(((0, 1.0),), ((7, 1.0),), 13, 10, _lerp(((8, 1.0),), ((9, 1.0),), 0.4), 6, 3)
    derived["neck"] = ((8, 1.0),)
    return JointMap("alphapose16", 16, exact, derived)


def _mpii16() -> JointMap:
    # MPII order: r_ank, r_knee, r_hip, l_hip, l_knee, l_ank, pelvis, thorax, upper_neck,
    # head_top, r_wri, r_elb, r_sho, l_sho, l_elb, l_wri
    exact = {
        "right_ankle": 0, "right_knee": 1, "right_hip": 2, "left_hip": 3, "left_knee": 4,
        "left_ankle": 5, "pelvis": 6, "right_wrist": 10, "right_elbow": 11,
        "right_shoulder": 12, "left_shoulder": 13, "left_elbow": 14, "left_wrist": 15,
    }
    derived = _torso_derived(((6, 1.0),), ((7, 1.0),), 13, 12, _lerp(((8, 1.0),), ((9, 1.0),), 0.4), 5, 0)
    derived["neck"] = ((8, 1.0),)
    return JointMap("mpii16", 16, exact, derived)


def _smpl22() -> JointMap:
    return JointMap("smpl22", 22, {n: i for i, n in enumerate(SMPL22.joint_names)}, {})


JOINT_MAPS: dict[str, JointMap] = {m.name: m for m in (_coco17(), _h36m17(), _alphapose16(), _mpii16(), _smpl22())}
for _m in JOINT_MAPS.values():
    assert set(_m.exact) | set(_m.derived) == set(SMPL22.joint_names), _m.name
    assert not set(_m.exact) & set(_m.derived), _m.name


def map_keypoints(
    keypoints: np.ndarray, scores: np.ndarray, layout: str, derived_weight: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Detector keypoints ``[T, K, 2]`` + scores ``[T, K]`` -> SMPL22 ``[T, 22, 2]``, ``[T, 22]``."""
    if layout not in JOINT_MAPS:
        raise ValueError(f"layout: unknown joint layout {layout!r}; supported: {sorted(JOINT_MAPS)}")
    jm = JOINT_MAPS[layout]
    if keypoints.ndim != 3 or keypoints.shape[1:] != (jm.num_joints, 2):
        raise ValueError(f"keypoints: layout {layout!r} needs [T, {jm.num_joints}, 2], got {keypoints.shape}")
    T = keypoints.shape[0]
    out = np.zeros((T, 22, 2), dtype=np.float64)
    sc = np.zeros((T, 22), dtype=np.float64)
    for name, i in jm.exact.items():
        out[:, SMPL_INDEX[name]] = keypoints[:, i]
        sc[:, SMPL_INDEX[name]] = scores[:, i]
    for name, src in jm.derived.items():
        j = SMPL_INDEX[name]
        out[:, j] = sum(w * keypoints[:, i] for i, w in src)
        sc[:, j] = derived_weight * np.min(np.stack([scores[:, i] for i, _ in src]), axis=0)
    return out, sc


# --------------------------------------------------------------------------- PnP


def _rodrigues(r: torch.Tensor) -> torch.Tensor:
    theta = r.norm()
    K = torch.zeros(3, 3, dtype=r.dtype)
    K[0, 1], K[0, 2], K[1, 2] = -r[2], r[1], -r[0]
    K = K - K.T
    if theta < 1e-12:
        return torch.eye(3, dtype=r.dtype) + K
    Kn = K / theta
    return torch.eye(3, dtype=r.dtype) + torch.sin(theta) * Kn + (1 - torch.cos(theta)) * (Kn @ Kn)


def _dlt(X: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted, Hartley-normalised DLT; returns a proper rotation and translation."""
    c = np.average(X, axis=0, weights=w)
    s = np.sqrt(3) / np.sqrt(np.average(((X - c) ** 2).sum(1), weights=w))
    Xn = (X - c) * s
    ch = np.c_[Xn, np.ones(len(Xn))]
    A = np.zeros((2 * len(X), 12))
    A[0::2, 0:4] = ch
    A[0::2, 8:12] = -x[:, :1] * ch
    A[1::2, 4:8] = ch
    A[1::2, 8:12] = -x[:, 1:] * ch
    sw = np.sqrt(np.repeat(w, 2))[:, None]
    _, _, Vt = np.linalg.svd(A * sw, full_matrices=False)
    P = Vt[-1].reshape(3, 4)
    if np.median(ch @ P[2]) < 0:  # points must be in front of the camera
        P = -P
    U, S, Vt2 = np.linalg.svd(P[:, :3])
    R = U @ Vt2
    if np.linalg.det(R) < 0:
        # A reflection: the DLT found the mirrored solution; flip it and let GN fix the rest.
        R = U @ np.diag([1, 1, -1]) @ Vt2
    t_n = P[:, 3] / S.mean()
    # Undo the normalisation: Xn = s (X - c)  =>  R Xn + t_n = s R X + (t_n - s R c); divide by s.
    return R, t_n / s - R @ c


def solve_pnp(
    points: np.ndarray,
    uv: np.ndarray,
    weights: np.ndarray | None = None,
    iterations: int = 30,
    huber: float = 0.02,
    inlier: float = 0.03,
    ransac_iters: int = 64,
) -> tuple[np.ndarray, dict]:
    """Static camera ``[3, 4]`` (``X_cam = R X + t``) from 3D-2D correspondences.

    points ``[N, 3]`` world, uv ``[N, 2]`` normalised image coordinates, weights ``[N]``
    (0 ignores a point). RANSAC over 12-point DLTs (Hartley-normalised; ``inlier`` is the
    inlier threshold) gives the start, a DLT on its inliers improves it, and
    Levenberg-Marquardt on rotation vector + translation with Huber weights (``huber``,
    normalised image units) refines it. Returns ``(extrinsic, info)`` with the RMS reprojection error.
    """
    X = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    x = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if not (len(X) == len(x) == len(w)):
        raise ValueError(f"solve_pnp: points ({len(X)}), uv ({len(x)}) and weights ({len(w)}) differ in length")
    keep = (w > 0) & np.isfinite(X).all(1) & np.isfinite(x).all(1)
    if keep.sum() < 6:
        raise ValueError(f"solve_pnp: need at least 6 weighted correspondences, got {int(keep.sum())}")
    X, x, w = X[keep], x[keep], w[keep]

    def reproj(R, t):
        Xc = X @ R.T + t
        return np.linalg.norm(Xc[:, :2] / np.maximum(Xc[:, 2:], 1e-6) - x, axis=1)

    # RANSAC over 12-point DLTs: gross 2D outliers (a detector's wrong limb) and nearly
    # planar point sets (a person walking in a straight line) defeat one global DLT.
    rng = np.random.default_rng(0)
    best, best_score = None, -1.0
    for _ in range(ransac_iters):
        idx = rng.choice(len(X), size=min(len(X), 12), replace=False, p=w / w.sum())
        try:
            R, t = _dlt(X[idx], x[idx], np.ones(len(idx)))
        except np.linalg.LinAlgError:
            continue
        score = float((w * (reproj(R, t) < inlier)).sum())
        if score > best_score:
            best, best_score = (R, t), score
    R, t = best
    # Re-fit on the inliers, then let Huber-weighted least squares take over.
    for _ in range(3):
        wi = w * (reproj(R, t) < inlier)
        if wi.sum() >= 6:
            R, t = _dlt(X, x, wi)
    # Gauss-Newton (Levenberg-Marquardt) refinement, re-linearising the rotation as
    # R <- exp(dr) R after every accepted step, with an analytic Jacobian.
    sw2 = np.repeat(w, 2)

    def residual(Rm, tv):
        Xc = X @ Rm.T + tv
        z = np.maximum(Xc[:, 2], 1e-6)
        return (Xc[:, :2] / z[:, None] - x).reshape(-1), Xc, z

    lam = 1e-3
    r, Xc, z = residual(R, t)
    for _ in range(iterations):
        per = np.linalg.norm(r.reshape(-1, 2), axis=1)
        hub = np.where(per <= huber, 1.0, huber / np.maximum(per, 1e-12))
        W = sw2 * np.repeat(hub, 2)
        dproj = np.zeros((len(X), 2, 3))
        dproj[:, 0, 0] = 1 / z
        dproj[:, 1, 1] = 1 / z
        dproj[:, 0, 2] = -Xc[:, 0] / z**2
        dproj[:, 1, 2] = -Xc[:, 1] / z**2
        RX = X @ R.T
        skew = np.zeros((len(X), 3, 3))
        skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -RX[:, 2], RX[:, 1], -RX[:, 0]
        skew = skew - skew.transpose(0, 2, 1)
        Jm = np.concatenate([dproj @ -skew, dproj], axis=2).reshape(-1, 6)
        H = Jm.T @ (W[:, None] * Jm)
        g = Jm.T @ (W * r)
        step = np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-9), -g)
        R_new = _rodrigues(torch.from_numpy(step[:3])).numpy() @ R
        t_new = t + step[3:]
        r_new, Xc_new, z_new = residual(R_new, t_new)
        if (W * r_new**2).sum() < (W * r**2).sum():
            R, t, r, Xc, z = R_new, t_new, r_new, Xc_new, z_new
            lam = max(lam / 3, 1e-7)
            if np.linalg.norm(step) < 1e-10:
                break
        else:
            lam *= 10
    Rf, tf = R, t
    rms = float(np.sqrt(np.average((r.reshape(-1, 2) ** 2).sum(1), weights=w)))
    return np.concatenate([Rf, tf[:, None]], axis=1), {"rms": rms, "points": int(len(X))}


# --------------------------------------------------------------------------- clip format

_LAYOUT_FIELDS = ("keypoints", "captions")
TARGET_FPS = 20.0


def _err(path, field, msg) -> VideoFormatError:
    return VideoFormatError(f"{path}: field {field!r}: {msg}")


def _scalar_str(z, key, default, path):
    if key not in z:
        return default
    v = z[key]
    if v.ndim != 0:
        raise _err(path, key, f"expected a string scalar, got an array of shape {v.shape}")
    return str(v.item())


def write_video_clip(
    path: str | os.PathLike,
    *,
    keypoints: np.ndarray,
    lift: np.ndarray | None,
    captions: list[str],
    scores: np.ndarray | None = None,
    layout: str = "smpl22",
    coords: str = "normalized",
    intrinsics: np.ndarray | None = None,
    extrinsics: np.ndarray | None = None,
    lift_frame: str = "world",
    fps: float = TARGET_FPS,
) -> Path:
    """Write one clip in the video ``.npz`` format (fields documented in docs/data.md);
    ``lift=None`` writes a clip without a teacher lift (:func:`load_video_clip` then needs
    a ``teacher``)."""
    arrays = {
        "keypoints": np.asarray(keypoints, dtype=np.float32),
        "captions": np.array([str(c) for c in captions]),
        "layout": np.array(layout),
        "coords": np.array(coords),
        "lift_frame": np.array(lift_frame),
        "fps": np.array(float(fps)),
    }
    if lift is not None:
        arrays["lift"] = np.asarray(lift, dtype=np.float32)
    if scores is not None:
        arrays["scores"] = np.asarray(scores, dtype=np.float32)
    if intrinsics is not None:
        arrays["intrinsics"] = np.asarray(intrinsics, dtype=np.float32)
    if extrinsics is not None:
        arrays["extrinsics"] = np.asarray(extrinsics, dtype=np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _resample(x: np.ndarray, src_fps: float, n_out: int, nearest: bool = False) -> np.ndarray:
    t = np.arange(n_out) * (src_fps / TARGET_FPS)
    if nearest:
        return x[np.minimum(np.round(t).astype(int), len(x) - 1)]
    i0 = np.minimum(np.floor(t).astype(int), len(x) - 1)
    i1 = np.minimum(i0 + 1, len(x) - 1)
    w = (t - i0).reshape((-1,) + (1,) * (x.ndim - 1))
    return x[i0] * (1 - w) + x[i1] * w


def load_video_clip(path: str | os.PathLike, derived_weight: float = 0.0, teacher=None) -> dict:
    """Read, validate and process one video clip into the 2D-dataset record layout.

    Returns ``keypoints`` [F, 22, 2] (normalised), ``scores`` [F, 22], ``camera`` [3, 4] or
    [F, 3, 4] (lift canonical frame), ``intrinsics`` [4] (identity ``(1, 1, 0, 0)`` for
    normalised input), ``teacher_features`` [F, D], ``teacher_joints`` [T, 22, 3]
    (canonical), ``captions`` list[str], ``pnp_rms`` (NaN when the camera was given) and
    ``lift_source`` (``"clip"``, or ``"teacher"`` when ``teacher`` made it).

    ``teacher``: a lifter for clips without a ``lift`` field, ``(keypoints [T, 22, 2]
    normalised, scores [T, 22]) -> joints [T, 22, 3]`` in the camera's frame (x right, y
    down, z forward), called on the SMPL22 keypoints at 20 fps; its lift is then used as a
    world-frame lift seen by the clip's ``extrinsics`` or, without them, as a camera-frame
    lift. Without ``teacher`` a clip must have its lift.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoFormatError(f"{path}: clip file missing")
    try:
        z = dict(np.load(path, allow_pickle=False))
    except Exception as e:  # a truncated or foreign file
        raise VideoFormatError(f"{path}: unreadable as .npz ({e})") from None
    for key in _LAYOUT_FIELDS:
        if key not in z:
            raise _err(path, key, "required field missing")
    layout = _scalar_str(z, "layout", "smpl22", path)
    if layout not in JOINT_MAPS:
        raise _err(path, "layout", f"unknown layout {layout!r}; supported: {sorted(JOINT_MAPS)}")
    K_src = JOINT_MAPS[layout].num_joints
    kp = np.asarray(z["keypoints"], dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (K_src, 2):
        raise _err(path, "keypoints", f"layout {layout!r} needs shape [T, {K_src}, 2], got {kp.shape}")
    T = kp.shape[0]
    if not np.isfinite(kp).all():
        bad = np.argwhere(~np.isfinite(kp))[0]
        raise _err(path, "keypoints", f"NaN or inf at frame {bad[0]}, joint {bad[1]}")
    sc = np.asarray(z.get("scores", np.ones((T, K_src))), dtype=np.float64)
    if sc.shape != (T, K_src):
        raise _err(path, "scores", f"expected shape {(T, K_src)}, got {sc.shape}")
    if not np.isfinite(sc).all() or (sc < 0).any() or (sc > 1).any():
        raise _err(path, "scores", "values must be finite and in [0, 1]")
    lift = None
    if "lift" in z:
        lift = np.asarray(z["lift"], dtype=np.float64)
        if lift.ndim != 3 or lift.shape[1:] != (22, 3):
            raise _err(path, "lift", f"expected SMPL22 joints [T, 22, 3], got {lift.shape}")
        if lift.shape[0] != T:
            raise _err(path, "lift", f"has {lift.shape[0]} frames but keypoints have {T}")
        if not np.isfinite(lift).all():
            raise _err(path, "lift", "contains NaN or inf")
    elif teacher is None:
        raise _err(path, "lift", "required field missing (no teacher lifter was given to lift the keypoints)")
    caps = [str(c) for c in np.atleast_1d(z["captions"])]
    if not caps or any(not c.strip() for c in caps):
        raise _err(path, "captions", f"need at least one non-empty caption, got {caps!r}")
    coords = _scalar_str(z, "coords", "normalized", path)
    if coords not in ("pixel", "normalized"):
        raise _err(path, "coords", f"expected 'pixel' or 'normalized', got {coords!r}")
    intr = None
    if coords == "pixel":
        if "intrinsics" not in z:
            raise _err(path, "intrinsics", "required when coords is 'pixel'")
        intr = np.asarray(z["intrinsics"], dtype=np.float64)
        if intr.shape != (4,) or not np.isfinite(intr).all() or (intr[:2] <= 0).any():
            raise _err(path, "intrinsics", f"expected (fx, fy, cx, cy) with positive focal lengths, got {intr}")
    lift_frame = _scalar_str(z, "lift_frame", "world", path)
    if lift_frame not in ("world", "camera"):
        raise _err(path, "lift_frame", f"expected 'world' or 'camera', got {lift_frame!r}")
    ext = None
    if "extrinsics" in z:
        if lift_frame == "camera" and lift is not None:
            raise _err(path, "extrinsics", "must be absent when lift_frame is 'camera'")
        ext = np.asarray(z["extrinsics"], dtype=np.float64)
        if ext.shape not in ((3, 4), (T, 3, 4)) or not np.isfinite(ext).all():
            raise _err(path, "extrinsics", f"expected finite [3, 4] or [{T}, 3, 4], got {ext.shape}")
    fps = float(z["fps"]) if "fps" in z else TARGET_FPS
    if not fps > 0:
        raise _err(path, "fps", f"must be positive, got {fps}")
    if abs(fps - TARGET_FPS) > 1e-6:
        n = int(np.floor((T - 1) * TARGET_FPS / fps)) + 1
        kp = _resample(kp, fps, n)
        lift = None if lift is None else _resample(lift, fps, n)
        sc = _resample(sc, fps, n, nearest=True)
        if ext is not None and ext.ndim == 3:
            ext = _resample(ext, fps, n, nearest=True)
        T = n
    if T < 2:
        raise _err(path, "keypoints", f"need at least 2 frames at {TARGET_FPS:g} fps, got {T}")

    kp22, sc22 = map_keypoints(kp, sc, layout, derived_weight)
    if intr is not None:
        kp22 = pixels_to_normalized(torch.from_numpy(kp22), torch.from_numpy(intr)).numpy()
    pnp_rms = float("nan")
    source = "clip"
    if lift is None:
        lift, source = _teacher_lift(teacher, kp22, sc22, path), "teacher"
        if ext is not None:
            lift = _camera_to_world(lift, ext)
        lift_frame = "world" if ext is not None else "camera"
    if lift_frame == "camera":
        # Camera-frame lift (x right, y down, z forward): turn it upright as a level camera
        # would see it; the extrinsic of that world is the same 180-degree flip about x.
        flip = np.diag([1.0, -1.0, -1.0])
        lift = lift @ flip.T
        ext = np.concatenate([flip, np.zeros((3, 1))], axis=1)
    elif ext is None:
        ext, info = solve_pnp(lift.reshape(-1, 3), kp22.reshape(-1, 2), sc22.reshape(-1))
        pnp_rms = info["rms"]
    lift_t = torch.from_numpy(lift)
    canon, tf = canonicalize(lift_t, SMPL22)
    E = torch.from_numpy(ext)
    R, t = tf.apply_camera(E[..., :3], E[..., 3])
    cam = torch.cat([R, t[..., None]], dim=-1).numpy()
    F = T - 1
    return {
        "keypoints": kp22[:F].astype(np.float32),
        "scores": sc22[:F].astype(np.float32),
        "camera": (cam[:F] if cam.ndim == 3 else cam).astype(np.float32),
        "intrinsics": (intr if intr is not None else np.array([1.0, 1.0, 0.0, 0.0])).astype(np.float32),
        "teacher_features": encode(lift_t, SMPL22).numpy().astype(np.float32),
        "teacher_joints": canon.numpy().astype(np.float32),
        "captions": caps,
        "pnp_rms": pnp_rms,
        "lift_source": source,
    }


def _teacher_lift(teacher, kp22: np.ndarray, sc22: np.ndarray, path) -> np.ndarray:
    """The ``teacher``'s camera-frame lift of the clip's keypoints, checked."""
    T = kp22.shape[0]
    lift = np.asarray(teacher(kp22, sc22), dtype=np.float64)
    if lift.shape != (T, 22, 3) or not np.isfinite(lift).all():
        raise _err(path, "lift", f"the teacher lifter returned {lift.shape} (finite: {np.isfinite(lift).all()}), "
                                 f"expected finite [{T}, 22, 3]")
    return lift


def _camera_to_world(x_cam: np.ndarray, ext: np.ndarray) -> np.ndarray:
    """Camera-frame joints ``[T, J, 3]`` -> world for an extrinsic ``[3, 4]`` or ``[T, 3, 4]``."""
    R, t = ext[..., :3], ext[..., 3]
    if ext.ndim == 3:
        R, t = R[:, None], t[:, None]
    return np.einsum("...ji,...j->...i", R, x_cam - t)


def _split_ids(root: Path, split: str) -> list[str]:
    f = root / f"{split}.txt"
    if f.is_file():
        return [l.strip() for l in f.read_text().splitlines() if l.strip()]
    if any((root / f"{s}.txt").is_file() for s in ("train", "val", "test")):
        raise VideoFormatError(f"{f}: split file missing")
    if split != "train":
        raise VideoFormatError(f"{root}: no split files, so every clip is 'train'; split {split!r} is empty")
    return sorted(p.stem for p in (root / "clips").glob("*.npz"))


def load_video_dataset(
    root: str | os.PathLike, split: str = "train", *, skip_bad: bool = False, derived_weight: float = 0.0
):
    """Load and process every clip of a split.

    Returns ``(packed, normalizer, captions)``: ``packed`` has the arrays of the 2D
    dataset's ``obs_<split>.npz`` (see :mod:`vmdm.data.build.build_2d`), ``normalizer`` comes
    from the folder's ``Mean.npy``/``Std.npy`` or, if absent, from its train split.
    With ``skip_bad`` a bad clip is logged and skipped instead of raising.
    """
    from vmdm.motion.representation import Normalizer, compute_mean_std

    root = Path(root)
    marker = root / "video_format.json"
    if not marker.is_file():
        raise VideoFormatError(f"{marker}: missing; not a video dataset folder")
    fmt = json.loads(marker.read_text()).get("format")
    if fmt != VIDEO_FORMAT:
        raise VideoFormatError(f"{marker}: format {fmt!r}, expected {VIDEO_FORMAT!r}")

    def load_split(s):
        recs = []
        for cid in _split_ids(root, s):
            try:
                recs.append((cid, load_video_clip(root / "clips" / f"{cid}.npz", derived_weight)))
            except VideoFormatError as e:
                if not skip_bad:
                    raise
                log.warning("skipping clip %s: %s", cid, e)
        return recs

    recs = load_split(split)
    if not recs:
        raise VideoFormatError(f"{root}: split {split!r} has no usable clips")
    if (root / "Mean.npy").is_file():
        normalizer = Normalizer.load(root)
    else:
        train = recs if split == "train" else load_split("train")
        normalizer = Normalizer(*compute_mean_std([r["teacher_features"] for _, r in train], SMPL22))
    F = [r["teacher_features"].shape[0] for _, r in recs]
    T = [r["teacher_joints"].shape[0] for _, r in recs]
    per_frame = any(r["camera"].ndim == 3 for _, r in recs)
    packed = {
        "ids": np.array([c for c, _ in recs]),
        "feat_offsets": np.concatenate([[0], np.cumsum(F)]).astype(np.int64),
        "joint_offsets": np.concatenate([[0], np.cumsum(T)]).astype(np.int64),
        "keypoints": np.concatenate([r["keypoints"] for _, r in recs]),
        "scores": np.concatenate([r["scores"] for _, r in recs]),
        "intrinsics": np.stack([r["intrinsics"] for _, r in recs]),
        "teacher_features": np.concatenate([r["teacher_features"] for _, r in recs]),
        "teacher_joints": np.concatenate([r["teacher_joints"] for _, r in recs]),
        "pnp_rms": np.array([r["pnp_rms"] for _, r in recs]),
    }
    if per_frame:
        packed["camera_frames"] = np.concatenate(
            [np.broadcast_to(r["camera"], (f, 3, 4)) for (_, r), f in zip(recs, F)]
        ).astype(np.float32)
    else:
        packed["camera"] = np.stack([r["camera"] for _, r in recs])
    return packed, normalizer, {c: r["captions"] for c, r in recs}


def convert_2d_dataset(src: str | os.PathLike, dst: str | os.PathLike, splits=("train", "val", "test")) -> Path:
    """Write the project's 2D-only dataset as a video folder (never reads its ``gt/``).

    Keypoints cover the first ``F = T - 1`` frames in the 2D dataset; the last frame is
    written with score 0 (no observation) so that keypoints and lift have equal length.
    """
    src, dst = Path(src), Path(dst)
    meta = json.loads((src / "vmdm_2d.json").read_text())
    if meta.get("format") != "vmdm-2d-1":
        raise VideoFormatError(f"{src / 'vmdm_2d.json'}: not a vmdm 2D dataset")
    captions = {}
    for line in (src / "texts.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            captions[rec["id"]] = rec["captions"]
    (dst / "clips").mkdir(parents=True, exist_ok=True)
    for s in splits:
        with np.load(src / f"obs_{s}.npz") as z:
            obs = {k: z[k] for k in z.files}
        ids = [str(i) for i in obs["ids"]]
        for i, cid in enumerate(ids):
            a, b = obs["feat_offsets"][i], obs["feat_offsets"][i + 1]
            ja, jb = obs["joint_offsets"][i], obs["joint_offsets"][i + 1]
            kp = obs["keypoints"][a:b]
            sc = obs["scores"][a:b]
            kp = np.concatenate([kp, kp[-1:]])
            sc = np.concatenate([sc, np.zeros_like(sc[-1:])])
            if "camera_frames" in obs:
                cam = obs["camera_frames"][a:b]
                cam = np.concatenate([cam, cam[-1:]])
            else:
                cam = obs["camera"][i]
            write_video_clip(
                dst / "clips" / f"{cid}.npz", keypoints=kp, scores=sc, lift=obs["teacher_joints"][ja:jb],
                captions=captions[cid], layout="smpl22", coords="normalized", extrinsics=cam,
            )
        (dst / f"{s}.txt").write_text("".join(f"{c}\n" for c in ids))
    for name in ("Mean.npy", "Std.npy"):
        (dst / name).write_bytes((src / "teacher" / name).read_bytes())
    (dst / "video_format.json").write_text(json.dumps({"format": VIDEO_FORMAT, "converted_from": str(src)}))
    return dst
