"""Teachers that lift 2D keypoints to 3D: a learned temporal lifter, an analytic noise
model and an oracle (the true motion, for upper-bound ablations).

All follow the :class:`Teacher` protocol::

    lift(keypoints [T, J, 2], scores [T, J], camera [3, 4] or [T, 3, 4],
         intrinsics [4] | None = None, *, reference=None) -> joints [T, J, 3]

``keypoints`` are pixels when ``intrinsics`` is given, normalised image coordinates
otherwise (see :mod:`vmdm.motion.cameras`). The result is expressed in the frame the
camera's extrinsic maps from (the world / canonical frame of the clip).

The learned lifter (MotionBERT / VideoPose3D in spirit, small enough to train on two CPU
cores in a few minutes) is a stack of dilated residual temporal convolutions over
per-frame keypoint vectors. It predicts, per frame, root-relative camera-frame joints,
the log depth of the root and a small correction of the root's image position; the root
is then placed on its camera ray. Depth is the part a monocular lifter gets wrong, which
is what VideoMDM's 2D supervision has to fix.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn

from vmdm.training.checkpoint import atomic_save, load_checkpoint

from vmdm.motion.cameras import (
    CameraConfig,
    DetectorNoiseConfig,
    detector_noise,
    invert_extrinsic,
    pixels_to_normalized,
    project,
    sample_camera,
    transform_points,
)
from vmdm.training.schedule import Budget
from vmdm.motion.skeleton import SMPL22, Skeleton, get_skeleton

__all__ = [
    "Teacher",
    "LifterConfig",
    "TemporalLifter",
    "LearnedTeacher",
    "NoiseTeacherConfig",
    "NoiseTeacher",
    "OracleTeacher",
    "LifterTrainConfig",
    "make_views",
    "train_lifter",
    "evaluate_lifter",
    "save_lifter",
    "load_lifter",
]


@runtime_checkable
class Teacher(Protocol):
    name: str

    def lift(
        self,
        keypoints: torch.Tensor,
        scores: torch.Tensor,
        camera: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        *,
        reference: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


def _check_inputs(keypoints, scores, camera, J):
    if keypoints.ndim != 3 or keypoints.shape[1:] != (J, 2):
        raise ValueError(f"keypoints: expected [T, {J}, 2], got {tuple(keypoints.shape)}")
    if scores.shape != keypoints.shape[:2]:
        raise ValueError(f"scores: expected {tuple(keypoints.shape[:2])}, got {tuple(scores.shape)}")
    T = keypoints.shape[0]
    if camera.shape not in ((3, 4), (T, 3, 4)):
        raise ValueError(f"camera: expected [3, 4] or [{T}, 3, 4], got {tuple(camera.shape)}")
    if not torch.isfinite(keypoints).all():
        raise ValueError("keypoints: contain NaN or inf")


def _to_world(X_cam: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Camera-frame joints ``[T, J, 3]`` -> world, for a static or per-frame extrinsic."""
    return transform_points(X_cam, invert_extrinsic(camera))


# --------------------------------------------------------------------------- model


@dataclass
class LifterConfig:
    num_joints: int = 22
    channels: int = 128
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16)
    dropout: float = 0.1
    skeleton: str = "smpl22"


