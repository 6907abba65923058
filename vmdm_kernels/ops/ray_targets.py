"""Closest points on the keypoints' camera rays (``ray_targets``), public function and kernel
registration.

The training loss uses them as 3D targets that agree with the 2D observations and stay
as near as possible to the current prediction. Kernels: ``csrc/ray_targets/``,
:mod:`vmdm_kernels.triton.ray_targets`; reference: :mod:`vmdm_kernels.ref.ray_targets`.
Differentiable in every tensor input; each backward kernel computes only the gradients
asked for (the C++ one has a shorter formula when only the joints need one).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import ref
from .._validate import check_camera_inputs, check_joints
from ._common import backend_name, compute_dtype, contig
from ._registry import FusedOp, fake_grads

__all__ = ["RAY_TARGETS", "ray_targets"]


class RayTargets(FusedOp):
    """One output ``[B, T, J, 3]``; nothing but the inputs is saved for the backward."""

    name = "ray_targets"
    fwd_schema = "(Tensor joints, Tensor keypoints, Tensor camera, Tensor? intrinsics) -> Tensor"
    bwd_schema = ("(Tensor grad, Tensor joints, Tensor keypoints, Tensor camera, Tensor? intrinsics, "
                  "bool need_keypoints, bool need_camera, bool need_intrinsics) -> (Tensor, Tensor, Tensor, Tensor)")
    triton_library = True

    @staticmethod
    def fake_fwd(joints, keypoints, camera, intrinsics):
        return torch.empty_like(joints)

    @staticmethod
    def fake_bwd(grad, joints, keypoints, camera, intrinsics, need_keypoints, need_camera, need_intrinsics):
        return fake_grads(joints, (keypoints, need_keypoints), (camera, need_camera), (intrinsics, need_intrinsics))

    @staticmethod
    def grads(bwd, saved, opts, need, grad):
        """Gradients for (joints, keypoints, camera, intrinsics)."""
        joints, keypoints, camera, intrinsics = saved
        need_intr = bool(need[3]) and intrinsics is not None
        gj, gk, gc, gi = bwd(grad.contiguous(), joints, keypoints, camera, intrinsics, bool(need[1]), bool(need[2]),
                             need_intr)
        return gj if need[0] else None, gk if need[1] else None, gc if need[2] else None, gi if need_intr else None


RAY_TARGETS = RayTargets()

def ray_targets(joints: Tensor, keypoints: Tensor, camera: Tensor, intrinsics: Tensor | None = None, *,
                backend: str | None = None) -> Tensor:
    """Closest points ``[B, T, J, 3]`` on the camera rays through the keypoints.

    ``P* = C + ((X - C) . r / |r|^2) r`` with ``r = R^T ((u - cx) / fx, (v - cy) / fy, 1)`` and
    ``C = -R^T t``. Differentiable w.r.t. joints, keypoints, camera and intrinsics.
    """
    op = "ray_targets"
    check_joints(op, joints)
    if torch.is_autocast_enabled(joints.device.type):
        joints, keypoints, camera, intrinsics = compute_dtype(joints, keypoints, camera, intrinsics)
    check_camera_inputs(op, joints, keypoints, camera, intrinsics)
    name = backend_name(joints.device.type, backend)
    if name == "reference":
        return ref.ray_targets(joints, keypoints, camera, intrinsics)
    return RAY_TARGETS(name, joints.contiguous(), keypoints.contiguous(), camera.contiguous(), contig(intrinsics))
