"""HumanML3D motion features from joint positions (``motion_features``), public function and
kernel registration.

Kernels: ``csrc/motion_features/`` (C++ and CUDA, forward only); reference:
:mod:`vmdm_kernels.ref.motion_features` (differentiable). The op has no backward kernel:
when an input requires grad the reference runs, and there is no Triton encoder.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import ref
from .._validate import check_joints, check_tensor
from ..dispatch import backends
from ._common import backend_name, contig
from ._registry import FusedOp

__all__ = ["FeatureSkeleton", "MOTION_FEATURES", "motion_features"]

FeatureSkeleton = ref.FeatureSkeleton


class MotionFeatures(FusedOp):
    """Forward only: no ``bwd_schema``."""

    name = "motion_features"
    fwd_schema = ("(Tensor joints, Tensor lengths, int[] bone_child, int[] bone_parent, int[] bone_frame, "
                  "float[] rest, int[] facing, int[] feet, float feet_threshold, float facing_sigma, Tensor? mean, "
                  "Tensor? std) -> Tensor")

    @staticmethod
    def fake_fwd(joints, lengths, bone_child, bone_parent, bone_frame, rest, facing, feet, feet_threshold,
                 facing_sigma, mean, std):
        B, T, J, _ = joints.shape
        return joints.new_empty((B, T - 1, 12 * J - 5 + len(feet)))


MOTION_FEATURES = MotionFeatures()


def _features_backend(device: torch.device, backend: str | None, needs_grad: bool) -> str:
    """The compiled encoders are forward-only: gradients go through the reference. There is
    no Triton encoder; under the ``triton`` backend the CUDA encoder runs when it is built."""
    if needs_grad:
        if backend not in (None, "auto", "reference"):
            raise ValueError(f"motion_features: backend {backend!r} is forward-only and an input requires grad; "
                             "use backend='reference' (differentiable) or run under torch.no_grad()")
        return "reference"
    return _no_triton_kernel(backend_name(device.type, backend))


def _no_triton_kernel(name: str) -> str:
    """For the ops with C++/CUDA kernels only: under ``triton`` run the CUDA kernel when the
    extension has one, else the reference (documented in docs/kernels.md)."""
    if name == "triton":
        return "cuda" if backends()["cuda"].available else "reference"
    return name


def motion_features(joints: Tensor, skeleton: FeatureSkeleton, lengths: Tensor | None = None, *,
                    feet_threshold: float = 0.002, mean: Tensor | None = None, std: Tensor | None = None,
                    facing_sigma: float = ref.motion_features.HUMANML3D_FACING_SIGMA,
                    backend: str | None = None) -> Tensor:
    """HumanML3D features ``[B, T-1, D]`` of joint positions ``[B, T, J, 3]`` (metres, y up),
    computed as HumanML3D's ``process_file`` computes them.

    One fused pass per clip batch: canonical frame, root rotation (the facing smoothed over
    frames with a Gaussian of ``facing_sigma`` frames, HumanML3D's 20; 0 for none), root
    velocities, local joint positions, per-bone 6D rotations (HumanML3D's chain IK), joint
    velocities and foot contacts (see :mod:`vmdm_kernels.ref.motion_features` for the
    layout). Row ``t`` depends on frames up to ``4 * facing_sigma`` away through the
    smoothing: encoding a window of a clip differs from cutting the clip's features near
    the window's edges. ``lengths [B]`` (integer,
    each in ``[2, T]``; default ``T``) marks valid frames: rows at or past ``lengths[b] - 1``
    are zero. With ``mean``/``std`` ``[D]`` the result is ``(f - mean) / std``.

    The compiled backends are forward-only (targets, data preparation); when an input
    requires grad the differentiable reference runs. Half and bfloat16 inputs are computed in
    float32.
    """
    op = "motion_features"
    if not isinstance(skeleton, ref.FeatureSkeleton):
        raise TypeError(f"{op}: skeleton: expected a vmdm_kernels.FeatureSkeleton, got {type(skeleton).__name__}")
    B, T, J = check_joints(op, joints)
    if J != skeleton.num_joints:
        raise ValueError(f"{op}: joints: expected {skeleton.num_joints} joints (the skeleton's), got shape "
                         f"{list(joints.shape)}")
    if T < 2:
        raise ValueError(f"{op}: joints: expected at least 2 frames, got shape {list(joints.shape)}")
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=joints.device)
    else:
        if not isinstance(lengths, Tensor) or lengths.shape != (B,) or lengths.dtype.is_floating_point \
                or lengths.dtype == torch.bool:
            got = f"{lengths.dtype} {list(lengths.shape)}" if isinstance(lengths, Tensor) else type(lengths).__name__
            raise ValueError(f"{op}: lengths: expected an integer tensor of shape [{B}], got {got}")
        # Only checked where it costs no device synchronisation (and not inside a traced
        # graph, where it would be data-dependent); the kernels clamp to [2, T].
        checkable = lengths.device.type == "cpu" and not torch.compiler.is_compiling()
        if checkable and bool(((lengths < 2) | (lengths > T)).any()):
            raise ValueError(f"{op}: lengths: each must be in [2, {T}], got {lengths.tolist()}")
        lengths = lengths.to(joints.device)
    if (mean is None) != (std is None):
        raise ValueError(f"{op}: mean and std: give both or neither")
    if not isinstance(facing_sigma, (int, float)) or not 0 <= float(facing_sigma) <= 1000:
        raise ValueError(f"{op}: facing_sigma: expected a number of frames in [0, 1000], got {facing_sigma!r}")
    D = skeleton.feature_dim
    if mean is not None:
        check_tensor(op, "mean", mean, (("D", D),))
        check_tensor(op, "std", std, (("D", D),))
        mean, std = mean.to(joints.device, joints.dtype), std.to(joints.device, joints.dtype)
    tensors = (joints, mean, std)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    name = _features_backend(joints.device, backend, needs_grad)
    if name == "reference":
        return ref.motion_features.motion_features(joints, lengths.clamp(2, T), skeleton, feet_threshold, mean, std,
                                                   float(facing_sigma))
    child, parent, frame, rest, facing, feet = skeleton.kernel_tables
    return MOTION_FEATURES(name, joints.contiguous(), lengths.long(), child, parent, frame, rest, facing, feet,
                           float(feet_threshold), float(facing_sigma), contig(mean), contig(std))
