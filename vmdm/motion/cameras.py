"""Perspective cameras around a motion clip, projection, and detector-like 2D noise.

Conventions (used everywhere in the project):

* World / canonical frame: metres, y up (the floor is y = 0 after canonicalisation).
* Extrinsic ``[R | t]`` as a ``[..., 3, 4]`` tensor maps a world point to the camera
  frame: ``X_cam = R @ X + t``. The camera looks along ``+z_cam``; ``x_cam`` points to
  the image's right and ``y_cam`` points down the image (the OpenCV convention).
* Normalised image coordinates are ``(x_cam / z_cam, y_cam / z_cam)``: the image of a
  camera with unit focal length and the principal point at the origin.
* Intrinsics are ``(fx, fy, cx, cy)`` in pixels, ``[..., 4]``: ``u = fx * x/z + cx``,
  ``v = fy * y/z + cy``; ``(0, 0)`` is the top-left corner of the image.
* Elevation is the pitch of the optical axis: negative values look down on the subject
  from above its mean height, positive values look up at it.
* Azimuth is measured about +y from +z: azimuth 0 puts the camera on the -z side
  looking along +z (at the back of a subject that faces +z), azimuth pi/2 looks along +x.

A static camera is ``[3, 4]`` per clip; per-frame cameras are ``[T, 3, 4]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vmdm.motion.skeleton import SMPL22, Skeleton

__all__ = [
    "CameraConfig",
    "DetectorNoiseConfig",
    "sample_camera",
    "look_at",
    "camera_center",
    "make_intrinsics",
    "project",
    "pixels_to_normalized",
    "normalized_to_pixels",
    "transform_points",
    "compose_rigid",
    "invert_extrinsic",
    "detector_noise",
]


@dataclass(frozen=True)
class CameraConfig:
    """How random cameras are drawn around a clip."""

    distance: float = 2.5  # metres from the clip's closest joint along the view axis
    elevation_deg: tuple[float, float] = (-22.5, 7.5)
    azimuth_deg: tuple[float, float] = (0.0, 360.0)
    # Per-frame cameras orbit the subject at this rate (deg/s) when ``per_frame``;
    # the sign is drawn at random per clip.
    per_frame: bool = False
    pan_deg_per_s: float = 10.0
    fps: float = 20.0
    image_size: tuple[int, int] = (1000, 1000)  # (width, height) in pixels
    focal_px: float = 1000.0  # about a 53 deg horizontal field of view at 1000 px

    def __post_init__(self) -> None:
        if self.distance <= 0:
            raise ValueError(f"CameraConfig.distance must be > 0, got {self.distance}")
        lo, hi = self.elevation_deg
        if not -90.0 < lo <= hi < 90.0:
            raise ValueError(f"CameraConfig.elevation_deg must satisfy -90 < lo <= hi < 90, got {self.elevation_deg}")
        if self.focal_px <= 0 or min(self.image_size) <= 0:
            raise ValueError(
                f"CameraConfig: focal_px and image_size must be positive, got {self.focal_px}, {self.image_size}"
            )


def make_intrinsics(
    image_size: tuple[int, int] = (1000, 1000),
    focal_px: float | None = None,
    fov_deg: float | None = None,
    dtype=torch.float32,
) -> torch.Tensor:
    """``(fx, fy, cx, cy)`` for a square-pixel camera with the principal point at the centre.

    Give either ``focal_px`` or the horizontal field of view ``fov_deg``.
    """
    w, h = image_size
    if (focal_px is None) == (fov_deg is None):
        raise ValueError("make_intrinsics: give exactly one of focal_px and fov_deg")
    if fov_deg is not None:
        if not 0 < fov_deg < 180:
            raise ValueError(f"make_intrinsics: fov_deg must be in (0, 180), got {fov_deg}")
        focal_px = 0.5 * w / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([focal_px, focal_px, w / 2.0, h / 2.0], dtype=dtype)


def look_at(eye: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Extrinsic ``[..., 3, 4]`` of a camera at ``eye`` looking along ``direction`` (y-up world).

    The image's x axis stays horizontal (no roll), so ``direction`` must not be vertical.
    """
    d = direction / direction.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=d.dtype, device=d.device).expand_as(d)
    right = torch.linalg.cross(d, up)
    n = right.norm(dim=-1, keepdim=True)
    if bool((n < 1e-6).any()):
        raise ValueError("look_at: view direction is vertical, the camera roll is undefined")
    right = right / n
    down = torch.linalg.cross(d, right)
    R = torch.stack([right, down, d], dim=-2)
    t = -(R @ eye[..., None])[..., 0]
    return torch.cat([R, t[..., None]], dim=-1)


