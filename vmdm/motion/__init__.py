"""Motion geometry: skeletons, kinematics, the HumanML3D representation, cameras, retargeting
and temporal smoothing. Everything here is a pure function of arrays or tensors."""

from vmdm.motion.representation import (
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
from vmdm.motion.skeleton import DETECTOR16, KIT21, SMPL22, Skeleton, forward_kinematics, get_skeleton

__all__ = [
    "Skeleton", "SMPL22", "DETECTOR16", "KIT21", "forward_kinematics", "get_skeleton",
    "CanonicalTransform", "Normalizer", "canonicalize", "channel_groups", "compute_mean_std",
    "decode", "encode", "feature_dim", "redundant_slice",
]
