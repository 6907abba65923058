"""Geometric metrics on joint positions: physical plausibility and lifting accuracy.

Conventions: joints ``[T, J, 3]`` (one clip) or ``[N, T, J, 3]`` with ``lengths [N]``, in
metres, y up, floor at y = 0 (the HumanML3D canonical frame that ``decode`` returns), 20 fps.
Everything is computed in float64 numpy; torch tensors are accepted.

Plausibility (generated motion):

* **foot skating ratio** — GMD's definition (Karunratanakul et al. 2023, also used by
  OmniControl): the toe joints (SMPL 10/11) are in contact when their height is below
  5 cm in two consecutive frames; a contact frame skates when the toe's horizontal speed
  exceeds 0.5 m/s (2.5 cm per frame at 20 fps) both in that frame and averaged over a
  centred 5-frame window (zero-padded at the clip's ends); the clip's ratio is the
  fraction of its ``T - 1`` frame transitions in which either foot skates.
* **floor penetration** — mean over frames of how far the lowest joint is below the floor
  (0 when above), metres.
* **jitter** — mean acceleration magnitude over joints and frames, m/s² (second finite
  difference times fps²).

Lifting (prediction vs ground truth in the same frame, per frame so clips can be pooled):

* **MPJPE** — mean joint distance, no root or rigid alignment (the paper's Fit3D protocol).
* **PA-MPJPE** — after a per-frame similarity (rotation, translation, scale) Procrustes fit.
* **acceleration error** — mean distance between predicted and true second differences
  (per frame², the HMMR / VIBE definition; multiply by fps² for m/s²).
* **2D reprojection error** — distance between the projected prediction and the observed
  keypoints over detected joints (pixels with intrinsics, else normalised units).
* **canonical-frame MPJPE** — MPJPE after putting prediction and ground truth each in its
  own HumanML3D canonical frame (floor at 0, root at the xz origin and facing +z at frame
  0): the VideoMDM release's protocol, blind to the clip's placement and heading at frame
  0 but not to drift after it.
* **root-relative MPJPE** — MPJPE with the root subtracted in every frame (pose and body
  size, not placement); **root error** — distance of the roots (placement only);
  **body size** — mean bone length of the prediction over that of the ground truth.
"""

from __future__ import annotations

import numpy as np

from vmdm.motion.skeleton import SMPL22, Skeleton

__all__ = [
    "FPS",
    "foot_skating_ratio",
    "floor_penetration",
    "jitter",
    "geometric_metrics",
    "mpjpe_per_frame",
    "procrustes_align",
    "pa_mpjpe_per_frame",
    "accel_error_per_frame",
    "reprojection_error_per_frame",
    "canonical_mpjpe_per_frame",
    "root_relative_mpjpe_per_frame",
    "root_error_per_frame",
    "body_size_ratio",
]

FPS = 20.0


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _clips(joints, lengths) -> list[np.ndarray]:
    """Valid frames of each clip as a list of ``[T_i, J, 3]`` arrays."""
    j = _np(joints)
    if j.ndim == 3:
        j = j[None]
    if j.ndim != 4 or j.shape[-1] != 3:
        raise ValueError(f"joints: expected [T, J, 3] or [N, T, J, 3], got shape {j.shape}")
    if lengths is None:
        lengths = [j.shape[1]] * j.shape[0]
    lengths = [int(n) for n in np.asarray(_np(lengths)).reshape(-1)]
    if len(lengths) != j.shape[0]:
        raise ValueError(f"lengths: expected {j.shape[0]} values, got {len(lengths)}")
    if any(n < 1 or n > j.shape[1] for n in lengths):
        raise ValueError(f"lengths: each must be in [1, {j.shape[1]}], got {lengths}")
    return [j[i, :n] for i, n in enumerate(lengths)]


