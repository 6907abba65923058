"""vmdm_kernels: fused loss kernels for 2D-supervised 3D motion learning.

Ops (each with a pure-PyTorch reference, C++ CPU, CUDA and Triton backends):

- :func:`reprojection_velocity_loss`: depth-weighted 2D reprojection + 2D velocity
  losses from one pass (the VideoMDM training loss);
- :func:`reprojection_loss`, :func:`velocity_loss`: each term alone;
- :func:`velocity_loss_3d`: 3D finite-difference velocity loss;
- :func:`ray_targets`: closest points on the keypoints' camera rays;
- :func:`motion_features`: HumanML3D motion features (263-dim for SMPL-22) from joint
  positions in one pass (forward-only kernels, differentiable reference);
- :func:`recover_from_ric`: the inverse, features -> joints, with a hand-written backward.

:func:`backends` reports what can run here.
"""

from .dispatch import BACKENDS, BackendUnavailableError, backends, choose_backend
from .ops import (
    DEPTH_MODES,
    FeatureSkeleton,
    motion_features,
    project,
    recover_from_ric,
    ray_targets,
    reprojection_loss,
    reprojection_velocity_loss,
    velocity_loss,
    velocity_loss_3d,
)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "DEPTH_MODES",
    "FeatureSkeleton",
    "backends",
    "choose_backend",
    "motion_features",
    "project",
    "ray_targets",
    "recover_from_ric",
    "reprojection_loss",
    "reprojection_velocity_loss",
    "velocity_loss",
    "velocity_loss_3d",
]