def _conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for ``x [B, C, T]`` as one matrix product over the stacked taps.

    With pinned numerics (see :mod:`vmdm.data.build.numerics`) oneDNN is off, and torch's own
    convolution fallback is several times slower than this on a CPU; a matrix product goes
    to MKL, whose results are pinned across CPUs.
    """
    w, (d,), (p,) = conv.weight, conv.dilation, conv.padding
    K = w.shape[-1]
    if K == 1:
        y = torch.matmul(w[:, :, 0], x)
    else:
        mode = "replicate" if conv.padding_mode == "replicate" else "constant"
        xp = torch.nn.functional.pad(x, (p, p), mode=mode)
        T = x.shape[-1]
        taps = torch.cat([xp[:, :, k * d : k * d + T] for k in range(K)], dim=1)
        y = torch.matmul(w.permute(0, 2, 1).reshape(w.shape[0], -1), taps)
    return y + conv.bias[:, None]


class _Block(nn.Module):
    def __init__(self, c: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=dilation, dilation=dilation, padding_mode="replicate")
        self.mix = nn.Conv1d(c, c, 1)
        self.norm = nn.GroupNorm(1, c)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(_conv1d(self.mix, torch.nn.functional.gelu(_conv1d(self.conv, self.norm(x)))))


class TemporalLifter(nn.Module):
    """2D keypoints (+ confidences) -> camera-frame 3D joints, non-causal over time."""

    def __init__(self, config: LifterConfig = LifterConfig()):
        super().__init__()
        self.config = config
        J = config.num_joints
        c = config.channels
        self.inp = nn.Conv1d(J * 3 + 2, c, 1)
        self.blocks = nn.ModuleList([_Block(c, d, config.dropout) for d in config.dilations])
        self.out_norm = nn.GroupNorm(1, c)
        self.out = nn.Conv1d(c, J * 3 + 3, 1)

    def forward(self, keypoints: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """keypoints ``[B, T, J, 2]`` normalised image coordinates, scores ``[B, T, J]``.

        Returns ``(rel [B, T, J, 3], log_depth [B, T], root_uv [B, T, 2])``: root-relative
        camera-frame joints in metres, the log of the root depth and the root's image point.
        """
        B, T, J, _ = keypoints.shape
        valid = (scores > 0).to(keypoints.dtype)
        root = keypoints[:, :, 0]
        # Centre on the root and scale so a body at ~3 m spans about +-1; the root's own
        # image position is kept separately (perspective cue for depth and tilt).
        rel = (keypoints - root[:, :, None]) * 3.0 * valid[..., None]
        x = torch.cat([rel.reshape(B, T, J * 2), scores, root], dim=-1).transpose(1, 2)
        h = _conv1d(self.inp, x)
        for blk in self.blocks:
            h = blk(h)
        y = _conv1d(self.out, torch.nn.functional.gelu(self.out_norm(h))).transpose(1, 2)
        rel3 = y[..., : J * 3].reshape(B, T, J, 3) * 0.5
        rel3 = rel3 - rel3[:, :, :1]
        log_depth = y[..., J * 3] + math.log(3.5)
        root_uv = root + 0.05 * y[..., J * 3 + 1 :]
        return rel3, log_depth, root_uv

    def lift_camera(self, keypoints: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Camera-frame joints ``[B, T, J, 3]``: the root on its (corrected) ray at the predicted depth."""
        rel, log_depth, root_uv = self(keypoints, scores)
        z = log_depth.exp()
        root = torch.cat([root_uv * z[..., None], z[..., None]], dim=-1)
        return rel + root[:, :, None]


class LearnedTeacher:
    """A :class:`Teacher` backed by a trained :class:`TemporalLifter`."""

    name = "learned"

    def __init__(self, model: TemporalLifter):
        self.model = model.eval()
        self.skeleton = get_skeleton(model.config.skeleton)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "LearnedTeacher":
        return cls(load_lifter(path))

    @torch.no_grad()
    def lift(self, keypoints, scores, camera, intrinsics=None, *, reference=None):
        J = self.model.config.num_joints
        _check_inputs(keypoints, scores, camera, J)
        kp = keypoints.float()
        if intrinsics is not None:
            kp = pixels_to_normalized(kp, intrinsics.float())
        X_cam = self.model.lift_camera(kp[None], scores.float()[None])[0]
        return _to_world(X_cam, camera.float())


# --------------------------------------------------------------------------- analytic teacher


@dataclass(frozen=True)
class NoiseTeacherConfig:
    """Errors of a monocular lifter, modelled directly on the true motion."""

    depth_scale_sigma: float = 0.08  # whole-clip relative depth error (scale ambiguity)
    joint_depth_sigma: float = 0.08  # per-joint depth error along the camera ray, metres
    smooth_frames: int = 15  # temporal correlation of the depth error
    jitter_sigma: float = 0.01  # white per-frame 3D jitter, metres
    bias_sigma: float = 0.03  # constant per-joint offset, metres


def _check_reference(teacher, keypoints, scores, camera, reference):
    """Inputs of a teacher built on the true motion; returns ``(T, J)``."""
    if reference is None:
        raise ValueError(f"{teacher}.lift: needs reference= (true joints [T, J, 3])")
    T, J = keypoints.shape[:2]
    _check_inputs(keypoints, scores, camera, J)
    if reference.shape != (T, J, 3):
        raise ValueError(f"reference: expected [{T}, {J}, 3], got {tuple(reference.shape)}")
    return T, J