def _centred_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 with zeros outside (``uniform_filter1d``, mode constant)."""
    if window % 2 != 1:
        raise ValueError(f"window: expected an odd number of frames, got {window}")
    h = window // 2
    pad = np.pad(x, [(h, h)] + [(0, 0)] * (x.ndim - 1))
    c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), pad]), axis=0)
    return (c[window:] - c[:-window]) / window


def foot_skating_ratio(joints, lengths=None, skeleton: Skeleton = SMPL22, *, fps: float = FPS,
                       height: float = 0.05, speed: float = 0.5, window: int = 5) -> np.ndarray:
    """Per-clip foot skating ratio ``[N]`` (see the module docstring); NaN for 1-frame clips."""
    feet = [skeleton.feet_left[-1], skeleton.feet_right[-1]]  # the toes: SMPL 10 and 11
    out = []
    for c in _clips(joints, lengths):
        if c.shape[0] < 2:
            out.append(np.nan)
            continue
        f = c[:, feet]  # [T, 2, 3]
        v = np.linalg.norm(f[1:, :, [0, 2]] - f[:-1, :, [0, 2]], axis=-1) * fps  # [T-1, 2]
        v_avg = _centred_mean(v, window)
        y = f[..., 1]
        contact = (y[:-1] < height) & (y[1:] < height)
        skate = contact & (v > speed) & (v_avg > speed)
        out.append(float(skate.any(axis=1).mean()))
    return np.asarray(out)


def floor_penetration(joints, lengths=None, *, floor: float = 0.0) -> np.ndarray:
    """Per-clip mean depth (metres) of the lowest joint below the floor, ``[N]``."""
    return np.asarray([float(np.clip(floor - c[..., 1].min(axis=1), 0.0, None).mean()) for c in _clips(joints, lengths)])


def jitter(joints, lengths=None, *, fps: float = FPS) -> np.ndarray:
    """Per-clip mean acceleration magnitude (m/s²) over joints and frames, ``[N]``; NaN below 3 frames."""
    out = []
    for c in _clips(joints, lengths):
        if c.shape[0] < 3:
            out.append(np.nan)
            continue
        acc = (c[2:] - 2 * c[1:-1] + c[:-2]) * fps * fps
        out.append(float(np.linalg.norm(acc, axis=-1).mean()))
    return np.asarray(out)


def geometric_metrics(joints, lengths=None, skeleton: Skeleton = SMPL22, fps: float = FPS) -> dict[str, float]:
    """Mean over clips of foot skating ratio, floor penetration (cm) and jitter (m/s²)."""
    return {
        "foot_skating": float(np.nanmean(foot_skating_ratio(joints, lengths, skeleton, fps=fps))),
        "penetration_cm": float(100.0 * np.nanmean(floor_penetration(joints, lengths))),
        "jitter": float(np.nanmean(jitter(joints, lengths, fps=fps))),
    }


# --------------------------------------------------------------------------- lifting


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, g = _np(pred), _np(gt)
    if p.shape != g.shape or p.ndim < 2 or p.shape[-1] != 3:
        raise ValueError(f"pred/gt: expected equal shapes [..., J, 3], got {p.shape} and {g.shape}")
    return p, g


def mpjpe_per_frame(pred, gt) -> np.ndarray:
    """Mean joint position error of each frame ``[...]`` (no alignment), in the input's unit."""
    p, g = _pair(pred, gt)
    return np.linalg.norm(p - g, axis=-1).mean(axis=-1)


def procrustes_align(pred, gt) -> np.ndarray:
    """``pred [..., J, 3]`` after the similarity transform (s, R, t) that best fits it to ``gt``
    per frame in least squares (Umeyama 1991, reflections excluded)."""
    p, g = _pair(pred, gt)
    mp, mg = p.mean(axis=-2, keepdims=True), g.mean(axis=-2, keepdims=True)
    x, y = p - mp, g - mg
    cov = np.swapaxes(x, -1, -2) @ y  # [..., 3, 3]: sum_j x_j y_j^T
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.ones(S.shape)
    D[..., -1] = d
    R = (U * D[..., None, :]) @ Vt  # maps row vectors: x @ R ~ y
    var = (x ** 2).sum(axis=(-1, -2))
    scale = (S * D).sum(-1) / np.where(var > 0, var, 1.0)
    return scale[..., None, None] * (x @ R) + mg


