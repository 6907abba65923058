"""Motion data: skeletons, the HumanML3D representation, the built-in corpus,
cameras, the 2D-only dataset with its teacher lifter, and real-data loaders."""

from vmdm.data.skeleton import DETECTOR16, KIT21, SMPL22, Skeleton, forward_kinematics, get_skeleton
from vmdm.data.representation import (
    CanonicalTransform,
    Normalizer,
    canonicalize,
    channel_groups,
    compute_mean_std,
    decode,
    encode,
    feature_dim,
    redundant_slice,
)
from vmdm.data.humanml3d import HumanML3DIndex, load_split

__all__ = [
    "Skeleton", "SMPL22", "DETECTOR16", "KIT21", "forward_kinematics", "get_skeleton",
    "CanonicalTransform", "Normalizer", "canonicalize", "channel_groups", "compute_mean_std",
    "decode", "encode", "feature_dim", "redundant_slice", "HumanML3DIndex", "load_split",
]