class NoiseTeacher:
    """Analytic teacher for tests and ablations: perturbs a known motion like a lifter would.

    Each joint is put on the camera ray through its observed keypoint (so the lift agrees
    with the 2D evidence) at the true depth times a clip-wide scale error plus a smooth
    per-joint depth error; a constant per-joint bias and white jitter are added in 3D.
    Needs ``reference``: the true joints ``[T, J, 3]`` in the camera's world frame.
    """

    name = "noise"

    def __init__(self, config: NoiseTeacherConfig = NoiseTeacherConfig(), seed: int = 0):
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)

    def lift(self, keypoints, scores, camera, intrinsics=None, *, reference=None):
        T, J = _check_reference("NoiseTeacher", keypoints, scores, camera, reference)
        cfg, g = self.config, self.generator
        kp = keypoints.double()
        if intrinsics is not None:
            kp = pixels_to_normalized(kp, intrinsics.double())
        cam = camera.double()
        X = transform_points(reference.double(), cam)
        z_true = X[..., 2]
        uv_true = X[..., :2] / z_true[..., None]
        uv = torch.where((scores > 0)[..., None], kp, uv_true)
        w = max(1, cfg.smooth_frames)
        n = torch.randn((T + w - 1, J), generator=g, dtype=torch.float64)
        smooth = n.unfold(0, w, 1).mean(-1) * math.sqrt(w)
        scale = 1.0 + cfg.depth_scale_sigma * torch.randn((), generator=g, dtype=torch.float64)
        z = (z_true * scale + cfg.joint_depth_sigma * smooth).clamp(min=0.1)
        X_noisy = torch.cat([uv * z[..., None], z[..., None]], dim=-1)
        bias = cfg.bias_sigma * torch.randn((1, J, 3), generator=g, dtype=torch.float64)
        jitter = cfg.jitter_sigma * torch.randn((T, J, 3), generator=g, dtype=torch.float64)
        world = _to_world(X_noisy, cam) + bias + jitter
        return world.to(reference.dtype)


class OracleTeacher:
    """The true motion as the "lift": an upper bound for what 2D supervision can do.

    Training VideoMDM on an oracle-lifted dataset separates the cost of supervising in 2D
    from the cost of the teacher's errors (the 2D losses and the keypoints are unchanged;
    only the diffused starting motion is exact). Needs ``reference`` like
    :class:`NoiseTeacher`.
    """

    name = "oracle"

    def lift(self, keypoints, scores, camera, intrinsics=None, *, reference=None):
        _check_reference("OracleTeacher", keypoints, scores, camera, reference)
        return reference.clone()


# --------------------------------------------------------------------------- training


@dataclass
class LifterTrainConfig:
    steps: int = 2000
    time_budget_s: float | None = 150.0  # stop early when this much wall time has passed
    batch_size: int = 32
    window: int = 64
    lr: float = 1.5e-3
    weight_decay: float = 1e-4
    views_per_clip: int = 3
    # Left-right mirror augmentation. Off by default: at the step counts a CPU budget allows
    # the lifter underfits, and mirroring measured no gain (docs/data.md).
    mirror: bool = False
    seed: int = 0
    # None: time a few steps with all threads and with one, keep the faster. On a busy
    # two-core machine two OpenMP threads spin at their barriers and a step gets 10-20x
    # slower than with one; on an idle machine two threads are faster.
    threads: int | None = None
    camera: CameraConfig = field(default_factory=CameraConfig)
    noise: DetectorNoiseConfig = field(default_factory=DetectorNoiseConfig)


@dataclass
class _Views:
    """Rendered training examples: one entry per (clip, camera)."""

    keypoints: list[torch.Tensor]  # [T, J, 2] normalised, noisy
    scores: list[torch.Tensor]  # [T, J]
    target: list[torch.Tensor]  # [T, J, 3] true camera-frame joints


def make_views(
    clips: Sequence[np.ndarray | torch.Tensor],
    views_per_clip: int,
    camera: CameraConfig = CameraConfig(),
    noise: DetectorNoiseConfig = DetectorNoiseConfig(),
    skeleton: Skeleton = SMPL22,
    seed: int = 0,
) -> _Views:
    """Project every world-frame clip ``[T, J, 3]`` through random cameras, with detector noise."""
    g = torch.Generator().manual_seed(seed)
    out = _Views([], [], [])
    for clip in clips:
        j = torch.as_tensor(np.asarray(clip), dtype=torch.float32)
        for _ in range(views_per_clip):
            E, K = sample_camera(j, camera, generator=g)
            uv_px, depth = project(j, E, K)
            noisy, scores = detector_noise(uv_px, depth, noise, skeleton, generator=g)
            out.keypoints.append(pixels_to_normalized(noisy, K))
            out.scores.append(scores)
            out.target.append(transform_points(j, E))
    return out


