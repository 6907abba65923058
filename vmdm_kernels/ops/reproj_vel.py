"""Depth-weighted 2D reprojection and 2D velocity losses (``reproj_vel``), public functions
and kernel registration.

Kernels: ``csrc/reproj_vel/``, :mod:`vmdm_kernels.triton.reproj_vel`; reference:
:mod:`vmdm_kernels.ref.reproj_vel`. One fused pass gives both terms; the forward also
returns per-sample statistics ``[B, 3]`` (depth weight, weight sum, pair weight sum) in the
accumulation dtype, which the backward reuses instead of recomputing them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import ref
from .._validate import check_camera_inputs, check_joints, check_options, check_weights
from ._common import backend_name, compute_dtype, contig, reduce
from ._registry import FusedOp, acc_dtype, fake_grads

__all__ = ["DEPTH_MODES", "REPROJ_VEL", "project", "reprojection_loss", "reprojection_velocity_loss", "velocity_loss"]

DEPTH_MODES = ref.DEPTH_MODES
_DEPTH_MODE_ID = {name: i for i, name in enumerate(DEPTH_MODES)}
project = ref.project


class ReprojVel(FusedOp):
    name = "reproj_vel"
    fwd_schema = ("(Tensor joints, Tensor keypoints, Tensor camera, Tensor weights, Tensor? intrinsics, "
                  "int depth_mode, float depth_power, float z_min, bool with_pos, bool with_vel) "
                  "-> (Tensor, Tensor, Tensor)")
    bwd_schema = ("(Tensor grad_pos, Tensor grad_vel, Tensor joints, Tensor keypoints, Tensor camera, "
                  "Tensor weights, Tensor? intrinsics, Tensor stats, int depth_mode, float depth_power, float z_min, "
                  "bool with_pos, bool with_vel, bool need_keypoints, bool need_camera, bool need_intrinsics) "
                  "-> (Tensor, Tensor, Tensor, Tensor)")
    non_differentiable = (2,)  # stats
    triton_library = True

    @staticmethod
    def fake_fwd(joints, keypoints, camera, weights, intrinsics, depth_mode, depth_power, z_min, with_pos, with_vel):
        B = joints.shape[0]
        return joints.new_empty((B,)), joints.new_empty((B,)), joints.new_empty((B, 3), dtype=acc_dtype(joints.dtype))

    @staticmethod
    def fake_bwd(grad_pos, grad_vel, joints, keypoints, camera, weights, intrinsics, stats, depth_mode, depth_power,
                 z_min, with_pos, with_vel, need_keypoints, need_camera, need_intrinsics):
        return fake_grads(joints, (keypoints, need_keypoints), (camera, need_camera), (intrinsics, need_intrinsics))

    @staticmethod
    def save(inputs, outputs):
        joints, keypoints, camera, weights, intrinsics, *opts = inputs
        return (joints, keypoints, camera, weights, intrinsics, outputs[2]), tuple(opts)

    @staticmethod
    def grads(bwd, saved, opts, need, grad_pos, grad_vel, _grad_stats=None):
        """Gradients for (joints, keypoints, camera, weights, intrinsics)."""
        joints, keypoints, camera, weights, intrinsics, stats = saved
        depth_mode, depth_power, z_min, with_pos, with_vel = opts
        grad_pos = stats.new_zeros(joints.shape[0]) if grad_pos is None else grad_pos.contiguous()
        grad_vel = stats.new_zeros(joints.shape[0]) if grad_vel is None else grad_vel.contiguous()
        need_intr = bool(need[4]) and intrinsics is not None
        gj, gk, gc, gi = bwd(
            grad_pos, grad_vel, joints, keypoints, camera, weights, intrinsics, stats, depth_mode, depth_power, z_min,
            with_pos, with_vel, bool(need[1]), bool(need[2]), need_intr,
        )
        # weights are constants (detector confidences, masks): no gradient.
        return gj if need[0] else None, gk if need[1] else None, gc if need[2] else None, None, \
            gi if need_intr else None


REPROJ_VEL = ReprojVel()


def _reproj_vel(op, joints, keypoints, camera, weights, intrinsics, depth_weight, depth_power, z_min, reduction,
                backend, with_pos, with_vel):
    check_joints(op, joints)
    check_options(op, depth_weight, depth_power, z_min, reduction)
    if torch.is_autocast_enabled(joints.device.type):
        joints, keypoints, camera, weights, intrinsics = compute_dtype(joints, keypoints, camera, weights, intrinsics)
    check_camera_inputs(op, joints, keypoints, camera, intrinsics)
    weights = check_weights(op, joints, weights)
    power = float(ref.default_depth_power(depth_weight) if depth_power is None else depth_power)
    name = backend_name(joints.device.type, backend)
    if name == "reference":
        pos, vel = ref.reproj_vel_loss(
            joints, keypoints, camera, weights, intrinsics, depth_weight=depth_weight, depth_power=power, z_min=z_min
        )
    else:
        pos, vel, _ = REPROJ_VEL(name, joints.contiguous(), keypoints.contiguous(), camera.contiguous(),
                                 weights.contiguous(), contig(intrinsics), _DEPTH_MODE_ID[depth_weight], power,
                                 float(z_min), with_pos, with_vel)
    return reduce(pos, reduction), reduce(vel, reduction)
def reprojection_velocity_loss(
    joints: Tensor,
    keypoints: Tensor,
    camera: Tensor,
    weights: Tensor | None = None,
    intrinsics: Tensor | None = None,
    *,
    depth_weight: str = "sample",
    depth_power: float | None = None,
    z_min: float = 0.5,
    reduction: str = "mean",
    backend: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Depth-weighted 2D reprojection and 2D velocity losses from one pass over the inputs.

    Args:
        joints: ``[B, T, J, 3]`` predicted world-frame joints.
        keypoints: ``[B, T, J, 2]`` observed 2D keypoints (pixels with ``intrinsics``,
            normalised camera coordinates without).
        camera: ``[B, 3, 4]`` or ``[B, T, 3, 4]`` extrinsics ``[R|t]`` (``Xc = R X + t``).
        weights: ``[B, T, J]`` per-joint weights (validity x confidence^2; 0 = ignore).
            Treated as constants. Defaults to ones.
        intrinsics: ``[B, 4]`` ``(fx, fy, cx, cy)``, or None for f = 1, c = 0.
        depth_weight: ``"none"``, ``"sample"`` (per-clip mean depth ** p, the VideoMDM
            default) or ``"point"`` (per-point depth ** p / f ** 2).
        depth_power: ``p``; defaults to 1 for ``sample`` and 2 for ``point``.
        z_min: points with depth ``<= z_min`` (metres) are ignored and get no gradient.
        reduction: ``"none"`` (per-sample ``[B]``), ``"mean"`` or ``"sum"`` over the batch.
        backend: ``"reference"``, ``"cpp"``, ``"cuda"``, ``"triton"`` or None/``"auto"``.

    Returns:
        ``(position_loss, velocity_loss)``, each reduced as requested. Gradients flow to
        joints, keypoints, camera and intrinsics.
    """
    return _reproj_vel("reprojection_velocity_loss", joints, keypoints, camera, weights, intrinsics, depth_weight,
                       depth_power, z_min, reduction, backend, True, True)


def reprojection_loss(joints, keypoints, camera, weights=None, intrinsics=None, *, depth_weight="sample",
                      depth_power=None, z_min=0.5, reduction="mean", backend=None) -> Tensor:
    """Depth-weighted 2D reprojection loss; arguments as :func:`reprojection_velocity_loss`."""
    return _reproj_vel("reprojection_loss", joints, keypoints, camera, weights, intrinsics, depth_weight,
                       depth_power, z_min, reduction, backend, True, False)[0]


def velocity_loss(joints, keypoints, camera, weights=None, intrinsics=None, *, depth_weight="sample",
                  depth_power=None, z_min=0.5, reduction="mean", backend=None) -> Tensor:
    """Depth-weighted 2D finite-difference velocity loss; arguments as :func:`reprojection_velocity_loss`.

    A pair of consecutive frames counts with weight ``W_t * W_t+1`` and only when both
    points are in front of the near plane. With ``T = 1`` the loss is 0.
    """
    return _reproj_vel("velocity_loss", joints, keypoints, camera, weights, intrinsics, depth_weight,
                       depth_power, z_min, reduction, backend, False, True)[1]
