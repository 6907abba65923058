"""Lifting 2D keypoint sequences to 3D with the trained motion prior.

VideoMDM's lifting use of the text-to-motion model: sample a motion with the diffusion
model and, at every denoising step, correct the model's clean-motion prediction so that
it agrees with the observed keypoints, MDM-inpainting style:

1. decode the predicted features ``x0`` to joints (in the prediction's canonical frame);
2. place those joints in the camera's world frame (a rotation about the vertical plus a
   translation: a yaw grid and Levenberg-Marquardt on the reprojection error at the first
   step, then a few refinement steps that move the motion only across the line of sight,
   see :func:`fit_placement`) -- equivalently, express the camera in the canonical frame;
3. pull each joint towards the closest point on its keypoint's camera ray
   (:func:`vmdm_kernels.ray_targets`), by ``guidance_strength`` times the keypoint's
   confidence (joints with confidence 0 keep the prediction); the corrections are
   averaged over frames first (``smooth``, with an ``outlier`` gate, as for the training
   targets in :mod:`vmdm.motion.smoothing`), because white keypoint noise would
   otherwise become 3D jitter; the last step (t = 0, or a one-step lift's only step)
   moves every observed joint the whole way (``final_pull``); ray points that would lie
   behind the camera (possible for a joint far off its ray: the closest point of the
   ray's *line*) are moved in front of it;
4. scale each frame about the camera centre so that the bones of its ray points match the
   prediction's bone lengths averaged over the clip (a person's bones do not change
   length): projections do not change, and the body's apparent size, not a possibly
   wrong placement depth, sets how far from the camera it is;
5. re-encode the corrected joints to features; encoding re-canonicalises them (floor,
   frame-0 position and heading), so the placement -- equivalently the camera in the
   canonical frame, as :meth:`CanonicalTransform.apply_camera` moves it -- follows them
   and stays consistent with the joints the next prediction will decode to.

The result is returned in the camera's world frame. The world is assumed y-up (the
project's convention, see :mod:`vmdm.motion.cameras`): the body is only turned about the
vertical, never tilted, to fit the camera.

The pull is ramped in over the denoising steps for priors trained on teacher lifts (``ramp``; see
:func:`lift_details`). Steps 2-4 as they are and the ramp were chosen on real CMU windows
against per-frame bone lengths from the partly moved joints, raw per-frame corrections, a
confidence-weighted last step, free-depth refits (which could throw a lift metres away) and
no ramp; the measurements are in docs/sampling.md.

Unguided samples are placed with the same :func:`fit_placement`, so comparing their
:func:`reprojection_error` with a lift's isolates what the guidance adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import vmdm_kernels as vk
from vmdm.cli import ConfigError, field
from vmdm.motion.cameras import camera_center, pixels_to_normalized
from vmdm.motion.representation import canonicalize, decode, encode
from vmdm.motion.smoothing import masked_gaussian_smooth, smooth_corrections
from vmdm.inference.placement import Z_MIN as _Z_MIN
from vmdm.inference.placement import apply_placement, fit_placement, reprojection_error
from vmdm.inference.teacher_init import teacher_start

__all__ = ["LIFT_SAMPLE_STEPS", "GUIDED_STEPS_REF", "DEFAULT_T_STAR", "default_t_star", "DEFAULT_SMOOTH",
           "DEFAULT_TEACHER_SMOOTH", "default_smooth", "MAX_DEPTH_RATIO", "LiftConfig", "LiftResult", "lift", "lift_details", "lift_batch", "fit_placement", "apply_placement", "reprojection_error"]

# Guidance ramp (see lift_details) by the checkpoint's supervision when none is given:
# priors that learnt from teacher lifts (2D-supervised, or MDM on the lifts) lift far better
# when guided late, a prior trained on true 3D far worse (docs/sampling.md).
_DEFAULT_RAMP = {"2d": 12.0, "teacher": 12.0}
# DDIM steps of a lift when none are given, by the checkpoint's supervision; LIFT_SAMPLE_STEPS
# for the others: the 2D-supervised prior lifts better with 50 steps than with 10, the
# 3D-supervised one worse (docs/sampling.md).
LIFT_SAMPLE_STEPS = 10
_DEFAULT_LIFT_STEPS = {"2d": 50}
# Denoising steps of a teacher-initialised lift by supervision, when the checkpoint records
# none (see default_t_star): the val-split choices of the 6000-step Bandai priors, (a)'s
# halved because the built-in (a) diverges from t* = 6 (docs/sampling.md has the sweeps).
DEFAULT_T_STAR = {"2d": 2, "teacher": 1, "3d": 3}
# Gaussian sigma (frames) over the ray corrections when a lift is given none and its checkpoint
# records none (``lift_settings.json``, written by the lift benchmark's --tune): from noise, and
# from the teacher (1 was at least as good as 3 on the val split of all 13 priors measured,
# docs/sampling.md).
DEFAULT_SMOOTH = 3.0
DEFAULT_TEACHER_SMOOTH = 1.0
# The pulls and size corrections are defined per step of a lift with this many steps; with
# n steps each one is taken to the power (GUIDED_STEPS_REF - 1) / (n - 1), so that a
# stretch of diffusion time moves a lift by the same total whatever the step count (see
# lift_details). Applied whole at every step, 50 steps compounded the correction and threw
# lifts off their rays.
GUIDED_STEPS_REF = 10


# --------------------------------------------------------------------------- input checks


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected an array, got {type(x).__name__}") from None
    if not t.is_floating_point():
        t = t.double()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return t.double()


def _check_inputs(keypoints, scores, camera, intrinsics, J: int):
    kp = _as_tensor(keypoints, "keypoints")
    if kp.dim() != 3 or tuple(kp.shape[1:]) != (J, 2):
        raise ValueError(f"keypoints: expected [F, {J}, 2] (SMPL22 order; map detector layouts with "
                         f"vmdm.data.formats.video.map_keypoints), got {tuple(kp.shape)}")
    F = kp.shape[0]
    if F < 2:
        raise ValueError(f"keypoints: need at least 2 frames, got {F}")
    sc = _as_tensor(scores, "scores")
    if tuple(sc.shape) != (F, J):
        raise ValueError(f"scores: expected shape {(F, J)}, got {tuple(sc.shape)}")
    if (sc < 0).any() or (sc > 1).any():
        raise ValueError("scores: confidences must be in [0, 1]")
    if not (sc > 0).any():
        raise ValueError("scores: every confidence is 0; nothing to lift from")
    cam = _as_tensor(camera, "camera")
    if tuple(cam.shape) not in ((3, 4), (F, 3, 4)):
        raise ValueError(f"camera: expected [3, 4] or [{F}, 3, 4] (X_cam = R X + t), got {tuple(cam.shape)}")
    R = cam[..., :3]
    ortho = (R @ R.transpose(-1, -2) - torch.eye(3, dtype=R.dtype)).abs().max()
    if ortho > 1e-3 or (torch.linalg.det(R) < 0).any():
        raise ValueError("camera: the 3x3 part must be a rotation (orthonormal, det +1)")
    if intrinsics is not None:
        K = _as_tensor(intrinsics, "intrinsics")
        if tuple(K.shape) != (4,) or (K[:2] <= 0).any():
            raise ValueError(f"intrinsics: expected (fx, fy, cx, cy) with positive focal lengths, got {K.tolist()}")
        kp = pixels_to_normalized(kp, K)
    return kp, sc, cam


# --------------------------------------------------------------------------- lifting


def _keep_body_size(pred: torch.Tensor, rays: torch.Tensor, bone_w: torch.Tensor,
                    parents: torch.Tensor) -> torch.Tensor:
    """Per-frame scale factors ``[B, F]`` about the camera centres that give the ray points
    ``rays [B, F, J, 3]`` (each joint of ``pred`` moved onto its keypoint's ray) the
    prediction's body size in every frame.

    Moving joints onto their rays keeps them at the depth where the current placement put
    them, so a wrong placement depth turns into a wrong body size, which the next
    prediction inherits. Scaling about the camera centre keeps every joint on its ray
    (the projections do not change) and lets the body's apparent size set the depth. A
    person's bones do not change length, so the target is the prediction's bone lengths
    averaged over the clip, not frame by frame: a size wobble of the prediction would
    otherwise become a wobble in depth. ``bone_w [F, J]`` weighs the bone ending at each
    joint (its reliability in the keypoints), ``parents [J]`` (root: itself).
    """
    lp = (pred - pred[:, :, parents]).norm(dim=-1).mean(1, keepdim=True)  # [B, 1, J]
    lr = (rays - rays[:, :, parents]).norm(dim=-1)
    num = (bone_w * lp).sum(-1)
    den = (bone_w * lr).sum(-1)
    return torch.where(den > 1e-6, num / den.clamp(min=1e-6), torch.ones_like(num))


def _step_rate(n_steps: int) -> float:
    """Exponent of each guided step's pull and size correction in a lift of ``n_steps``
    steps: ``n`` steps of ``1 - (1 - w) ** rate`` leave what :data:`GUIDED_STEPS_REF` steps
    of ``w`` leave, over the same stretch of diffusion time."""
    return (GUIDED_STEPS_REF - 1) / max(n_steps - 1, 1)


def _in_front_of_camera(targets: torch.Tensor, keypoints: torch.Tensor, camera: torch.Tensor,
                        z_min: float = _Z_MIN) -> tuple[torch.Tensor, torch.Tensor]:
    """``targets [b, F, J, 3]`` (in the frame of ``camera [b, 3, 4]`` or ``[b, F, 3, 4]``)
    whose camera depth is below ``z_min`` moved to the point of their keypoint's ray
    (``keypoints [F, J, 2]`` or ``[b, F, J, 2]``, normalised) at depth ``z_min``; returns them and which were
    moved (``[b, F, J]``).

    A ray starts at the camera, but the closest point of its line to a joint far off it can
    lie behind the camera; a joint pulled there projects to the mirror image of its
    keypoint and drags the next predictions after it (docs/sampling.md has the clip where
    this happened)."""
    R, t = camera[..., :3], camera[..., 3]
    if camera.dim() == 3:  # one camera per motion
        R, t = R[:, None], t[:, None]
    R, t = R[:, :, None], t[:, :, None]  # [b, F or 1, 1, 3, 3], [b, F or 1, 1, 3]
    cam = (R @ targets[..., None])[..., 0] + t
    near = cam[..., 2:] < z_min
    if not bool(near.any()):
        return targets, near[..., 0]
    on_ray = z_min * torch.cat((keypoints, torch.ones_like(keypoints[..., :1])), dim=-1).to(targets.dtype)
    back = (R.transpose(-1, -2) @ (on_ray - t)[..., None])[..., 0]
    return torch.where(near, back, targets), near[..., 0]


def _teacher_root_depth(begin, camera: torch.Tensor, F: int, smooth: float) -> torch.Tensor:
    """The teacher's root depth ``[F]`` in the world camera, smoothed over frames like the ray
    corrections (its frame-to-frame noise is not the person's motion)."""
    world = begin.canonical[:F, :1] @ begin.rotation.T + begin.translation  # [F, 1, 3]
    cam = camera.expand(F, 3, 4) if camera.dim() == 2 else camera
    R, t = cam[..., :3], cam[..., 3]
    z = ((R[:, 2:3] @ world[..., None])[..., 0, 0] + t[:, 2:3])[:, 0]  # [F]
    z = z.clamp(min=_Z_MIN)
    if smooth > 0:
        z = masked_gaussian_smooth(z.log()[None, :, None, None], torch.ones(1, F, 1, dtype=torch.bool),
                                   smooth)[0, :, 0, 0].exp()
    return z.float()


# The most a teacher-depth step rescales a body, either way. A prediction whose root is more
# than twice as near or as far as the teacher's has gone wrong; scaling it all the way (its
# root near the camera plane asks for a factor of hundreds) fed back into the next step and
# blew lifts up to kilometres.
MAX_DEPTH_RATIO = 2.0


def _scale_to_depth(joints: torch.Tensor, camera: torch.Tensor, root_depth: torch.Tensor) -> torch.Tensor:
    """``joints [b, F, J, 3]`` scaled per frame about the camera centre (``camera [b, 3, 4]`` or
    ``[b, F, 3, 4]``) so that the root's camera depth is ``root_depth [F]`` or ``[b, F]``: every projection
    stays, the body's depth (and with it its size) comes from the teacher. The factor is
    kept within ``1 / MAX_DEPTH_RATIO .. MAX_DEPTH_RATIO``."""
    R, t = camera[..., :3], camera[..., 3]
    if camera.dim() == 3:
        R, t = R[:, None], t[:, None]
    R, t = R[:, :, None], t[:, :, None]  # [b, F or 1, 1, 3, 3], [b, F or 1, 1, 3]: shared by the joints
    cam = (R @ joints[..., None])[..., 0] + t  # [b, F, J, 3] camera frame
    depth = root_depth.to(cam.dtype)
    k = (depth[None] if depth.dim() == 1 else depth) / cam[:, :, 0, 2].clamp(min=_Z_MIN)
    k = k.clamp(1 / MAX_DEPTH_RATIO, MAX_DEPTH_RATIO)
    cam = cam * k[..., None, None]
    return (R.transpose(-1, -2) @ (cam - t)[..., None])[..., 0]


def default_t_star(loaded_model) -> int:
    """Denoising steps of a teacher-initialised lift when none are given: the value the lift
    benchmark chose on the val split and recorded for this checkpoint
    (``loaded_model.lift_settings``), else :data:`DEFAULT_T_STAR` for its supervision."""
    rec = (getattr(loaded_model, "lift_settings", None) or {}).get("t_star")
    if rec is not None:
        return int(rec)
    return min(DEFAULT_T_STAR.get(loaded_model.config.get("supervision"), DEFAULT_T_STAR["2d"]),
               loaded_model.diffusion.steps)


def default_smooth(loaded_model, init: str = "teacher") -> float:
    """Smoothing of the ray corrections when none is given: for teacher-initialised lifts the
    value the lift benchmark chose on the val split and recorded for this checkpoint, else
    :data:`DEFAULT_TEACHER_SMOOTH`; lifts from noise take :data:`DEFAULT_SMOOTH`."""
    if init != "teacher":
        return DEFAULT_SMOOTH
    rec = (getattr(loaded_model, "lift_settings", None) or {}).get("smooth")
    return DEFAULT_TEACHER_SMOOTH if rec is None else float(rec)


def _resolve_ramp(loaded_model, ramp: float | None) -> float:
    """``ramp``, or the default for the checkpoint's supervision mode when ``None``."""
    if ramp is None:
        ramp = _DEFAULT_RAMP.get(loaded_model.config.get("supervision"), 0.0)
    if ramp < 0:
        raise ValueError(f"ramp: expected >= 0, got {ramp}")
    return float(ramp)


@dataclass
class LiftConfig:
    """Lifting a 2D keypoint clip to 3D with the prior (python -m vmdm.sample --lift).

    The options of ``python -m vmdm.sample --lift``; in Python, pass one to :func:`lift` or
    :func:`lift_details` as ``config=`` (its values replace ``guidance_strength``,
    ``smooth``, ``ramp`` and ``body_scale``; ``lift``, the clip file, is read by the command
    line only). The sampling options a lift shares with text-to-motion sampling (steps,
    sampler, seed, samples, text guidance) stay keywords of :func:`lift_details`.
    """

    lift: list[str] | None = field(None, "lift this video clip (.npz, format in docs/data.md) to 3D instead of "
                                         "sampling from text; repeat for several clips, lifted in batches; --text is "
                                         "then optional (none: unconditional)", append=True, metavar="KEYPOINTS.npz")
    lift_strength: float = field(1.0, "ray-projection guidance strength in [0, 1] (0: unguided samples)")
    lift_smooth: float | None = field(None, "Gaussian over frames (sigma, frames) on the ray corrections and "
                                            "depths; keypoint noise otherwise turns into 3D jitter (0: follow every "
                                            "keypoint exactly; default: for teacher-initialised lifts the "
                                            "checkpoint's value chosen on the val split, else 1; from noise 3)")
    lift_ramp: float | None = field(None, "guide the early denoising steps less: pull x (1 - t/T)^RAMP (default: 12 "
                                          "for checkpoints trained with --supervision 2d or teacher, 0 for 3d; see "
                                          "docs/sampling.md)")
    lift_body_scale: float | None = field(None, "set depths for a body this much larger than the prior predicts "
                                                "(default: the checkpoint's measured value, see "
                                                "vmdm.training.body_scale; 1 when it has none)")
    init: str = field("teacher", "start each lift from the clip's teacher lift diffused to --t-star (the way the "
                                 "prior was trained) or from pure noise", choices=["teacher", "noise"])
    t_star: int | None = field(None, "with --init teacher: denoising steps from the teacher's lift (0: the "
                                     "teacher snapped onto the rays; default: the value chosen on the val split "
                                     "for this checkpoint, see docs/sampling.md)")
    teacher_lifter: str | None = field(None, "teacher lifter checkpoint that lifts a clip without a 'lift' field "
                                             "(default: the one the checkpoint's 2D data were built with, else the "
                                             "default cache's)")

    def check(self) -> None:
        """Raise :class:`~vmdm.cli.ConfigError` (naming the option) for a value out of range."""
        if not 0.0 <= self.lift_strength <= 1.0:
            raise ConfigError(f"--lift-strength: expected a value in [0, 1], got {self.lift_strength}")
        if self.lift_smooth is not None and self.lift_smooth < 0:
            raise ConfigError(f"--lift-smooth: expected a value >= 0, got {self.lift_smooth}")
        if self.lift_ramp is not None and self.lift_ramp < 0:
            raise ConfigError(f"--lift-ramp: expected a value >= 0, got {self.lift_ramp}")
        if self.lift_body_scale is not None and not self.lift_body_scale > 0:
            raise ConfigError(f"--lift-body-scale: expected a value > 0, got {self.lift_body_scale}")
        if self.t_star is not None and self.init != "teacher":
            raise ConfigError("--t-star: only used with --init teacher")
        if self.t_star is not None and self.t_star < 0:
            raise ConfigError(f"--t-star: expected >= 0 denoising steps, got {self.t_star}")

    def clips(self) -> list[str]:
        """The clip files to lift (``lift`` may be one path or a list; none: not lifting)."""
        if self.lift is None:
            return []
        return [str(self.lift)] if isinstance(self.lift, (str, Path)) else [str(p) for p in self.lift]

    def lift_kwargs(self) -> dict:
        """The keywords of :func:`lift_details` this config sets."""
        return {"guidance_strength": self.lift_strength, "smooth": self.lift_smooth, "ramp": self.lift_ramp,
                "body_scale": self.lift_body_scale, "init": self.init, "t_star": self.t_star}


# The defaults of the lift_details keywords a LiftConfig replaces (a keyword changed from its
# default and a config together are an error, not a silent choice between them).
_CONFIG_KEYWORDS = {"guidance_strength": 1.0, "smooth": None, "ramp": None, "body_scale": None, "init": "noise",
                    "t_star": None}


@dataclass
class LiftResult:
    joints: torch.Tensor  # [S, F, J, 3] in the camera's world frame
    canonical_joints: torch.Tensor  # [S, F, J, 3] in each motion's canonical frame
    features: torch.Tensor  # [S, F, D] denormalised
    rotation: torch.Tensor  # [S, 3, 3] canonical -> world (about +y)
    translation: torch.Tensor  # [S, 3]
    camera_canonical: torch.Tensor  # [S, 3, 4] or [S, F, 3, 4]: the camera in the canonical frame
    reprojection_error: list  # per sample, normalised image units
    init: str = "noise"
    t_star: int | None = None  # denoising steps from the teacher's lift (init "teacher")


def _compose(camera: torch.Tensor, rot: torch.Tensor, tr: torch.Tensor) -> torch.Tensor:
    """World cameras ``[B, 3, 4]``/``[B, F, 3, 4]`` (one per motion) composed with placements
    ``rot [B, 3, 3]``, ``tr [B, 3]`` -> canonical-frame cameras of the same shape: ``X_cam =
    R (rot X + tr) + t``."""
    R, t = camera[..., :3], camera[..., 3]
    if camera.dim() == 4:
        rot, tr = rot[:, None], tr[:, None]
    R_new = R @ rot
    t_new = (R @ tr[..., None])[..., 0] + t
    return torch.cat((R_new, t_new[..., None]), dim=-1)


def lift_details(loaded_model, keypoints, scores, camera, intrinsics=None, text: str = "", *,
                 guidance_strength: float = 1.0, sample_steps: int | None = None, seed: int | None = None,
                 num_samples: int = 1, sampler: str = "ddim", text_guidance: float = 2.5,
                 refine_placement: bool | None = None, keep_size: bool | None = None, smooth: float | None = None,
                 outlier: float = 0.05, final_pull: bool = True, ramp: float | None = None,
                 body_scale: float | None = None, progress: bool = False,
                 init: str = "noise", teacher=None, t_star: int | None = None,
                 teacher_depth: bool | None = None, config: LiftConfig | None = None) -> LiftResult:
    """:func:`lift` with everything it computes, for ``num_samples`` lifts at once
    (different noise, same ``seed`` stream).

    ``config``: a :class:`LiftConfig` whose values replace ``guidance_strength``, ``smooth``,
    ``ramp`` and ``body_scale`` (giving one of those keywords a non-default value as well
    is an error).

    ``smooth``: standard deviation (frames) of the Gaussian over the ray corrections and
    the per-frame depths (0: every keypoint followed exactly; ``None``:
    :func:`default_smooth`); ``outlier`` (metres):
    corrections this far from their smoothed value are dropped; ``final_pull``: the last
    step moves observed joints onto their rays whatever their confidence. ``ramp``: the
    pull is multiplied by ``(1 - t / T) ** ramp`` at diffusion step ``t`` of ``T``, so that
    the early, blurry predictions are guided little (0: the same pull at every step). A
    prior that learnt from teacher lifts keeps -- the 2D-supervised one amplifies --
    whatever depth structure its input has, and strong early pulls leave its lifts
    leaning; a prior trained on true 3D corrects that itself but takes its body size from
    the early, guided steps. ``None``: 12 for checkpoints trained with ``--supervision 2d``
    or ``teacher``, 0 for ``3d``. ``body_scale``: the depth is set for a body this much
    larger than the prediction's, correcting the denoiser's shrinkage (``None``: the value
    measured on the training data and stored in the checkpoint, :mod:`vmdm.training.body_scale`;
    1 where there is none). ``sample_steps``: DDIM steps; ``None``: 50 for checkpoints
    trained with ``--supervision 2d``, :data:`LIFT_SAMPLE_STEPS` (10) for the others, as
    measured (at most the model's diffusion steps).

    The pull ``w`` and the size correction ``k`` are those of a step of a
    :data:`GUIDED_STEPS_REF`-step lift: with ``n`` steps each step applies ``1 - (1 - w) **
    r`` and ``k ** min(r, 1)``, ``r = (GUIDED_STEPS_REF - 1) / (n - 1)``, so that more
    steps divide the same correction more finely instead of compounding it (the last step,
    t = 0, is applied whole).

    ``init``: ``"noise"`` (every chain starts from pure noise and the placement is fitted
    at the first step, as above) or ``"teacher"``: the way the prior was trained. The
    teacher's lift ``teacher`` (world-frame joints ``[F, J, 3]`` or ``[F + 1, J, 3]``) is
    canonicalised as the 2D-only dataset does (:mod:`vmdm.inference.teacher_init`), the
    camera expressed in that frame (no placement fit), its features diffused to step
    ``t_star - 1`` and denoised from there with the guidance at every step; the result is
    mapped back through the teacher's placement. ``t_star`` counts the denoising steps (0:
    the teacher's lift itself, snapped onto the rays once when guided; default
    :func:`default_t_star`). With teacher init the defaults are no ramp, no placement
    refit, no body-size correction (the teacher's depth is the prior's training input)
    and every diffusion step below ``t_star`` visited.
    """
    if config is not None:
        given = {"guidance_strength": guidance_strength, "smooth": smooth, "ramp": ramp, "body_scale": body_scale,
                 "init": init, "t_star": t_star}
        clash = [k for k, v in given.items() if v != _CONFIG_KEYWORDS[k]]
        if clash:
            raise TypeError(f"lift_details: {', '.join(clash)} given both as keyword(s) and in config")
        kw = config.lift_kwargs()
        guidance_strength, smooth, ramp, body_scale, init, t_star = (kw[k] for k in _CONFIG_KEYWORDS)
    lm = loaded_model
    kp, sc, cam_w = _check_inputs(keypoints, scores, camera, intrinsics, lm.skeleton.num_joints)
    plan = _plan(lm, kp.shape[0], init=init, t_star=t_star, teacher_given=teacher is not None,
                 guidance_strength=guidance_strength, num_samples=num_samples, smooth=smooth, outlier=outlier,
                 ramp=ramp, refine_placement=refine_placement, keep_size=keep_size, teacher_depth=teacher_depth,
                 sample_steps=sample_steps, sampler=sampler, body_scale=body_scale)
    begins = [teacher_start(lm, teacher, kp.shape[0])] if plan.from_teacher else None
    return _lift_clips(lm, kp[None], sc[None], cam_w[None], [text or ""], begins, plan, num_samples=num_samples,
                       seed=seed, sampler=sampler, text_guidance=text_guidance, guidance_strength=guidance_strength,
                       outlier=outlier, final_pull=final_pull, progress=progress)[0]


@dataclass
class _Plan:
    """The resolved defaults of one lift call (see :func:`lift_details`)."""

    from_teacher: bool
    t_star: int | None
    ramp: float
    refine_placement: bool
    keep_size: bool
    teacher_depth: bool
    sample_steps: int | None
    start: int | None
    visited: list
    body_scale: float
    smooth: float


def _plan(lm, F: int, *, init, t_star, teacher_given, guidance_strength, num_samples, smooth, outlier, ramp,
          refine_placement, keep_size, teacher_depth, sample_steps, sampler, body_scale) -> _Plan:
    if init not in ("noise", "teacher"):
        raise ValueError(f"init: expected 'noise' or 'teacher', got {init!r}")
    from_teacher = init == "teacher"
    max_f = lm.model.cfg.max_frames
    if F > max_f:
        raise ValueError(f"keypoints: {F} frames exceed the model's maximum of {max_f}")
    if not 0.0 <= guidance_strength <= 1.0:
        raise ValueError(f"guidance_strength: expected a value in [0, 1], got {guidance_strength}")
    if num_samples < 1:
        raise ValueError(f"num_samples: expected >= 1, got {num_samples}")
    smooth = default_smooth(lm, init) if smooth is None else float(smooth)
    if smooth < 0 or outlier < 0:
        raise ValueError(f"smooth, outlier: expected >= 0, got {smooth} and {outlier}")
    start = None
    if from_teacher:
        t_star = default_t_star(lm) if t_star is None else int(t_star)
        if not 0 <= t_star <= lm.diffusion.steps:
            raise ValueError(f"t_star: expected 0..{lm.diffusion.steps} denoising steps, got {t_star}")
        ramp = 0.0 if ramp is None else ramp
        refine_placement = False if refine_placement is None else refine_placement
        keep_size = False if keep_size is None else keep_size
        teacher_depth = True if teacher_depth is None else teacher_depth
        start = max(t_star - 1, 0)
    elif teacher_given or t_star is not None or teacher_depth:
        raise ValueError("teacher, t_star, teacher_depth: only used with init='teacher'")
    refine_placement = True if refine_placement is None else refine_placement
    keep_size = True if keep_size is None else keep_size
    ramp = _resolve_ramp(lm, ramp)
    if sample_steps is None and sampler == "ddim" and not from_teacher:
        sample_steps = min(_DEFAULT_LIFT_STEPS.get(lm.config.get("supervision"), LIFT_SAMPLE_STEPS),
                           lm.diffusion.steps)
    visited = [0] if from_teacher and t_star == 0 else lm.diffusion.timesteps(sampler, sample_steps, start)
    body_scale = lm.body_scale if body_scale is None else float(body_scale)
    if not body_scale > 0:
        raise ValueError(f"body_scale: expected a value > 0, got {body_scale}")
    return _Plan(from_teacher, t_star if from_teacher else None, ramp, refine_placement, keep_size,
                 bool(teacher_depth), sample_steps, start, visited, body_scale, smooth)


def _lift_clips(lm, kp, sc, cam_w, texts: list[str], begins, plan: _Plan, *, num_samples: int, seed, sampler: str,
                text_guidance: float, guidance_strength: float, outlier: float, final_pull: bool,
                progress: bool) -> list[LiftResult]:
    """Lift ``C`` clips of one length together, ``num_samples`` chains each (clip-major):
    ``kp [C, F, J, 2]`` normalised, ``sc [C, F, J]``, ``cam_w [C, 3, 4]`` or ``[C, F, 3, 4]``,
    one text per clip (all empty or none), ``begins``: each clip's :class:`TeacherStart`
    (teacher init) or None. Every per-clip quantity is indexed by chain, so the guidance of a
    batch is one pass over all its chains, whatever clip each belongs to."""
    sk = lm.skeleton
    smooth = plan.smooth
    C, F = kp.shape[:2]
    n = num_samples
    N = C * n
    clip_of = torch.arange(C).repeat_interleave(n)  # chain -> clip
    kp_c, sc_c, cam_c_w = kp[clip_of], sc[clip_of], cam_w[clip_of]
    # Empty text: the unconditional model (classifier-free scale 0 keeps only its output).
    has_text = {bool(t.strip()) for t in texts}
    if len(has_text) != 1:
        raise ValueError("texts: a batch is either all captioned or all uncaptioned (lift_batch groups them)")
    cfg_scale = text_guidance if has_text.pop() else 0.0
    step_rate, last_t = _step_rate(len(plan.visited)), plan.visited[-1]  # last_t: 0, unless one step
    ramp, keep_size, body_scale = plan.ramp, plan.keep_size, plan.body_scale

    pull = (guidance_strength * sc_c).float()[..., None]  # [N, F, J, 1]
    observed = sc_c > 0
    full = (guidance_strength * observed).float()[..., None]
    par = torch.tensor([max(p, 0) for p in sk.parents])
    bone_w = torch.minimum(sc_c, sc_c[:, :, par]).float()  # a bone is as reliable as its less certain end
    bone_w[:, :, 0] = 0  # the root has no bone
    kp32 = kp_c.float()
    # Per-chain placement (canonical -> world); None until the first prediction (from noise).
    state = {"rot": None, "tr": None}
    root_depth = None
    if begins is not None:
        state["rot"] = torch.stack([b.rotation for b in begins])[clip_of].clone()
        state["tr"] = torch.stack([b.translation for b in begins])[clip_of].clone()
        if plan.teacher_depth:
            root_depth = torch.stack([_teacher_root_depth(b, cam_w[i], F, smooth)
                                      for i, b in enumerate(begins)])[clip_of]  # [N, F]

    def guide(x0_norm, t, index):
        b = x0_norm.shape[0]
        joints = decode(lm.denormalize(x0_norm).float().cpu(), sk)  # [b, F, J, 3]
        rot, tr = state["rot"], state["tr"]
        init = None if rot is None else (rot[index], tr[index])
        if init is None or plan.refine_placement:
            r_new, t_new = fit_placement(joints, kp_c[index], sc_c[index], cam_c_w[index], init=init,
                                         iterations=15 if init is None else 3, keep_depth=init is not None)
            if rot is None:
                state["rot"], state["tr"] = (torch.zeros(N, 3, 3, dtype=torch.float64),
                                             torch.zeros(N, 3, dtype=torch.float64))
            state["rot"][index], state["tr"][index] = r_new, t_new
        rot, tr = state["rot"][index], state["tr"][index]
        cam_c = _compose(cam_c_w[index], rot, tr).float()
        kp_b = kp32[index].contiguous()
        targets = vk.ray_targets(joints, kp_b, cam_c.contiguous())
        if smooth > 0:
            targets = smooth_corrections(joints, targets, observed[index], smooth, outlier)
        targets, moved_in = _in_front_of_camera(targets, kp_b, cam_c)
        # Confidence sets how far each step trusts a keypoint; the last step (t = 0) moves
        # every observed joint all the way, so that the lift agrees with the image instead
        # of keeping a confidence-sized share of the prediction's last error.
        last = int(t.min()) == last_t
        w = full[index] if final_pull and last else pull[index]
        if ramp > 0 and not last:
            w = w * (1 - int(t.min()) / lm.diffusion.steps) ** ramp
        # The last step is one final correction, not a share of a rate.
        rate = 1.0 if last else step_rate
        if rate != 1.0:
            w = 1 - (1 - w) ** rate
        moved = joints + w * (targets - joints)  # confidence 0: the prediction stays
        if keep_size:
            centre = camera_center(cam_c).to(moved.dtype)  # [b, 3] or [b, F, 3]
            centre = (centre[:, None] if centre.dim() == 2 else centre)[:, :, None]
            # The ray points' size, not the partly moved joints', says how far off the depth is.
            # A ray point moved in front of the camera says nothing about the body's size.
            bw = bone_w[index]
            if bool(moved_in.any()):
                bw = bw * ~(moved_in | moved_in[..., par])
            # k is a whole correction, not a share: fewer steps than the reference apply it
            # whole (a power above 1 would overshoot), more steps divide it.
            k = (_keep_body_size(joints, targets, bw, par) * body_scale) ** min(rate, 1.0)
            if smooth > 0:
                k = masked_gaussian_smooth(k.log()[..., None, None], torch.ones(b, F, 1, dtype=torch.bool),
                                           smooth)[..., 0, 0].exp()
            moved = centre + k[..., None, None] * (moved - centre)
        if root_depth is not None:
            moved = _scale_to_depth(moved, cam_c, root_depth[index])
        # encode() needs one frame more than it returns features for: extrapolate linearly.
        ext = torch.cat((moved, 2 * moved[:, -1:] - moved[:, -2:-1]), dim=1)
        feats = encode(ext, sk)
        _, tf = canonicalize(ext, sk)
        # The re-encoded joints live in their own canonical frame X' = Rt X + tt: move the
        # placement with them (X_w = rot X + tr = rot Rt^T X' + tr - rot Rt^T tt).
        Rt, tt = tf.rotation.double(), tf.translation.double()
        rot_n = rot @ Rt.transpose(-1, -2)
        state["rot"][index] = rot_n
        state["tr"][index] = tr - (rot_n @ tt[..., None])[..., 0]
        return lm.normalize(feats.to(x0_norm.device, x0_norm.dtype))

    use_guide = guide if guidance_strength > 0 else None
    x_init = None if begins is None else torch.stack([b.features for b in begins])[clip_of]
    if begins is not None and plan.t_star == 0:
        x0 = x_init.to(lm.device)
        if use_guide is not None:
            x0 = guide(x0, torch.zeros(N, dtype=torch.long), slice(None))
        feats = lm.denormalize(x0.float()).cpu()
        out = {"features": feats, "joints": decode(feats, sk)}
    else:
        out = lm.generate([texts[int(c)] for c in clip_of], F, guidance=cfg_scale, sampler=sampler,
                          sample_steps=plan.sample_steps, seed=seed, guide=use_guide, progress=progress,
                          init=x_init, start=plan.start)
    canon = out["joints"].double()
    if state["rot"] is None:
        # Unguided: place the finished samples the same way for a like-for-like comparison.
        rot, tr = fit_placement(canon, kp_c, sc_c, cam_c_w)
    else:
        rot, tr = state["rot"], state["tr"]
    world = apply_placement(canon, rot, tr)
    cam_canon = _compose(cam_c_w, rot, tr).float()
    errors = [reprojection_error(world[i], kp_c[i], sc_c[i], cam_c_w[i]) for i in range(N)]
    init = "teacher" if begins is not None else "noise"
    return [LiftResult(world[s].float(), canon[s].float(), out["features"][s], rot[s], tr[s], cam_canon[s],
                       errors[s], init, plan.t_star)
            for s in (slice(c * n, (c + 1) * n) for c in range(C))]


def lift_batch(loaded_model, keypoints, scores, cameras, intrinsics=None, texts=None, *, teachers=None,
               init: str = "noise", t_star: int | None = None, num_samples: int = 1, seed: int | None = None,
               batch_size: int = 32, sampler: str = "ddim", sample_steps: int | None = None,
               guidance_strength: float = 1.0, text_guidance: float = 2.5, refine_placement: bool | None = None,
               keep_size: bool | None = None, smooth: float | None = None, outlier: float = 0.05, final_pull: bool = True,
               ramp: float | None = None, body_scale: float | None = None, teacher_depth: bool | None = None,
               progress: bool = False) -> list[LiftResult]:
    """Lift several clips in one batch per length: :func:`lift_details` for each clip, with
    the denoiser, the ray targets and the placement fits run over all clips' chains at once.

    ``keypoints``, ``scores``, ``cameras``: one entry per clip, shaped as for :func:`lift`
    (lengths may differ); ``intrinsics``: None, one ``(fx, fy, cx, cy)`` for every clip or
    one per clip; ``texts``: None (unconditional) or one caption per clip; ``teachers``
    (``init="teacher"``): one teacher lift per clip. Clips of the same length and the same
    captioned-or-not are lifted together, at most ``batch_size`` clips at a time; group
    ``g`` (in order of first appearance) draws its noise from ``seed + g``, so results are
    deterministic under a seed but a stochastic lift (from noise, or t* > 0) is not the
    draw a single-clip call with the same seed gives. A teacher lift with t* = 0 is
    deterministic and equals :func:`lift_details` clip by clip. Returns one
    :class:`LiftResult` per clip, in input order.
    """
    lm = loaded_model
    J = lm.skeleton.num_joints
    n_clips = len(keypoints)
    if n_clips == 0:
        raise ValueError("keypoints: expected at least one clip, got none")
    given = {"scores": scores, "cameras": cameras, "texts": texts, "teachers": teachers}
    if intrinsics is not None and np.ndim(intrinsics) != 2:  # one (fx, fy, cx, cy) for every clip
        intrinsics = [intrinsics] * n_clips
    given["intrinsics"] = intrinsics
    for name, v in given.items():
        if v is not None and len(v) != n_clips:
            raise ValueError(f"{name}: expected one entry per clip ({n_clips}), got {len(v)}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    texts = [""] * n_clips if texts is None else [t or "" for t in texts]
    clips = []
    for i in range(n_clips):
        try:
            clips.append(_check_inputs(keypoints[i], scores[i], cameras[i],
                                       None if intrinsics is None else intrinsics[i], J))
        except ValueError as e:
            raise ValueError(f"clip {i}: {e}") from None
    common = dict(init=init, t_star=t_star, teacher_given=teachers is not None, guidance_strength=guidance_strength,
                  num_samples=num_samples, smooth=smooth, outlier=outlier, ramp=ramp,
                  refine_placement=refine_placement, keep_size=keep_size, teacher_depth=teacher_depth,
                  sample_steps=sample_steps, sampler=sampler, body_scale=body_scale)
    plans, begins = {}, [None] * n_clips
    for i, (kp, _, _) in enumerate(clips):
        F = kp.shape[0]
        try:
            if F not in plans:
                plans[F] = _plan(lm, F, **common)
            if plans[F].from_teacher:
                begins[i] = teacher_start(lm, None if teachers is None else teachers[i], F)
        except ValueError as e:
            raise ValueError(f"clip {i}: {e}") from None
    groups: dict[tuple, list[int]] = {}
    for i, (kp, _, _) in enumerate(clips):
        groups.setdefault((kp.shape[0], bool(texts[i].strip())), []).append(i)
    chunks = [ids[s:s + batch_size] for ids in groups.values() for s in range(0, len(ids), batch_size)]
    results: list[LiftResult | None] = [None] * n_clips
    for g, ids in enumerate(chunks):
        F = clips[ids[0]][0].shape[0]
        cams = [clips[i][2] for i in ids]
        if any(c.dim() == 3 for c in cams):  # some cameras move: every clip's per frame
            cams = [c.expand(F, 3, 4) if c.dim() == 2 else c for c in cams]
        plan = plans[F]
        out = _lift_clips(lm, torch.stack([clips[i][0] for i in ids]), torch.stack([clips[i][1] for i in ids]),
                          torch.stack(cams), [texts[i] for i in ids],
                          [begins[i] for i in ids] if plan.from_teacher else None, plan,
                          num_samples=num_samples, seed=None if seed is None else seed + g, sampler=sampler,
                          text_guidance=text_guidance, guidance_strength=guidance_strength,
                          outlier=outlier, final_pull=final_pull, progress=progress)
        for i, r in zip(ids, out):
            results[i] = r
    return results


def lift(loaded_model, keypoints, scores, camera, intrinsics=None, text: str = "", *,
         guidance_strength: float = 1.0, sample_steps: int | None = None, seed: int | None = None, **kw):
    """Lift a 2D keypoint sequence to 3D with the trained prior (see the module docstring).

    ``keypoints [F, 22, 2]`` (SMPL22 order; pixels when ``intrinsics (fx, fy, cx, cy)`` is
    given, else normalised image coordinates), ``scores [F, 22]`` confidences in [0, 1]
    (0: not observed), ``camera [3, 4]`` or ``[F, 3, 4]`` world-to-camera ``X_cam = R X + t``
    in a y-up world. ``text``: optional caption (empty: unconditional). ``guidance_strength``
    in [0, 1]: the fraction of the way to the rays each step moves a fully confident joint
    (0 gives an unguided sample, placed by :func:`fit_placement`). Extra keywords go to
    :func:`lift_details` (``config=LiftConfig(...)`` among them).

    Returns joints ``[F, 22, 3]`` in the camera's world frame (numpy in, numpy out).
    """
    res = lift_details(loaded_model, keypoints, scores, camera, intrinsics, text, guidance_strength=guidance_strength,
                       sample_steps=sample_steps, seed=seed, **kw)
    joints = res.joints[0]
    return joints if isinstance(keypoints, torch.Tensor) else joints.numpy()