def _batch(views: _Views, idx: list[int], window: int, g: torch.Generator, flip: list[int] | None = None):
    kps, scs, tgs, masks = [], [], [], []
    for i in idx:
        T = views.keypoints[i].shape[0]
        if T >= window:
            s = int(torch.randint(0, T - window + 1, (), generator=g))
            sl = slice(s, s + window)
            kps.append(views.keypoints[i][sl])
            scs.append(views.scores[i][sl])
            tgs.append(views.target[i][sl])
            masks.append(torch.ones(window))
        else:
            pad = window - T
            # Replicate the last frame: the convolutions see a still pose, the loss ignores it.
            kps.append(torch.cat([views.keypoints[i], views.keypoints[i][-1:].expand(pad, -1, -1)]))
            scs.append(torch.cat([views.scores[i], views.scores[i][-1:].expand(pad, -1)]))
            tgs.append(torch.cat([views.target[i], views.target[i][-1:].expand(pad, -1, -1)]))
            masks.append(torch.cat([torch.ones(T), torch.zeros(pad)]))
    kp, sc, tg, mask = torch.stack(kps), torch.stack(scs), torch.stack(tgs), torch.stack(masks)
    if flip is not None:
        # Mirror half the windows about the camera's vertical plane (x -> -x, left <-> right):
        # the mirror image of a motion is a motion, seen by the same kind of camera.
        m = torch.rand(len(idx), generator=g) < 0.5
        sign = torch.tensor([-1.0, 1.0])
        kp[m] = (kp[m] * sign)[:, :, flip]
        sc[m] = sc[m][:, :, flip]
        tg[m] = (tg[m] * torch.tensor([-1.0, 1.0, 1.0]))[:, :, flip]
    return kp, sc, tg, mask


def _flip_permutation(skeleton: Skeleton) -> list[int]:
    names = skeleton.joint_names
    swap = {n: n.replace("left_", "\0").replace("right_", "left_").replace("\0", "right_") for n in names}
    missing = [n for n in names if swap[n] not in names]
    if missing:
        raise ValueError(f"skeleton {skeleton.name!r}: no mirror partner for {missing}")
    return [names.index(swap[n]) for n in names]


def _loss(model: TemporalLifter, kp, sc, tgt, mask):
    rel, log_depth, root_uv = model(kp, sc)
    tgt_rel = tgt - tgt[:, :, :1]
    m = mask / mask.sum().clamp(min=1)
    mpjpe = ((rel - tgt_rel).norm(dim=-1).mean(-1) * m).sum()
    depth = ((log_depth - tgt[:, :, 0, 2].log()).abs() * m).sum()
    uv_root = tgt[:, :, 0, :2] / tgt[:, :, 0, 2:]
    root = ((root_uv - uv_root).norm(dim=-1) * m).sum()
    # Velocity term: penalises jitter that per-frame errors alone would allow.
    vm = (mask[:, 1:] * mask[:, :-1]) / (mask[:, 1:] * mask[:, :-1]).sum().clamp(min=1)
    vel = (((rel[:, 1:] - rel[:, :-1]) - (tgt_rel[:, 1:] - tgt_rel[:, :-1])).norm(dim=-1).mean(-1) * vm).sum()
    return mpjpe + 0.5 * depth + root + 2.0 * vel, mpjpe


@torch.no_grad()
def evaluate_lifter(model: TemporalLifter, views: _Views) -> dict[str, float]:
    """Mean per-joint position error over all frames of all views, in millimetres.

    ``mpjpe_mm``: root-relative; ``abs_mpjpe_mm``: with the predicted root position;
    ``root_depth_err_mm``: mean absolute root depth error.
    """
    model.eval()
    errs, abs_errs, depth_errs, n = 0.0, 0.0, 0.0, 0
    for kp, sc, tgt in zip(views.keypoints, views.scores, views.target):
        pred = model.lift_camera(kp[None], sc[None])[0]
        rel = pred - pred[:, :1]
        tr = tgt - tgt[:, :1]
        errs += float((rel - tr).norm(dim=-1).mean(-1).sum())
        abs_errs += float((pred - tgt).norm(dim=-1).mean(-1).sum())
        depth_errs += float((pred[:, 0, 2] - tgt[:, 0, 2]).abs().sum())
        n += kp.shape[0]
    n = max(n, 1)
    return {"mpjpe_mm": 1000 * errs / n, "abs_mpjpe_mm": 1000 * abs_errs / n, "root_depth_err_mm": 1000 * depth_errs / n}


