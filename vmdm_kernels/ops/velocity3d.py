"""3D finite-difference velocity loss (``velocity3d``, MDM's geometric velocity term), public
function and kernel registration.

Kernels: ``csrc/velocity3d/``, :mod:`vmdm_kernels.triton.velocity3d`; reference:
:mod:`vmdm_kernels.ref.velocity3d`. Per-sample losses ``[B]``; the weights are constants.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import ref
from .._validate import check_joints, check_reduction, check_tensor, check_weights
from ._common import backend_name, compute_dtype, reduce
from ._registry import FusedOp, fake_grads

__all__ = ["VELOCITY3D", "velocity_loss_3d"]


class Velocity3d(FusedOp):
    """Gradients for joints and target from one backward pass (target's only when asked)."""

    name = "velocity3d"
    fwd_schema = "(Tensor joints, Tensor target, Tensor weights) -> Tensor"
    bwd_schema = "(Tensor grad, Tensor joints, Tensor target, Tensor weights, bool need_target) -> (Tensor, Tensor)"
    triton_library = True

    @staticmethod
    def fake_fwd(joints, target, weights):
        return joints.new_empty((joints.shape[0],))

    @staticmethod
    def fake_bwd(grad, joints, target, weights, need_target):
        return fake_grads(joints, (target, need_target))

    @staticmethod
    def grads(bwd, saved, opts, need, grad):
        """Gradients for (joints, target, weights); weights are constants."""
        joints, target, weights = saved
        gj, gt = bwd(grad.contiguous(), joints, target, weights, bool(need[1]))
        return gj if need[0] else None, gt if need[1] else None, None


VELOCITY3D = Velocity3d()

def velocity_loss_3d(joints: Tensor, target: Tensor, weights: Tensor | None = None, *, reduction: str = "mean",
                     backend: str | None = None) -> Tensor:
    """3D finite-difference velocity loss (MDM's geometric velocity term).

    ``L[b] = sum(W_t W_t+1 |dX - dY|^2) / sum(W_t W_t+1)`` over frame pairs and joints,
    for ``joints``/``target`` ``[B, T, J, 3]`` and ``weights`` ``[B, T, J]`` (constants).
    Gradients flow to joints and target.
    """
    op = "velocity_loss_3d"
    check_joints(op, joints)
    check_reduction(op, reduction)
    if torch.is_autocast_enabled(joints.device.type):
        joints, target, weights = compute_dtype(joints, target, weights)
    check_tensor(op, "target", target, tuple(("BTJ"[i], s) for i, s in enumerate(joints.shape[:3])) + (3,), joints)
    weights = check_weights(op, joints, weights)
    name = backend_name(joints.device.type, backend)
    if name == "reference":
        per_sample = ref.velocity3d_loss(joints, target, weights)
    else:
        per_sample = VELOCITY3D(name, joints.contiguous(), target.contiguous(), weights.contiguous())
    return reduce(per_sample, reduction)
