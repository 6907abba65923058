"""Starting a lift from the teacher's lift, the way the 2D-supervised prior was trained.

A VideoMDM prior learns one job: take a teacher lift diffused to step ``t`` and return a
motion that reprojects onto the keypoints. :func:`teacher_start` prepares that input for a
lift: the teacher's world-frame joints are canonicalised exactly as the 2D-only dataset
does it (:func:`vmdm.data.build.build_2d.observe_clip`: floor at 0, root at the xz origin
at frame 0, facing +z), encoded to normalised features, and the canonical-to-world
placement is returned so that the camera can be expressed in the lift's canonical frame
(and the result mapped back to the world) without any placement fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vmdm.motion.representation import canonicalize, encode

__all__ = ["teacher_start", "teacher_joints_for", "TeacherStart", "find_teacher_lifter", "clip_teacher"]


class TeacherStart:
    """The teacher's lift as a diffusion input: ``features [F, D]`` (normalised),
    ``rotation [3, 3]`` and ``translation [3]`` (canonical -> world, ``X_w = rotation X_c +
    translation``) and its canonical joints ``[F + 1, J, 3]``."""

    def __init__(self, features: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                 canonical: torch.Tensor):
        self.features, self.rotation, self.translation, self.canonical = features, rotation, translation, canonical


def teacher_joints_for(teacher, frames: int, num_joints: int) -> torch.Tensor:
    """``teacher`` (world-frame joints ``[F, J, 3]`` or ``[F + 1, J, 3]`` for ``frames = F``
    keypoint frames) checked and as ``[F + 1, J, 3]`` float64: features of ``F`` frames need
    one frame more (velocities), so an ``F``-frame lift is extended linearly by one frame,
    as the guidance extends its corrected joints."""
    if teacher is None:
        raise ValueError("teacher: init='teacher' needs the teacher's lift (world-frame joints [F, 22, 3]); "
                         "pass teacher=..., or use init='noise'")
    if isinstance(teacher, torch.Tensor):
        x = teacher.detach().cpu().double()
    else:
        try:
            x = torch.as_tensor(np.asarray(teacher, dtype=np.float64))
        except (TypeError, ValueError):
            raise TypeError(f"teacher: expected an array of joints, got {type(teacher).__name__}") from None
    if x.dim() != 3 or tuple(x.shape[1:]) != (num_joints, 3) or x.shape[0] not in (frames, frames + 1):
        raise ValueError(f"teacher: expected [{frames}, {num_joints}, 3] or [{frames + 1}, {num_joints}, 3] "
                         f"(one lift per keypoint frame), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("teacher: contains NaN or inf")
    if x.shape[0] == frames:
        x = torch.cat((x, 2 * x[-1:] - x[-2:-1]), dim=0)
    return x


def teacher_start(loaded_model, teacher, frames: int) -> TeacherStart:
    """The teacher's lift (see :func:`teacher_joints_for`) canonicalised, encoded and
    normalised for ``loaded_model``, with its canonical-to-world placement."""
    sk = loaded_model.skeleton
    world = teacher_joints_for(teacher, frames, sk.num_joints)
    canon, tf = canonicalize(world, sk)
    feats = encode(canon, sk)  # [F, D]: encoding is invariant to the frame, canonical or not
    rot_c, tr_c = tf.rotation.double(), tf.translation.double()  # X_c = rot_c X_w + tr_c
    rotation = rot_c.transpose(-1, -2)
    translation = -(rotation @ tr_c[..., None])[..., 0]
    return TeacherStart(loaded_model.normalize(feats.float()), rotation, translation, canon)


def find_teacher_lifter(checkpoint) -> Path | None:
    """The teacher lifter of a prior: the one its 2D-only training data were built with,
    else the default cache's (``python -m vmdm.train`` builds it); None when neither exists."""
    from vmdm.data.build.prepare import default_paths
    from vmdm.eval.run import lifter_path_for
    from vmdm.training.checkpoint import load_checkpoint

    root = load_checkpoint(checkpoint).get("data_root")
    found = lifter_path_for(root) if root and Path(root).is_dir() else None
    if found is not None:
        return found
    default = default_paths().lifter
    return default if default.is_file() else None


def clip_teacher(lifter_path):
    """The project's teacher lifter as the ``teacher`` of
    :func:`vmdm.data.formats.video.load_video_clip`: camera-frame joints of normalised
    SMPL22 keypoints."""
    from vmdm.data.build.teacher import load_lifter

    model = load_lifter(lifter_path).eval()
    if model.config.num_joints != 22:
        raise ValueError(f"{lifter_path}: the teacher lifter has {model.config.num_joints} joints, expected 22 (SMPL22)")

    @torch.no_grad()
    def run(keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
        kp = torch.from_numpy(np.asarray(keypoints, dtype=np.float32))[None]
        sc = torch.from_numpy(np.asarray(scores, dtype=np.float32))[None]
        return model.lift_camera(kp, sc)[0].double().numpy()

    return run
