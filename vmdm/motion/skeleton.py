"""Skeleton descriptions as data, plus batched forward kinematics.

A :class:`Skeleton` holds everything the representation, the generator and the
losses need to know about a body: joint names, the kinematic tree, rest-pose
bone offsets (metres, y up, the body facing +z, its left on +x), which joints
are feet, and which joints define the facing direction. Nothing else in the
project hard-codes a joint count.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import vmdm_kernels as vk

__all__ = ["Skeleton", "SMPL22", "DETECTOR16", "KIT21", "DATASET_FPS", "feature_skeleton", "forward_kinematics",
           "get_skeleton"]


@dataclass(frozen=True)
class Skeleton:
    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    # Rest-pose offset of each joint from its parent (root: zero), metres.
    offsets: tuple[tuple[float, float, float], ...]
    feet_left: tuple[int, ...]
    feet_right: tuple[int, ...]
    # (right hip, left hip, right shoulder, left shoulder): across-body vectors
    # whose average, crossed with up, gives the facing direction.
    facing_joints: tuple[int, int, int, int]
    # Joint whose chain the IK treats as the "raw" bone direction used when a
    # joint has several children (HumanML3D's kinematic chains).
    chains: tuple[tuple[int, ...], ...] = field(default=())
    # Rest directions the feature encoder's inverse kinematics measures bone rotations from
    # (HumanML3D's ``*_raw_offsets``); the offsets' directions when empty.
    ik_directions: tuple[tuple[float, float, float], ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if len(self.parents) != n or len(self.offsets) != n:
            raise ValueError(
                f"Skeleton {self.name!r}: joint_names ({n}), parents ({len(self.parents)}) "
                f"and offsets ({len(self.offsets)}) must have the same length"
            )
        if self.ik_directions and len(self.ik_directions) != n:
            raise ValueError(f"Skeleton {self.name!r}: ik_directions: expected {n} triples, got "
                             f"{len(self.ik_directions)}")
        if self.parents[0] != -1:
            raise ValueError(f"Skeleton {self.name!r}: joint 0 must be the root (parent -1)")
        for j, p in enumerate(self.parents[1:], start=1):
            if not 0 <= p < j:
                raise ValueError(
                    f"Skeleton {self.name!r}: parent of joint {j} is {p}; parents must precede children"
                )

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def num_feet(self) -> int:
        return len(self.feet_left) + len(self.feet_right)

    @property
    def feature_dim(self) -> int:
        """Size of the HumanML3D-style feature vector for this skeleton:
        12J - 5 + (number of foot joints), i.e. 12J - 1 with two feet per side."""
        return 12 * self.num_joints - 5 + self.num_feet

    def offsets_tensor(self, dtype=torch.float32, device=None) -> torch.Tensor:
        return torch.tensor(self.offsets, dtype=dtype, device=device)

    def bone_lengths(self) -> torch.Tensor:
        return self.offsets_tensor().norm(dim=-1)

    def children(self, j: int) -> list[int]:
        return [c for c, p in enumerate(self.parents) if p == j]

    def index(self, name: str) -> int:
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"Skeleton {self.name!r} has no joint {name!r}; joints: {self.joint_names}") from None


# 22-joint SMPL body as used by HumanML3D. Offsets are those of a neutral adult
# (about 1.7 m tall) in the SMPL rest pose.
SMPL22 = Skeleton(
    name="smpl22",
    joint_names=(
        "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
        "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
        "neck", "left_collar", "right_collar", "head", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    ),
    parents=(-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19),
    offsets=(
        (0.0, 0.0, 0.0),
        (0.0586, -0.0823, -0.0177),
        (-0.0603, -0.0905, -0.0043),
        (0.0044, 0.1244, -0.0384),
        (0.0435, -0.3865, 0.0080),
        (-0.0433, -0.3837, -0.0048),
        (0.0045, 0.1380, 0.0268),
        (-0.0148, -0.4269, -0.0374),
        (0.0191, -0.4200, -0.0346),
        (-0.0023, 0.0560, 0.0029),
        (0.0410, -0.0603, 0.1220),
        (-0.0348, -0.0621, 0.1303),
        (-0.0134, 0.2116, -0.0335),
        (0.0717, 0.1140, -0.0189),
        (-0.0830, 0.1125, -0.0238),
        (0.0101, 0.0889, 0.0504),
        (0.1229, 0.0452, -0.0190),
        (-0.1132, 0.0469, -0.0085),
        (0.2553, -0.0156, -0.0229),
        (-0.2601, -0.0144, -0.0313),
        (0.2657, 0.0127, -0.0073),
        (-0.2692, 0.0068, -0.0060),
    ),
    feet_left=(7, 10),
    feet_right=(8, 11),
    facing_joints=(2, 1, 17, 16),
    # HumanML3D's t2m_raw_offsets.
    ik_directions=(
        (0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0),
        (0, 1, 0), (0, 0, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, -1, 0), (0, -1, 0),
        (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0),
    ),
    chains=(
        (0, 2, 5, 8, 11),
        (0, 1, 4, 7, 10),
        (0, 3, 6, 9, 12, 15),
        (9, 14, 17, 19, 21),
        (9, 13, 16, 18, 20),
    ),
)

# 16-joint detector-style body (AlphaPose/MPII order), as used for real videos.
DETECTOR16 = Skeleton(
    name="detector16",
    joint_names=(
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
        "left_ankle", "thorax", "neck", "head_top", "right_shoulder", "right_elbow",
        "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    ),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 7, 10, 11, 7, 13, 14),
    offsets=(
        (0.0, 0.0, 0.0),
        (-0.0603, -0.0905, -0.0043),
        (-0.0433, -0.3837, -0.0048),
        (0.0191, -0.4200, -0.0346),
        (0.0586, -0.0823, -0.0177),
        (0.0435, -0.3865, 0.0080),
        (-0.0148, -0.4269, -0.0374),
        (0.0066, 0.3184, -0.0087),
        (-0.0134, 0.2116, -0.0335),
        (0.0101, 0.1889, 0.0504),
        (-0.1962, 0.1594, -0.0323),
        (-0.2601, -0.0144, -0.0313),
        (-0.2692, 0.0068, -0.0060),
        (0.1946, 0.1592, -0.0379),
        (0.2553, -0.0156, -0.0229),
        (0.2657, 0.0127, -0.0073),
    ),
    feet_left=(6,),
    feet_right=(3,),
    facing_joints=(1, 4, 10, 13),
    chains=(
        (0, 1, 2, 3),
        (0, 4, 5, 6),
        (0, 7, 8, 9),
        (7, 10, 11, 12),
        (7, 13, 14, 15),
    ),
)

# KIT-ML's 21-joint MMM body as processed by HumanML3D (12.5 fps, D = 251).
# Rest directions are HumanML3D's ``kit_raw_offsets``; the bone lengths are
# those of an average adult (the KIT files carry their own). Feet and facing
# joints are HumanML3D's (``fid_r = [14, 15]``, ``fid_l = [19, 20]``,
# ``face_joint_indx = [11, 16, 5, 8]``): HumanML3D's KIT processing treats the
# MMM "L"-prefixed chains (11..15, 5..7) as the right side, so with these raw
# offsets the canonicalised KIT rest pose faces -z. Kept as is so features
# match HumanML3D's KIT files.
_KIT_DIRS_LENGTHS = (
    ((0, 0, 0), 0.0),
    ((0, 1, 0), 0.10), ((0, 1, 0), 0.15), ((0, 1, 0), 0.20), ((0, 1, 0), 0.16),
    ((1, 0, 0), 0.18), ((0, -1, 0), 0.28), ((0, -1, 0), 0.25),
    ((-1, 0, 0), 0.18), ((0, -1, 0), 0.28), ((0, -1, 0), 0.25),
    ((1, 0, 0), 0.10), ((0, -1, 0), 0.42), ((0, -1, 0), 0.41), ((0, 0, 1), 0.06), ((0, 0, 1), 0.10),
    ((-1, 0, 0), 0.10), ((0, -1, 0), 0.42), ((0, -1, 0), 0.41), ((0, 0, 1), 0.06), ((0, 0, 1), 0.10),
)

KIT21 = Skeleton(
    name="kit21",
    joint_names=(
        "root", "BP", "BT", "BLN", "BUN", "LS", "LE", "LW", "RS", "RE", "RW",
        "LH", "LK", "LA", "LMrot", "LF", "RH", "RK", "RA", "RMrot", "RF",
    ),
    parents=(-1, 0, 1, 2, 3, 3, 5, 6, 3, 8, 9, 0, 11, 12, 13, 14, 0, 16, 17, 18, 19),
    offsets=tuple(tuple(float(c) * length for c in d) for d, length in _KIT_DIRS_LENGTHS),
    feet_left=(19, 20),
    feet_right=(14, 15),
    facing_joints=(11, 16, 5, 8),
    chains=(
        (0, 11, 12, 13, 14, 15),
        (0, 16, 17, 18, 19, 20),
        (0, 1, 2, 3, 4),
        (3, 5, 6, 7),
        (3, 8, 9, 10),
    ),
)

# Frame rate of each skeleton's reference dataset.
DATASET_FPS = {"smpl22": 20.0, "kit21": 12.5}

_SKELETONS = {s.name: s for s in (SMPL22, DETECTOR16, KIT21)}


@functools.lru_cache(maxsize=None)
def feature_skeleton(skeleton: Skeleton) -> vk.FeatureSkeleton:
    """The feature encoder's view of ``skeleton`` (parents, IK rest directions, facing joints, feet,
    kinematic chains)."""
    rest = skeleton.ik_directions or skeleton.offsets
    return vk.FeatureSkeleton(skeleton.parents, tuple(tuple(float(v) for v in o) for o in rest),
                              skeleton.facing_joints, skeleton.feet_left, skeleton.feet_right,
                              tuple(tuple(c) for c in skeleton.chains))


def get_skeleton(name: str | Skeleton) -> Skeleton:
    if isinstance(name, Skeleton):
        return name
    try:
        return _SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; available: {sorted(_SKELETONS)}") from None


def forward_kinematics(
    local_rotations: torch.Tensor,
    root_positions: torch.Tensor,
    skeleton: Skeleton,
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Joint positions from local rotation matrices and a root trajectory.

    local_rotations: ``[..., J, 3, 3]``, each joint's rotation relative to its
        parent (the root's is global).
    root_positions: ``[..., 3]``.
    offsets: ``[J, 3]`` or ``[..., J, 3]`` bone offsets (per-subject proportions);
        the skeleton's rest offsets when omitted.
    Returns ``[..., J, 3]``.
    """
    J = skeleton.num_joints
    if local_rotations.shape[-3:] != (J, 3, 3):
        raise ValueError(
            f"local_rotations: expected shape [..., {J}, 3, 3], got {tuple(local_rotations.shape)}"
        )
    if root_positions.shape[-1] != 3 or root_positions.shape[:-1] != local_rotations.shape[:-3]:
        raise ValueError(
            f"root_positions: expected shape {tuple(local_rotations.shape[:-3]) + (3,)}, "
            f"got {tuple(root_positions.shape)}"
        )
    if offsets is None:
        offsets = skeleton.offsets_tensor(local_rotations.dtype, local_rotations.device)
    offsets = offsets.to(local_rotations.dtype).expand(*local_rotations.shape[:-3], J, 3)
    glob_rot: list[torch.Tensor] = [local_rotations[..., 0, :, :]]
    pos: list[torch.Tensor] = [root_positions]
    # The loop is over the kinematic tree (depth-first order), not over data.
    for j in range(1, J):
        p = skeleton.parents[j]
        glob_rot.append(glob_rot[p] @ local_rotations[..., j, :, :])
        pos.append(pos[p] + (glob_rot[p] @ offsets[..., j, :, None])[..., 0])
    return torch.stack(pos, dim=-2)