def _broadcast_camera(x: torch.Tensor, points: torch.Tensor, trailing: int) -> torch.Tensor:
    """Align a camera-like tensor ``[*M, *trailing_shape]`` with points ``[*L, J, 3]``.

    ``M`` is matched to the *leading* dims of ``L`` (batch first), so a static camera
    ``[B, 3, 4]`` applies to every frame of ``[B, T, J, 3]``.
    """
    lead_x = x.ndim - trailing
    lead_p = points.ndim - 1  # includes J
    if lead_x > lead_p - 1:
        raise ValueError(
            f"camera batch shape {tuple(x.shape[:lead_x])} has more dims than points' "
            f"leading shape {tuple(points.shape[:-2])}"
        )
    shape = x.shape[:lead_x] + (1,) * (lead_p - lead_x) + x.shape[lead_x:]
    return x.reshape(shape)


def transform_points(points: torch.Tensor, extrinsic: torch.Tensor) -> torch.Tensor:
    """``R @ X + t`` for points ``[..., J, 3]`` and extrinsics ``[..., 3, 4]`` (batch-first broadcast)."""
    if points.shape[-1] != 3:
        raise ValueError(f"points: expected [..., J, 3], got {tuple(points.shape)}")
    if extrinsic.shape[-2:] != (3, 4):
        raise ValueError(f"extrinsic: expected [..., 3, 4], got {tuple(extrinsic.shape)}")
    E = _broadcast_camera(extrinsic.to(points.dtype), points, 2)
    return (E[..., :3] @ points[..., None])[..., 0] + E[..., 3]


def project(
    joints: torch.Tensor,
    extrinsic: torch.Tensor,
    intrinsics: torch.Tensor | None = None,
    min_depth: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perspective projection.

    joints ``[..., J, 3]``; extrinsic ``[..., 3, 4]`` whose leading dims are a prefix of
    the joints' (``[B, 3, 4]`` static or ``[B, T, 3, 4]`` per frame for ``[B, T, J, 3]``);
    intrinsics ``[..., 4]`` likewise, or ``None`` for normalised image coordinates.
    Returns ``(uv [..., J, 2], depth [..., J])``. Depth is clamped at ``min_depth`` only
    inside the division, so points behind the camera stay finite (and visibly wrong).
    """
    Xc = transform_points(joints, extrinsic)
    depth = Xc[..., 2]
    uv = Xc[..., :2] / depth.clamp(min=min_depth)[..., None]
    if intrinsics is not None:
        uv = normalized_to_pixels(uv, intrinsics)
    return uv, depth


def normalized_to_pixels(uv: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    if intrinsics.shape[-1] != 4:
        raise ValueError(f"intrinsics: expected [..., 4] (fx, fy, cx, cy), got {tuple(intrinsics.shape)}")
    K = _broadcast_camera(intrinsics.to(uv.dtype), uv, 1)
    return uv * K[..., :2] + K[..., 2:]


def pixels_to_normalized(uv: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    if intrinsics.shape[-1] != 4:
        raise ValueError(f"intrinsics: expected [..., 4] (fx, fy, cx, cy), got {tuple(intrinsics.shape)}")
    K = _broadcast_camera(intrinsics.to(uv.dtype), uv, 1)
    return (uv - K[..., 2:]) / K[..., :2]


def camera_center(extrinsic: torch.Tensor) -> torch.Tensor:
    """World position ``-R^T t`` of the camera(s)."""
    R, t = extrinsic[..., :3], extrinsic[..., 3]
    return -(R.transpose(-1, -2) @ t[..., None])[..., 0]


def invert_extrinsic(extrinsic: torch.Tensor) -> torch.Tensor:
    """Camera-to-world ``[R^T | -R^T t]``."""
    R, t = extrinsic[..., :3], extrinsic[..., 3]
    Rt = R.transpose(-1, -2)
    return torch.cat([Rt, -(Rt @ t[..., None])], dim=-1)


def compose_rigid(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The rigid map ``x -> a(b(x))`` for ``[..., 3, 4]`` maps."""
    Ra, ta = a[..., :3], a[..., 3]
    Rb, tb = b[..., :3], b[..., 3]
    return torch.cat([Ra @ Rb, ((Ra @ tb[..., None])[..., 0] + ta)[..., None]], dim=-1)


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))


