"""Public ops: validation, backend dispatch, autograd and torch.library registration.

One module per fused op, mirroring ``csrc/<op>/``, ``ref/<op>.py`` and ``triton/<op>.py``:

- :mod:`.reproj_vel`: :func:`reprojection_velocity_loss`, :func:`reprojection_loss`,
  :func:`velocity_loss`;
- :mod:`.velocity3d`: :func:`velocity_loss_3d`;
- :mod:`.ray_targets`: :func:`ray_targets`;
- :mod:`.motion_features`: :func:`motion_features` (forward-only kernels);
- :mod:`.recover_from_ric`: :func:`recover_from_ric`.

Each module validates its inputs, chooses a backend (:mod:`._common`) and declares its
kernels once as a :class:`._registry.FusedOp`, which builds the ``vmdm::<op>_fwd`` /
``vmdm::<op>_bwd`` custom ops (fake implementations and autograd, so
``torch.compile(fullgraph=True)`` traces models that call them), the eager autograd
Function and, for the Triton kernels, the ``vmdm_triton::`` ``triton_op`` s of
:mod:`vmdm_kernels.triton.library`. The reference backend bypasses the kernels and is
differentiated by autograd.

The functions are re-exported here under the names of their modules (as in
:mod:`vmdm_kernels.ref`); the modules stay importable as ``vmdm_kernels.ops.<op>``
through ``from ... import``.
"""

from .motion_features import MOTION_FEATURES, FeatureSkeleton, motion_features
from .ray_targets import RAY_TARGETS, ray_targets
from .recover_from_ric import RECOVER_FROM_RIC, recover_from_ric
from .reproj_vel import DEPTH_MODES, REPROJ_VEL, project, reprojection_loss, reprojection_velocity_loss, velocity_loss
from .velocity3d import VELOCITY3D, velocity_loss_3d

__all__ = [
    "reprojection_velocity_loss",
    "reprojection_loss",
    "velocity_loss",
    "velocity_loss_3d",
    "ray_targets",
    "motion_features",
    "recover_from_ric",
    "FeatureSkeleton",
    "project",
    "DEPTH_MODES",
]

# Every op's declaration, in the order of csrc/bindings.cpp.
FUSED_OPS = (REPROJ_VEL, VELOCITY3D, RAY_TARGETS, MOTION_FEATURES, RECOVER_FROM_RIC)
