"""``torch.library.triton_op`` registrations of the Triton kernels, for ``torch.compile``.

``vmdm_kernels.ops`` registers opaque ``custom_op`` s (``vmdm::<op>_fwd/_bwd``) that call
whichever backend was chosen; Inductor cannot look inside those. The ops here,
``torch.ops.vmdm_triton.<op>_fwd/_bwd``, launch the same kernels through
``torch.library.wrap_triton`` so Inductor sees the Triton kernels themselves (and
can schedule them with the surrounding graph, CUDA-graph them, and so on). The
forward ops carry the same autograd formula as ``vmdm_kernels.ops``.

Importing this module registers the ops (once). It is meant for CUDA tensors;
under the Triton interpreter the ops also run eagerly on CPU (useful for tests),
but ``torch.compile`` over them does not work there. Schemas mirror
``csrc/bindings.cpp`` so the ops are interchangeable with ``torch.ops.vmdm_C``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.library import triton_op

from . import ray_targets as _rt
from . import reproj_vel as _rv
from . import velocity3d as _v3

__all__ = ["NAMESPACE", "register"]

NAMESPACE = "vmdm_triton"
_registered = False


def register() -> None:
    """Registers ``torch.ops.vmdm_triton.*`` (idempotent)."""
    global _registered
    if _registered:
        return

    # ------------------------------------------------------------------ reprojection + velocity

    @triton_op(f"{NAMESPACE}::reproj_vel_fwd", mutates_args=())
    def reproj_vel_fwd(
        joints: Tensor,
        keypoints: Tensor,
        camera: Tensor,
        weights: Tensor,
        intrinsics: Optional[Tensor],
        depth_mode: int,
        depth_power: float,
        z_min: float,
        with_pos: bool,
        with_vel: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return _rv.reproj_vel_fwd(
            joints, keypoints, camera, weights, intrinsics, depth_mode, depth_power, z_min, with_pos, with_vel,
            _wrap=True,
        )

    @triton_op(f"{NAMESPACE}::reproj_vel_bwd", mutates_args=())
    def reproj_vel_bwd(
        grad_pos: Tensor,
        grad_vel: Tensor,
        joints: Tensor,
        keypoints: Tensor,
        camera: Tensor,
        weights: Tensor,
        intrinsics: Optional[Tensor],
        stats: Tensor,
        depth_mode: int,
        depth_power: float,
        z_min: float,
        with_pos: bool,
        with_vel: bool,
        need_keypoints: bool,
        need_camera: bool,
        need_intrinsics: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return _rv.reproj_vel_bwd(
            grad_pos, grad_vel, joints, keypoints, camera, weights, intrinsics, stats, depth_mode, depth_power,
            z_min, with_pos, with_vel, need_keypoints, need_camera, need_intrinsics, _wrap=True,
        )

    def _rv_setup(ctx, inputs, output):
        joints, keypoints, camera, weights, intrinsics, *opts = inputs
        ctx.save_for_backward(joints, keypoints, camera, weights, intrinsics, output[2])
        ctx.opts = opts
        ctx.mark_non_differentiable(output[2])

    def _rv_backward(ctx, grad_pos, grad_vel, _grad_stats):
        joints, keypoints, camera, weights, intrinsics, stats = ctx.saved_tensors
        depth_mode, depth_power, z_min, with_pos, with_vel = ctx.opts
        need = ctx.needs_input_grad
        if grad_pos is None:
            grad_pos = stats.new_zeros(joints.shape[0])
        if grad_vel is None:
            grad_vel = stats.new_zeros(joints.shape[0])
        need_intr = bool(need[4]) and intrinsics is not None
        gj, gk, gc, gi = torch.ops.vmdm_triton.reproj_vel_bwd(
            grad_pos.contiguous(), grad_vel.contiguous(), joints, keypoints, camera, weights, intrinsics, stats,
            depth_mode, depth_power, z_min, with_pos, with_vel, bool(need[1]), bool(need[2]), need_intr,
        )
        return (
            gj if need[0] else None,
            gk if need[1] else None,
            gc if need[2] else None,
            None,  # weights are constants
            gi if need_intr else None,
            None, None, None, None, None,
        )

    reproj_vel_fwd.register_autograd(_rv_backward, setup_context=_rv_setup)

    # ------------------------------------------------------------------ 3D velocity

    @triton_op(f"{NAMESPACE}::velocity3d_fwd", mutates_args=())
    def velocity3d_fwd(joints: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        return _v3.velocity3d_fwd(joints, target, weights, _wrap=True)

    @triton_op(f"{NAMESPACE}::velocity3d_bwd", mutates_args=())
    def velocity3d_bwd(
        grad: Tensor, joints: Tensor, target: Tensor, weights: Tensor, need_target: bool
    ) -> tuple[Tensor, Tensor]:
        return _v3.velocity3d_bwd(grad, joints, target, weights, need_target, _wrap=True)

    def _v3_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _v3_backward(ctx, grad):
        joints, target, weights = ctx.saved_tensors
        need = ctx.needs_input_grad
        gj, gt = torch.ops.vmdm_triton.velocity3d_bwd(grad.contiguous(), joints, target, weights, bool(need[1]))
        return gj if need[0] else None, gt if need[1] else None, None

    velocity3d_fwd.register_autograd(_v3_backward, setup_context=_v3_setup)

    # ------------------------------------------------------------------ ray targets

    @triton_op(f"{NAMESPACE}::ray_targets_fwd", mutates_args=())
    def ray_targets_fwd(joints: Tensor, keypoints: Tensor, camera: Tensor, intrinsics: Optional[Tensor]) -> Tensor:
        return _rt.ray_targets_fwd(joints, keypoints, camera, intrinsics, _wrap=True)

    @triton_op(f"{NAMESPACE}::ray_targets_bwd", mutates_args=())
    def ray_targets_bwd(
        grad: Tensor,
        joints: Tensor,
        keypoints: Tensor,
        camera: Tensor,
        intrinsics: Optional[Tensor],
        need_keypoints: bool,
        need_camera: bool,
        need_intrinsics: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return _rt.ray_targets_bwd(
            grad, joints, keypoints, camera, intrinsics, need_keypoints, need_camera, need_intrinsics, _wrap=True
        )

    def _rt_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _rt_backward(ctx, grad):
        joints, keypoints, camera, intrinsics = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_intr = bool(need[3]) and intrinsics is not None
        gj, gk, gc, gi = torch.ops.vmdm_triton.ray_targets_bwd(
            grad.contiguous(), joints, keypoints, camera, intrinsics, bool(need[1]), bool(need[2]), need_intr
        )
        return gj if need[0] else None, gk if need[1] else None, gc if need[2] else None, gi if need_intr else None

    ray_targets_fwd.register_autograd(_rt_backward, setup_context=_rt_setup)

    _registered = True


register()