def sample_camera(
    joints: torch.Tensor,
    config: CameraConfig = CameraConfig(),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random camera for one clip ``joints [T, J, 3]`` (world, y up).

    The optical axis passes through the clip's centre: mean horizontal position of all
    joints over the clip, at their mean height. The camera is pulled back along the axis
    until the clip's closest joint (over all frames) is ``config.distance`` in front of it.
    Returns ``(extrinsic, intrinsics)``: ``[3, 4]`` (or ``[T, 3, 4]`` when
    ``config.per_frame``) and ``[4]`` pixel intrinsics.
    """
    if joints.ndim != 3 or joints.shape[-1] != 3:
        raise ValueError(f"sample_camera: joints must be [T, J, 3], got {tuple(joints.shape)}")
    x = joints.double()
    centre = x.reshape(-1, 3).mean(0)
    az = math.radians(_uniform(*config.azimuth_deg, generator))
    el = math.radians(_uniform(*config.elevation_deg, generator))
    T = x.shape[0]
    if config.per_frame:
        sign = 1.0 if float(torch.rand((), generator=generator)) < 0.5 else -1.0
        rate = sign * math.radians(config.pan_deg_per_s) / config.fps
        az_t = az + rate * torch.arange(T, dtype=torch.float64)
    else:
        az_t = torch.tensor([az], dtype=torch.float64)
    el_t = torch.full_like(az_t, el)
    d = torch.stack(
        [torch.sin(az_t) * torch.cos(el_t), torch.sin(el_t), torch.cos(az_t) * torch.cos(el_t)], dim=-1
    )  # [n, 3]
    # Depth of every joint relative to the centre, per view direction.
    rel = (x.reshape(-1, 3) - centre) @ d.T  # [T*J, n]
    pull = config.distance - rel.min(0).values  # [n]
    eye = centre - pull[:, None] * d
    E = look_at(eye, d).to(joints.dtype)
    if not config.per_frame:
        E = E[0]
    K = make_intrinsics(config.image_size, focal_px=config.focal_px, dtype=joints.dtype)
    return E, K


@dataclass(frozen=True)
class DetectorNoiseConfig:
    """2D keypoint noise that behaves like an off-the-shelf pose detector, in pixels."""

    sigma_px: float = 3.0  # Gaussian noise of a fully confident joint
    low_conf_gain: float = 2.0  # std multiplier is 1 + gain * (1 - confidence)
    outlier_prob: float = 0.005  # per joint and frame: a gross error (wrong limb / person)
    outlier_px: float = 60.0
    drop_prob: float = 0.002  # per joint and frame: a missed detection starts here
    drop_frames: tuple[int, int] = (2, 12)
    confidence_jitter: float = 0.05  # slow per-joint fluctuation of the score
    occlusion_penalty: float = 0.3  # score lost by a joint well behind the pelvis
    min_confidence: float = 0.05


def _base_confidence(skeleton: Skeleton) -> torch.Tensor:
    """Detectors are surest about the torso and least about hands and feet."""
    conf = []
    for name in skeleton.joint_names:
        if any(k in name for k in ("wrist", "foot", "ankle", "hand", "toe")):
            conf.append(0.75)
        elif any(k in name for k in ("elbow", "knee", "head")):
            conf.append(0.85)
        else:
            conf.append(0.95)
    return torch.tensor(conf)


def _smooth_noise(shape: tuple[int, ...], generator, window: int = 9) -> torch.Tensor:
    """Unit-variance noise along dim 0 smoothed by a box filter."""
    n = torch.randn((shape[0] + window - 1,) + shape[1:], generator=generator)
    k = n.unfold(0, window, 1).mean(-1)
    return k * math.sqrt(window)


def detector_noise(
    uv_px: torch.Tensor,
    depth: torch.Tensor,
    config: DetectorNoiseConfig = DetectorNoiseConfig(),
    skeleton: Skeleton = SMPL22,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy keypoints and per-joint confidence scores for one clip.

    uv_px ``[T, J, 2]`` clean pixel keypoints, depth ``[T, J]`` camera depths (used for a
    self-occlusion proxy: joints behind the pelvis get lower scores). Returns
    ``(noisy_uv [T, J, 2], scores [T, J])``; a score of 0 marks a missed detection
    (its keypoint is still finite but meaningless).
    """
    if uv_px.ndim != 3 or uv_px.shape[-1] != 2:
        raise ValueError(f"detector_noise: uv_px must be [T, J, 2], got {tuple(uv_px.shape)}")
    if depth.shape != uv_px.shape[:-1]:
        raise ValueError(f"detector_noise: depth must be {tuple(uv_px.shape[:-1])}, got {tuple(depth.shape)}")
    T, J, _ = uv_px.shape
    if J != skeleton.num_joints:
        raise ValueError(f"detector_noise: {J} joints but skeleton {skeleton.name!r} has {skeleton.num_joints}")
    base = _base_confidence(skeleton).to(uv_px.dtype)
    behind = torch.sigmoid((depth - depth[:, :1]) / 0.05).to(uv_px.dtype)
    conf = base - config.occlusion_penalty * behind
    conf = conf + config.confidence_jitter * _smooth_noise((T, J), generator).to(uv_px.dtype)
    conf = conf.clamp(config.min_confidence, 1.0)

    std = config.sigma_px * (1.0 + config.low_conf_gain * (1.0 - conf))
    noisy = uv_px + std[..., None] * torch.randn(uv_px.shape, generator=generator, dtype=uv_px.dtype)

    outlier = torch.rand((T, J), generator=generator) < config.outlier_prob
    if bool(outlier.any()):
        ang = 2 * math.pi * torch.rand((T, J), generator=generator)
        mag = config.outlier_px * (0.5 + torch.rand((T, J), generator=generator))
        jump = torch.stack([torch.cos(ang), torch.sin(ang)], -1) * mag[..., None]
        noisy = torch.where(outlier[..., None], noisy + jump.to(noisy.dtype), noisy)
        conf = torch.where(outlier, conf * 0.5, conf)

    dropped = torch.zeros((T, J), dtype=torch.bool)
    starts = torch.nonzero(torch.rand((T, J), generator=generator) < config.drop_prob)
    lo, hi = config.drop_frames
    for t0, j in starts.tolist():
        n = int(torch.randint(lo, hi + 1, (), generator=generator))
        dropped[t0 : t0 + n, j] = True
    conf = torch.where(dropped, torch.zeros_like(conf), conf)
    return noisy, conf