def pa_mpjpe_per_frame(pred, gt) -> np.ndarray:
    """MPJPE after per-frame Procrustes alignment, ``[...]``."""
    return mpjpe_per_frame(procrustes_align(pred, gt), gt)


def accel_error_per_frame(pred, gt) -> np.ndarray:
    """``|a_pred - a_gt|`` averaged over joints, for frames 1..T-2 of ``[T, J, 3]`` clips (per frame²)."""
    p, g = _pair(pred, gt)
    if p.ndim < 3 or p.shape[-3] < 3:
        raise ValueError(f"accel_error: need [..., T >= 3, J, 3], got {p.shape}")
    acc = lambda x: x[..., 2:, :, :] - 2 * x[..., 1:-1, :, :] + x[..., :-2, :, :]  # noqa: E731
    return np.linalg.norm(acc(p) - acc(g), axis=-1).mean(axis=-1)


def reprojection_error_per_frame(joints, keypoints, camera, scores, intrinsics=None) -> np.ndarray:
    """Mean 2D distance over detected joints (score > 0) per frame ``[T]`` (NaN where none is detected).

    ``joints [T, J, 3]`` in the camera's world frame, ``keypoints [T, J, 2]`` (pixels when
    ``intrinsics`` ``[4]`` are given, else normalised), ``camera [3, 4]`` or ``[T, 3, 4]``.
    """
    import torch

    from vmdm.motion.cameras import project

    j = torch.as_tensor(_np(joints))
    cam = torch.as_tensor(_np(camera))
    K = None if intrinsics is None else torch.as_tensor(_np(intrinsics))
    uv, _ = project(j, cam, K)
    err = np.linalg.norm(uv.numpy() - _np(keypoints), axis=-1)
    w = (_np(scores) > 0).astype(np.float64)
    n = w.sum(-1)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, (err * w).sum(-1) / np.where(n > 0, n, 1), np.nan)


def canonical_mpjpe_per_frame(pred, gt, skeleton: Skeleton = SMPL22) -> np.ndarray:
    """MPJPE ``[T]`` of ``[T, J, 3]`` clips each canonicalised on its own (see the module
    docstring)."""
    from vmdm.motion.representation import canonicalize

    p, g = _pair(pred, gt)
    return mpjpe_per_frame(canonicalize(p, skeleton)[0], canonicalize(g, skeleton)[0])


def root_relative_mpjpe_per_frame(pred, gt, root: int = 0) -> np.ndarray:
    """MPJPE ``[...]`` with joint ``root`` subtracted from every joint, per frame."""
    p, g = _pair(pred, gt)
    return mpjpe_per_frame(p - p[..., root:root + 1, :], g - g[..., root:root + 1, :])


def root_error_per_frame(pred, gt, root: int = 0) -> np.ndarray:
    """Distance ``[...]`` between the predicted and the true joint ``root``, per frame."""
    p, g = _pair(pred, gt)
    return np.linalg.norm(p[..., root, :] - g[..., root, :], axis=-1)


def body_size_ratio(pred, gt, skeleton: Skeleton = SMPL22) -> float:
    """Summed bone lengths of ``pred`` over those of ``gt``, both averaged over frames."""
    p, g = _pair(pred, gt)
    par = [max(q, 0) for q in skeleton.parents]
    size = lambda x: np.linalg.norm(x - x[..., par, :], axis=-1).sum(-1).mean()  # noqa: E731
    return float(size(p) / max(size(g), 1e-12))