def train_lifter(
    train_clips: Sequence[np.ndarray],
    val_clips: Sequence[np.ndarray] = (),
    config: LifterTrainConfig = LifterTrainConfig(),
    model_config: LifterConfig = LifterConfig(),
    progress: bool = True,
) -> tuple[TemporalLifter, dict]:
    """Train a lifter on world-frame clips (random cameras and detector noise per view).

    Stops after ``config.steps`` steps or ``config.time_budget_s`` seconds, whichever comes
    first. Returns the model (eval mode) and metrics (including ``steps`` and ``train_s``).
    """
    if not train_clips:
        raise ValueError("train_lifter: train_clips is empty")
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(train_clips, val_clips, config, model_config, progress)
    finally:
        torch.set_num_threads(previous_threads)


class _ThreadProbe:
    """Times ``n`` steps with the current thread count, ``n`` with one, and keeps the faster."""

    def __init__(self, n: int = 6):
        self.n, self.many = n, torch.get_num_threads()
        self.times: list[float] = []
        self.last = time.perf_counter()

    def record(self, step: int) -> None:
        now = time.perf_counter()
        if 1 < step <= 2 * self.n + 1:  # the first step warms up and is not timed
            self.times.append(now - self.last)
        if step == self.n + 1:
            torch.set_num_threads(1)
        elif step == 2 * self.n + 1:
            many = float(np.median(self.times[: self.n]))
            one = float(np.median(self.times[self.n :]))
            torch.set_num_threads(self.many if many < one else 1)
        self.last = time.perf_counter()


def _train(train_clips, val_clips, config, model_config, progress):
    torch.manual_seed(config.seed)
    skel = get_skeleton(model_config.skeleton)
    t_views = time.time()
    views = make_views(train_clips, config.views_per_clip, config.camera, config.noise, skel, config.seed)
    val_views = make_views(val_clips, 1, config.camera, config.noise, skel, config.seed + 1) if val_clips else None
    # The time budget covers optimisation only; rendering the views is reported separately.
    budget = Budget(config.steps, config.time_budget_s, warmup=50)
    views_s = budget.t0 - t_views
    model = TemporalLifter(model_config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(config.seed)
    flip = _flip_permutation(skel) if config.mirror else None
    n = len(views.keypoints)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, desc="train lifter", unit="step")
    step = 0
    loss_ema = None
    probe = _ThreadProbe() if config.threads is None and torch.get_num_threads() > 1 else None
    model.train()
    while step < config.steps and not budget.out_of_time():
        budget.set_lr(opt, config.lr, step)
        idx = torch.randint(0, n, (config.batch_size,), generator=g).tolist()
        kp, sc, tgt, mask = _batch(views, idx, config.window, g, flip)
        loss, mpjpe = _loss(model, kp, sc, tgt, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if probe is not None:
            probe.record(step)
        m_val = mpjpe.item()
        loss_ema = m_val if loss_ema is None else 0.95 * loss_ema + 0.05 * m_val
        if bar is not None:
            bar.update(1)
            bar.set_postfix(mpjpe_mm=f"{1000 * loss_ema:.0f}")
    if bar is not None:
        bar.close()
    model.eval()
    metrics: dict = {
        "steps": step,
        "threads": torch.get_num_threads(),
        "train_s": round(budget.elapsed(), 1),
        "views_s": round(views_s, 1),
        "train_mpjpe_mm_ema": 1000 * (loss_ema or 0),
    }
    if val_views is not None:
        metrics["val"] = evaluate_lifter(model, val_views)
    return model, metrics


# --------------------------------------------------------------------------- checkpoints


def save_lifter(path: str | os.PathLike, model: TemporalLifter, metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, then rename), in plain data
    that loads with ``weights_only=True``."""
    return atomic_save({
        "format": "vmdm-lifter-1",
        "config": asdict(model.config),
        "state_dict": model.state_dict(),
        "metrics": metrics or {},
        "extra": extra or {},
    }, path)


def load_lifter(path: str | os.PathLike) -> TemporalLifter:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lifter checkpoint not found: {path}")
    payload = load_checkpoint(path)
    if not isinstance(payload, dict) or payload.get("format") != "vmdm-lifter-1":
        raise ValueError(f"{path}: not a vmdm lifter checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r})")
    cfg = dict(payload["config"])
    cfg["dilations"] = tuple(cfg["dilations"])
    model = TemporalLifter(LifterConfig(**cfg))
    model.load_state_dict(payload["state_dict"])
    model.metrics = payload.get("metrics", {})
    model.extra = payload.get("extra", {})
    return model.eval()
