"""HumanML3D's ``recover_from_ric`` (features -> joints), public function and kernel
registration.

Kernels: ``csrc/recover_from_ric/``, :mod:`vmdm_kernels.triton.recover_from_ric` (forward and
hand-written backward); reference: :mod:`vmdm_kernels.ref.recover_from_ric`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import ref
from .._validate import check_tensor
from ._common import backend_name, contig
from ._registry import FusedOp

__all__ = ["RECOVER_FROM_RIC", "recover_from_ric"]


class RecoverFromRic(FusedOp):
    name = "recover_from_ric"
    fwd_schema = "(Tensor features, int num_joints, Tensor? mean, Tensor? std) -> Tensor"
    bwd_schema = "(Tensor grad, Tensor features, int num_joints, Tensor? mean, Tensor? std) -> Tensor"

    @staticmethod
    def fake_fwd(features, num_joints, mean, std):
        B, T, _ = features.shape
        return features.new_empty((B, T, num_joints, 3))

    @staticmethod
    def fake_bwd(grad, features, num_joints, mean, std):
        return torch.empty_like(features)

    @staticmethod
    def save(inputs, outputs):
        features, num_joints, mean, std = inputs
        return (features, mean, std), (num_joints,)

    @staticmethod
    def grads(bwd, saved, opts, need, grad):
        """Gradient for features; mean and std are constants here (the reference runs when they need one)."""
        features, mean, std = saved
        (num_joints,) = opts
        return (bwd(grad.contiguous(), features, num_joints, mean, std),)


RECOVER_FROM_RIC = RecoverFromRic()

def recover_from_ric(features: Tensor, num_joints: int, *, mean: Tensor | None = None, std: Tensor | None = None,
                     backend: str | None = None) -> Tensor:
    """HumanML3D's ``recover_from_ric``: features ``[..., T, D]`` -> joints ``[..., T, J, 3]``.

    Integrates the heading and the root's ground velocity over time and places the joints
    around the root (see :mod:`vmdm_kernels.ref.recover_from_ric`); reads the first
    ``4 + 3 (J - 1)`` channels. With ``mean``/``std`` ``[D]`` the features are denormalised
    first (``x * std + mean``), fused. Differentiable w.r.t. ``features`` with a
    hand-written backward (mean and std are constants; when they require grad the
    reference runs). Half and bfloat16 compute in float32.
    """
    op = "recover_from_ric"
    if not isinstance(features, Tensor):
        raise TypeError(f"{op}: features: expected a torch.Tensor, got {type(features).__name__}")
    if not isinstance(num_joints, int) or num_joints < 1:
        raise ValueError(f"{op}: num_joints: expected a positive int, got {num_joints!r}")
    need = 4 + 3 * (num_joints - 1)
    if features.dim() < 2 or features.shape[-1] < need or features.shape[-2] < 1:
        raise ValueError(f"{op}: features: expected shape [..., T >= 1, D >= {need}] for {num_joints} joints, got "
                         f"{list(features.shape)}")
    if not features.dtype.is_floating_point:
        raise ValueError(f"{op}: features: expected a floating-point dtype, got {features.dtype}")
    if (mean is None) != (std is None):
        raise ValueError(f"{op}: mean and std: give both or neither")
    D = features.shape[-1]
    if mean is not None:
        check_tensor(op, "mean", mean, (("D", D),))
        check_tensor(op, "std", std, (("D", D),))
        if mean.device != features.device:
            raise ValueError(f"{op}: mean: expected device {features.device} (the device of features), got "
                             f"{mean.device}")
        mean, std = mean.to(features.dtype), std.to(features.dtype)
    stats_grad = torch.is_grad_enabled() and mean is not None and (mean.requires_grad or std.requires_grad)
    name = "reference" if stats_grad else backend_name(features.device.type, backend)
    if name == "reference":
        return ref.recover_from_ric.recover_from_ric(features, num_joints, mean, std)
    lead, (T, _) = features.shape[:-2], features.shape[-2:]
    out = RECOVER_FROM_RIC(name, features.reshape(-1, T, D).contiguous(), num_joints, contig(mean), contig(std))
    return out.reshape(*lead, T, num_joints, 3)
