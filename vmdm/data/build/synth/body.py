"""Turning per-frame pose channels into SMPL-22 joint positions (numpy, vectorised over frames).

The torso, neck and head are placed by forward kinematics from local
rotations; arms and legs are placed by analytic two-bone IK towards wrist and
ankle targets (so a planted foot stays exactly where the planner put it), and
the toe by the foot's yaw/pitch. Every bone keeps the subject's length and its
rest direction in the parent frame, so the joints are exactly reproducible by
``kinematics.inverse_kinematics`` + forward kinematics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vmdm.motion.skeleton import SMPL22

J = 22
REST = np.asarray(SMPL22.offsets, dtype=np.float64)
REST_LEN = np.linalg.norm(REST, axis=1)
REST_DIR = REST / np.maximum(REST_LEN, 1e-9)[:, None]

# Per side: (hip, knee, ankle, toe), (collar, shoulder, elbow, wrist); index 0 left.
LEG = ((1, 4, 7, 10), (2, 5, 8, 11))
ARM = ((13, 16, 18, 20), (14, 17, 19, 21))
SIDE_SIGN = (1.0, -1.0)  # the body's left is +x


# --------------------------------------------------------------------------- rotations


def rx(a):
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(a.shape + (3, 3))


def ry(a):
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(a.shape + (3, 3))


def rz(a):
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(a.shape + (3, 3))


def euler(e):
    """``[..., 3]`` (pitch about x, roll about z, twist about y) -> matrices.

    Positive pitch bends the top forward (+z), positive roll tilts it to the
    body's right (-x), positive twist turns it to the left.
    """
    e = np.asarray(e, dtype=np.float64)
    return ry(e[..., 2]) @ rx(e[..., 0]) @ rz(e[..., 1])


def mv(m, v):
    return np.einsum("...ij,...j->...i", m, v)


def normalize(v, eps=1e-9):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)


# --------------------------------------------------------------------------- subject


@dataclass(frozen=True)
class Subject:
    """Per-subject bone lengths (rest directions are shared)."""

    lengths: np.ndarray  # [J]
    scale: float

    @property
    def offsets(self) -> np.ndarray:
        return REST_DIR * self.lengths[:, None]

    @property
    def leg(self) -> tuple[float, float]:
        return float(self.lengths[4]), float(self.lengths[7])

    @property
    def arm(self) -> tuple[float, float]:
        return float(self.lengths[18]), float(self.lengths[20])

    @property
    def ankle_height(self) -> float:
        """Ankle height above the toe joint with the foot flat."""
        return float(-self.offsets[10, 1])

    @property
    def hip_height(self) -> float:
        """Pelvis height when standing with straight legs and flat feet."""
        o = self.offsets
        return float(-o[1, 1] + sum(self.leg) + self.ankle_height)

    @property
    def hip_width(self) -> float:
        return float(self.offsets[1, 0] - self.offsets[2, 0])


def sample_subject(rng: np.random.Generator) -> Subject:
    """Overall size 1.5-1.9 m plus independent leg / torso / arm / width proportions."""
    scale = rng.uniform(0.88, 1.12)
    f = np.ones(J)
    legs = rng.uniform(0.94, 1.06)
    torso = rng.uniform(0.93, 1.07)
    arms = rng.uniform(0.94, 1.06)
    width = rng.uniform(0.92, 1.08)
    f[[4, 5, 7, 8]] *= legs
    f[[10, 11]] *= rng.uniform(0.93, 1.07)
    f[[3, 6, 9, 12, 15]] *= torso
    f[[16, 17, 18, 19, 20, 21]] *= arms
    f[[1, 2, 13, 14]] *= width
    return Subject(REST_LEN * scale * f, float(scale))


# --------------------------------------------------------------------------- IK


def two_bone_ik(a, target, l1, l2, pole):
    """Middle and end joint of a two-bone limb rooted at ``a`` reaching for ``target``.

    The bend plane contains ``pole`` (a direction the middle joint points
    to). Unreachable targets are pulled onto the reachable shell.
    """
    d = target - a
    dist = np.linalg.norm(d, axis=-1, keepdims=True)
    dhat = d / np.maximum(dist, 1e-9)
    dist_c = np.clip(dist, abs(l1 - l2) + 1e-4, (l1 + l2) * (1 - 1e-5))
    end = a + dhat * dist_c
    cos_a = np.clip((l1 * l1 + dist_c**2 - l2 * l2) / (2 * l1 * dist_c), -1.0, 1.0)
    sin_a = np.sqrt(1 - cos_a**2)
    p = pole - (pole * dhat).sum(-1, keepdims=True) * dhat
    pn = np.linalg.norm(p, axis=-1, keepdims=True)
    # Degenerate pole (parallel to the limb): any perpendicular will do.
    alt = np.cross(dhat, np.array([1.0, 0.0, 0.0]))
    alt = np.where(np.linalg.norm(alt, axis=-1, keepdims=True) < 1e-6, np.cross(dhat, [0.0, 0.0, 1.0]), alt)
    p = np.where(pn < 1e-6, normalize(alt), p / np.maximum(pn, 1e-9))
    mid = a + l1 * (cos_a * dhat + sin_a * p)
    return mid, end


# --------------------------------------------------------------------------- pose channels


@dataclass
class Pose:
    """Per-frame pose channels, all ``float64`` arrays with ``T`` frames.

    World frame: y up. Arm targets are relative to the shoulder in the torso
    (spine3) frame unless ``wrist_world`` is set for that side.
    """

    pelvis: np.ndarray  # [T, 3]
    heading: np.ndarray  # [T]
    pelvis_tilt: np.ndarray  # [T, 3] euler relative to the heading
    spine: np.ndarray  # [T, 3] euler, spread over spine1..3
    neck: np.ndarray  # [T, 3]
    collar: np.ndarray  # [T, 2] shoulder shrug (radians, raises the shoulder)
    wrist: np.ndarray  # [2, T, 3] wrist target relative to the shoulder, torso frame
    elbow_pole: np.ndarray  # [2, T, 3] torso frame
    ankle: np.ndarray  # [2, T, 3] world
    foot_yaw: np.ndarray  # [2, T]
    foot_pitch: np.ndarray  # [2, T]
    wrist_world: np.ndarray | None = None  # [2, T, 3]
    wrist_world_w: np.ndarray | None = None  # [2, T] blend weight of wrist_world

    @property
    def T(self) -> int:
        return self.pelvis.shape[0]

    def copy(self) -> "Pose":
        return Pose(**{k: (None if v is None else np.array(v)) for k, v in self.__dict__.items()})

    def slice(self, a: int, b: int) -> "Pose":
        out = {}
        for k, v in self.__dict__.items():
            if v is None:
                out[k] = None
            elif k in ("wrist", "elbow_pole", "ankle", "foot_yaw", "foot_pitch", "wrist_world", "wrist_world_w"):
                out[k] = v[:, a:b]
            else:
                out[k] = v[a:b]
        return Pose(**out)

    @staticmethod
    def concat(poses: list["Pose"]) -> "Pose":
        out = {}
        any_world = any(p.wrist_world is not None for p in poses)
        for k in poses[0].__dict__:
            if k in ("wrist_world", "wrist_world_w"):
                if not any_world:
                    out[k] = None
                    continue
                parts = []
                for p in poses:
                    v = getattr(p, k)
                    if v is None:
                        v = np.zeros((2, p.T, 3)) if k == "wrist_world" else np.zeros((2, p.T))
                    parts.append(v)
                out[k] = np.concatenate(parts, axis=1)
            elif k in ("wrist", "elbow_pole", "ankle", "foot_yaw", "foot_pitch"):
                out[k] = np.concatenate([getattr(p, k) for p in poses], axis=1)
            else:
                out[k] = np.concatenate([getattr(p, k) for p in poses], axis=0)
        return Pose(**out)


def torso_frames(pose: Pose, subj: Subject):
    """Global rotations and positions of the pelvis and torso joints."""
    off = subj.offsets
    T = pose.T
    pos = np.zeros((T, J, 3))
    g_pel = ry(pose.heading) @ euler(pose.pelvis_tilt)
    pos[:, 0] = pose.pelvis
    for j in (1, 2, 3):
        pos[:, j] = pose.pelvis + mv(g_pel, off[j])
    g = g_pel
    prev = 3
    for j, w in ((6, 0.3), (9, 0.3)):
        g = g @ euler(pose.spine * w)
        pos[:, j] = pos[:, prev] + mv(g, off[j])
        prev = j
    g_chest = g @ euler(pose.spine * 0.4)
    for j in (12, 13, 14):
        pos[:, j] = pos[:, 9] + mv(g_chest, off[j])
    g_neck = g_chest @ euler(pose.neck)
    pos[:, 15] = pos[:, 12] + mv(g_neck, off[15])
    for side, (collar, shoulder, _, _) in enumerate(ARM):
        # Shrug: rotate the collar about the forward axis, raising the shoulder.
        g_col = g_chest @ rz(SIDE_SIGN[side] * pose.collar[:, side])
        pos[:, shoulder] = pos[:, collar] + mv(g_col, off[shoulder])
    return pos, g_pel, g_chest


def build_joints(pose: Pose, subj: Subject) -> np.ndarray:
    """``[T, 22, 3]`` joint positions for the pose channels."""
    pos, g_pel, g_chest = torso_frames(pose, subj)
    off = subj.offsets
    la, lb = subj.arm
    for side, (_, shoulder, elbow, wrist) in enumerate(ARM):
        target = pos[:, shoulder] + mv(g_chest, pose.wrist[side])
        if pose.wrist_world is not None:
            w = pose.wrist_world_w[side][:, None]
            target = (1 - w) * target + w * pose.wrist_world[side]
        pole = mv(g_chest, pose.elbow_pole[side])
        pos[:, elbow], pos[:, wrist] = two_bone_ik(pos[:, shoulder], target, la, lb, pole)
    l1, l2 = subj.leg
    for side, (hip, knee, ankle, toe) in enumerate(LEG):
        foot_rot = ry(pose.foot_yaw[side]) @ rx(pose.foot_pitch[side])
        # Knees point where the foot points, slightly outwards.
        pole = mv(foot_rot, np.array([0.12 * SIDE_SIGN[side], 0.0, 1.0]))
        pos[:, knee], pos[:, ankle] = two_bone_ik(pos[:, hip], pose.ankle[side], l1, l2, pole)
        pos[:, toe] = pos[:, ankle] + mv(foot_rot, off[toe])
    return pos


def fit_pelvis_height(pose: Pose, subj: Subject, slack: float = 0.995) -> None:
    """Lower the pelvis (in place) wherever a leg could not reach a grounded
    ankle target, smoothly, so planted feet stay planted. Lifted feet (kicks,
    flight) do not constrain it: their legs just straighten."""
    pos, _, _ = torso_frames(pose, subj)
    lmax = sum(subj.leg) * slack
    drop = np.zeros(pose.T)
    for side, (hip, _, _, _) in enumerate(LEG):
        grounded = pose.ankle[side][:, 1] < subj.ankle_height + 0.03 * subj.scale
        d = pose.ankle[side] - pos[:, hip]
        dh2 = d[:, 0] ** 2 + d[:, 2] ** 2
        allowed = pose.ankle[side][:, 1] + np.sqrt(np.maximum(lmax**2 - dh2, 0.0))
        drop = np.maximum(drop, np.where(grounded, pos[:, hip, 1] - allowed, 0.0))
    if drop.max() <= 0:
        return
    from scipy.ndimage import gaussian_filter1d, maximum_filter1d

    smooth = gaussian_filter1d(maximum_filter1d(drop, size=7, mode="nearest"), 2.0, mode="nearest")
    pose.pelvis[:, 1] -= np.maximum(drop, smooth)
