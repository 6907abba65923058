"""Public ops: validation, backend dispatch, autograd and torch.library registration.

Each fused op is one forward and one backward custom op (``vmdm::<op>_fwd``,
``vmdm::<op>_bwd``) with a fake (meta) implementation and an autograd formula,
so ``torch.compile(fullgraph=True)`` can trace models that call them. The
reference backend bypasses the custom ops and is differentiated by autograd.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import ref
from ._validate import check_camera_inputs, check_joints, check_options, check_reduction, check_tensor, check_weights
from .dispatch import backends, choose_backend, kernel_module

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

DEPTH_MODES = ref.DEPTH_MODES
_DEPTH_MODE_ID = {name: i for i, name in enumerate(DEPTH_MODES)}
project = ref.project
FeatureSkeleton = ref.FeatureSkeleton


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _empty(like: Tensor) -> Tensor:
    return like.new_empty((0,))


# --------------------------------------------------------------------------- reprojection + velocity


@torch.library.custom_op("vmdm::reproj_vel_fwd", mutates_args=())
def _reproj_vel_fwd(
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
    backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    pos, vel, stats = kernel_module(backend).reproj_vel_fwd(
        joints, keypoints, camera, weights, intrinsics, depth_mode, depth_power, z_min, with_pos, with_vel
    )
    return pos, vel, stats


@_reproj_vel_fwd.register_fake
def _(joints, keypoints, camera, weights, intrinsics, depth_mode, depth_power, z_min, with_pos, with_vel, backend):
    B = joints.shape[0]
    return joints.new_empty((B,)), joints.new_empty((B,)), joints.new_empty((B, 3), dtype=_acc_dtype(joints.dtype))


@torch.library.custom_op("vmdm::reproj_vel_bwd", mutates_args=())
def _reproj_vel_bwd(
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
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    grads = kernel_module(backend).reproj_vel_bwd(
        grad_pos, grad_vel, joints, keypoints, camera, weights, intrinsics, stats, depth_mode, depth_power, z_min,
        with_pos, with_vel, need_keypoints, need_camera, need_intrinsics,
    )
    return tuple(grads)


@_reproj_vel_bwd.register_fake
def _(grad_pos, grad_vel, joints, keypoints, camera, weights, intrinsics, stats, depth_mode, depth_power, z_min,
      with_pos, with_vel, need_keypoints, need_camera, need_intrinsics, backend):
    return (
        torch.empty_like(joints),
        torch.empty_like(keypoints) if need_keypoints else _empty(joints),
        torch.empty_like(camera) if need_camera else _empty(joints),
        torch.empty_like(intrinsics) if need_intrinsics else _empty(joints),
    )


def _reproj_vel_setup(ctx, inputs, output):
    joints, keypoints, camera, weights, intrinsics, *opts = inputs
    ctx.save_for_backward(joints, keypoints, camera, weights, intrinsics, output[2])
    ctx.opts = opts
    ctx.mark_non_differentiable(output[2])


def _reproj_vel_grads(bwd, ctx, grad_pos, grad_vel):
    """Gradients for (joints, keypoints, camera, weights, intrinsics) from a backward kernel ``bwd``."""
    joints, keypoints, camera, weights, intrinsics, stats = ctx.saved_tensors
    depth_mode, depth_power, z_min, with_pos, with_vel = ctx.opts[:5]
    need = ctx.needs_input_grad
    if grad_pos is None:
        grad_pos = stats.new_zeros(joints.shape[0])
    if grad_vel is None:
        grad_vel = stats.new_zeros(joints.shape[0])
    need_intr = bool(need[4]) and intrinsics is not None
    gj, gk, gc, gi = bwd(
        grad_pos, grad_vel, joints, keypoints, camera, weights, intrinsics, stats, depth_mode, depth_power, z_min,
        with_pos, with_vel, bool(need[1]), bool(need[2]), need_intr,
    )
    # weights are constants (detector confidences, masks): no gradient.
    return gj if need[0] else None, gk if need[1] else None, gc if need[2] else None, None, \
        gi if need_intr else None


def _reproj_vel_backward(ctx, grad_pos, grad_vel, _grad_stats):
    backend = ctx.opts[5]
    grads = _reproj_vel_grads(lambda *a: _reproj_vel_bwd(*a, backend), ctx, grad_pos, grad_vel)
    return (*grads, None, None, None, None, None, None)


_reproj_vel_fwd.register_autograd(_reproj_vel_backward, setup_context=_reproj_vel_setup)


# --------------------------------------------------------------------------- 3D velocity


@torch.library.custom_op("vmdm::velocity3d_fwd", mutates_args=())
def _velocity3d_fwd(joints: Tensor, target: Tensor, weights: Tensor, backend: str) -> Tensor:
    return kernel_module(backend).velocity3d_fwd(joints, target, weights)


@_velocity3d_fwd.register_fake
def _(joints, target, weights, backend):
    return joints.new_empty((joints.shape[0],))


@torch.library.custom_op("vmdm::velocity3d_bwd", mutates_args=())
def _velocity3d_bwd(
    grad: Tensor, joints: Tensor, target: Tensor, weights: Tensor, need_target: bool, backend: str
) -> tuple[Tensor, Tensor]:
    gj, gt = kernel_module(backend).velocity3d_bwd(grad, joints, target, weights, need_target)
    return gj, gt


@_velocity3d_bwd.register_fake
def _(grad, joints, target, weights, need_target, backend):
    return torch.empty_like(joints), torch.empty_like(target) if need_target else _empty(joints)


def _velocity3d_setup(ctx, inputs, output):
    joints, target, weights, backend = inputs
    ctx.save_for_backward(joints, target, weights)
    ctx.backend = backend


def _velocity3d_grads(bwd, ctx, grad):
    joints, target, weights = ctx.saved_tensors
    need = ctx.needs_input_grad
    gj, gt = bwd(grad, joints, target, weights, bool(need[1]))
    return gj if need[0] else None, gt if need[1] else None, None


def _velocity3d_backward(ctx, grad):
    return (*_velocity3d_grads(lambda *a: _velocity3d_bwd(*a, ctx.backend), ctx, grad), None)


_velocity3d_fwd.register_autograd(_velocity3d_backward, setup_context=_velocity3d_setup)


# --------------------------------------------------------------------------- ray targets


@torch.library.custom_op("vmdm::ray_targets_fwd", mutates_args=())
def _ray_targets_fwd(
    joints: Tensor, keypoints: Tensor, camera: Tensor, intrinsics: Optional[Tensor], backend: str
) -> Tensor:
    return kernel_module(backend).ray_targets_fwd(joints, keypoints, camera, intrinsics)


@_ray_targets_fwd.register_fake
def _(joints, keypoints, camera, intrinsics, backend):
    return torch.empty_like(joints)


@torch.library.custom_op("vmdm::ray_targets_bwd", mutates_args=())
def _ray_targets_bwd(
    grad: Tensor,
    joints: Tensor,
    keypoints: Tensor,
    camera: Tensor,
    intrinsics: Optional[Tensor],
    need_keypoints: bool,
    need_camera: bool,
    need_intrinsics: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    grads = kernel_module(backend).ray_targets_bwd(
        grad, joints, keypoints, camera, intrinsics, need_keypoints, need_camera, need_intrinsics
    )
    return tuple(grads)


@_ray_targets_bwd.register_fake
def _(grad, joints, keypoints, camera, intrinsics, need_keypoints, need_camera, need_intrinsics, backend):
    return (
        torch.empty_like(joints),
        torch.empty_like(keypoints) if need_keypoints else _empty(joints),
        torch.empty_like(camera) if need_camera else _empty(joints),
        torch.empty_like(intrinsics) if need_intrinsics else _empty(joints),
    )


def _ray_targets_setup(ctx, inputs, output):
    joints, keypoints, camera, intrinsics, backend = inputs
    ctx.save_for_backward(joints, keypoints, camera, intrinsics)
    ctx.backend = backend


def _ray_targets_grads(bwd, ctx, grad):
    joints, keypoints, camera, intrinsics = ctx.saved_tensors
    need = ctx.needs_input_grad
    need_intr = bool(need[3]) and intrinsics is not None
    gj, gk, gc, gi = bwd(grad.contiguous(), joints, keypoints, camera, intrinsics, bool(need[1]), bool(need[2]),
                         need_intr)
    return gj if need[0] else None, gk if need[1] else None, gc if need[2] else None, gi if need_intr else None


def _ray_targets_backward(ctx, grad):
    return (*_ray_targets_grads(lambda *a: _ray_targets_bwd(*a, ctx.backend), ctx, grad), None)


_ray_targets_fwd.register_autograd(_ray_targets_backward, setup_context=_ray_targets_setup)


# --------------------------------------------------------------------------- eager fast path
#
# Outside torch.compile the ops run as plain autograd Functions that call the backend's
# kernels directly: the custom-op machinery costs tens of microseconds per call, which is
# more than the kernels themselves take on a GPU at training sizes.


class _ReprojVelFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, joints, keypoints, camera, weights, intrinsics, depth_mode, depth_power, z_min, with_pos,
                with_vel, backend):
        kern = kernel_module(backend)
        pos, vel, stats = kern.reproj_vel_fwd(joints, keypoints, camera, weights, intrinsics, depth_mode,
                                              depth_power, z_min, with_pos, with_vel)
        ctx.save_for_backward(joints, keypoints, camera, weights, intrinsics, stats)
        ctx.opts = (depth_mode, depth_power, z_min, with_pos, with_vel)
        ctx.kern = kern
        return pos, vel

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pos, grad_vel):
        grads = _reproj_vel_grads(ctx.kern.reproj_vel_bwd, ctx, grad_pos, grad_vel)
        return (*grads, None, None, None, None, None, None)


class _Velocity3dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, joints, target, weights, backend):
        ctx.kern = kernel_module(backend)
        ctx.save_for_backward(joints, target, weights)
        return ctx.kern.velocity3d_fwd(joints, target, weights)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return (*_velocity3d_grads(ctx.kern.velocity3d_bwd, ctx, grad), None)


class _RayTargetsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, joints, keypoints, camera, intrinsics, backend):
        ctx.kern = kernel_module(backend)
        ctx.save_for_backward(joints, keypoints, camera, intrinsics)
        return ctx.kern.ray_targets_fwd(joints, keypoints, camera, intrinsics)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return (*_ray_targets_grads(ctx.kern.ray_targets_bwd, ctx, grad), None)


# --------------------------------------------------------------------------- Triton for Inductor


def _register_triton_library() -> bool:
    """On CUDA machines, also expose the Triton kernels as ``triton_op`` s (``torch.ops.vmdm_triton``)
    so that ``torch.compile`` sees the kernels themselves instead of an opaque custom op."""
    if not torch.cuda.is_available():
        return False
    try:
        from .triton.library import register
    except ImportError:
        return False
    register()
    return True


_TRITON_LIBRARY = _register_triton_library()


def _kernel_ops(name: str, device: torch.device):
    """Dispatcher namespace whose ``<op>_fwd`` carries autograd for this backend."""
    if name == "triton" and device.type == "cuda" and _TRITON_LIBRARY:
        return torch.ops.vmdm_triton
    return None


# --------------------------------------------------------------------------- public API


@torch.compiler.assume_constant_result
def _backend_name(device_type: str, requested: Optional[str]) -> str:
    # Decided once per trace: the choice depends only on the device type,
    # the request and the environment, never on tensor values.
    return choose_backend(torch.device(device_type), requested)


def _compute_dtype(*tensors):
    """Under autocast the ops compute in float32, as torch does for losses."""
    low = (torch.float16, torch.bfloat16)
    return [t.float() if t is not None and t.dtype in low else t for t in tensors]


def _contig(t):
    return None if t is None else t.contiguous()


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _reproj_vel(op, joints, keypoints, camera, weights, intrinsics, depth_weight, depth_power, z_min, reduction,
                backend, with_pos, with_vel):
    check_joints(op, joints)
    check_options(op, depth_weight, depth_power, z_min, reduction)
    if torch.is_autocast_enabled(joints.device.type):
        joints, keypoints, camera, weights, intrinsics = _compute_dtype(joints, keypoints, camera, weights, intrinsics)
    check_camera_inputs(op, joints, keypoints, camera, intrinsics)
    weights = check_weights(op, joints, weights)
    power = float(ref.default_depth_power(depth_weight) if depth_power is None else depth_power)
    name = _backend_name(joints.device.type, backend)
    if name == "reference":
        pos, vel = ref.reproj_vel_loss(
            joints, keypoints, camera, weights, intrinsics, depth_weight=depth_weight, depth_power=power, z_min=z_min
        )
    else:
        args = (joints.contiguous(), keypoints.contiguous(), camera.contiguous(), weights.contiguous(),
                _contig(intrinsics), _DEPTH_MODE_ID[depth_weight], power, float(z_min), with_pos, with_vel)
        if not torch.compiler.is_compiling():
            pos, vel = _ReprojVelFunction.apply(*args, name)
        else:
            lib = _kernel_ops(name, joints.device)
            pos, vel, _ = lib.reproj_vel_fwd(*args) if lib is not None else _reproj_vel_fwd(*args, name)
    return _reduce(pos, reduction), _reduce(vel, reduction)


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
        joints, target, weights = _compute_dtype(joints, target, weights)
    check_tensor(op, "target", target, tuple(("BTJ"[i], s) for i, s in enumerate(joints.shape[:3])) + (3,), joints)
    weights = check_weights(op, joints, weights)
    name = _backend_name(joints.device.type, backend)
    if name == "reference":
        per_sample = ref.velocity3d_loss(joints, target, weights)
    else:
        args = (joints.contiguous(), target.contiguous(), weights.contiguous())
        if not torch.compiler.is_compiling():
            per_sample = _Velocity3dFunction.apply(*args, name)
        else:
            lib = _kernel_ops(name, joints.device)
            per_sample = lib.velocity3d_fwd(*args) if lib is not None else _velocity3d_fwd(*args, name)
    return _reduce(per_sample, reduction)


def ray_targets(joints: Tensor, keypoints: Tensor, camera: Tensor, intrinsics: Tensor | None = None, *,
                backend: str | None = None) -> Tensor:
    """Closest points ``[B, T, J, 3]`` on the camera rays through the keypoints.

    ``P* = C + ((X - C) . r / |r|^2) r`` with ``r = R^T ((u - cx) / fx, (v - cy) / fy, 1)`` and
    ``C = -R^T t``. Differentiable w.r.t. joints, keypoints, camera and intrinsics.
    """
    op = "ray_targets"
    check_joints(op, joints)
    if torch.is_autocast_enabled(joints.device.type):
        joints, keypoints, camera, intrinsics = _compute_dtype(joints, keypoints, camera, intrinsics)
    check_camera_inputs(op, joints, keypoints, camera, intrinsics)
    name = _backend_name(joints.device.type, backend)
    if name == "reference":
        return ref.ray_targets(joints, keypoints, camera, intrinsics)
    args = (joints.contiguous(), keypoints.contiguous(), camera.contiguous(), _contig(intrinsics))
    if not torch.compiler.is_compiling():
        return _RayTargetsFunction.apply(*args, name)
    lib = _kernel_ops(name, joints.device)
    return lib.ray_targets_fwd(*args) if lib is not None else _ray_targets_fwd(*args, name)


# --------------------------------------------------------------------------- motion features


@torch.library.custom_op("vmdm::motion_features_fwd", mutates_args=())
def _motion_features_fwd(
    joints: Tensor, lengths: Tensor, bone_child: list[int], bone_parent: list[int], bone_frame: list[int],
    rest: list[float], facing: list[int], feet: list[int], feet_threshold: float, facing_sigma: float,
    mean: Optional[Tensor], std: Optional[Tensor], backend: str,
) -> Tensor:
    return kernel_module(backend).motion_features_fwd(joints, lengths, bone_child, bone_parent, bone_frame, rest,
                                                      facing, feet, feet_threshold, facing_sigma, mean, std)


@_motion_features_fwd.register_fake
def _(joints, lengths, bone_child, bone_parent, bone_frame, rest, facing, feet, feet_threshold, facing_sigma, mean,
      std, backend):
    B, T, J, _ = joints.shape
    return joints.new_empty((B, T - 1, 12 * J - 5 + len(feet)))


def _features_backend(device: torch.device, backend: str | None, needs_grad: bool) -> str:
    """The compiled encoders are forward-only: gradients go through the reference. There is
    no Triton encoder; under the ``triton`` backend the CUDA encoder runs when it is built."""
    if needs_grad:
        if backend not in (None, "auto", "reference"):
            raise ValueError(f"motion_features: backend {backend!r} is forward-only and an input requires grad; "
                             "use backend='reference' (differentiable) or run under torch.no_grad()")
        return "reference"
    return _no_triton_kernel(_backend_name(device.type, backend))


def _no_triton_kernel(name: str) -> str:
    """For the ops with C++/CUDA kernels only: under ``triton`` run the CUDA kernel when the
    extension has one, else the reference (documented in docs/kernels.md)."""
    if name == "triton":
        return "cuda" if backends()["cuda"].available else "reference"
    return name


def motion_features(joints: Tensor, skeleton: ref.FeatureSkeleton, lengths: Tensor | None = None, *,
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
    args = (joints.contiguous(), lengths.long(), child, parent, frame, rest, facing, feet, float(feet_threshold),
            float(facing_sigma), _contig(mean), _contig(std))
    if torch.compiler.is_compiling():
        return _motion_features_fwd(*args, name)
    return kernel_module(name).motion_features_fwd(*args)


# --------------------------------------------------------------------------- recover_from_ric


@torch.library.custom_op("vmdm::recover_from_ric_fwd", mutates_args=())
def _recover_from_ric_fwd(features: Tensor, num_joints: int, mean: Optional[Tensor], std: Optional[Tensor],
                          backend: str) -> Tensor:
    return kernel_module(backend).recover_from_ric_fwd(features, num_joints, mean, std)


@_recover_from_ric_fwd.register_fake
def _(features, num_joints, mean, std, backend):
    B, T, _ = features.shape
    return features.new_empty((B, T, num_joints, 3))


@torch.library.custom_op("vmdm::recover_from_ric_bwd", mutates_args=())
def _recover_from_ric_bwd(grad: Tensor, features: Tensor, num_joints: int, mean: Optional[Tensor],
                          std: Optional[Tensor], backend: str) -> Tensor:
    return kernel_module(backend).recover_from_ric_bwd(grad, features, num_joints, mean, std)


@_recover_from_ric_bwd.register_fake
def _(grad, features, num_joints, mean, std, backend):
    return torch.empty_like(features)


def _recover_setup(ctx, inputs, output):
    features, num_joints, mean, std, backend = inputs
    ctx.save_for_backward(features, mean, std)
    ctx.num_joints, ctx.backend = num_joints, backend


def _recover_grads(bwd, ctx, grad):
    features, mean, std = ctx.saved_tensors
    return bwd(grad.contiguous(), features, ctx.num_joints, mean, std), None, None, None, None


def _recover_backward(ctx, grad):
    return _recover_grads(lambda *a: _recover_from_ric_bwd(*a, ctx.backend), ctx, grad)


_recover_from_ric_fwd.register_autograd(_recover_backward, setup_context=_recover_setup)


class _RecoverFromRicFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, num_joints, mean, std, backend):
        ctx.kern = kernel_module(backend)
        ctx.save_for_backward(features, mean, std)
        ctx.num_joints = num_joints
        return ctx.kern.recover_from_ric_fwd(features, num_joints, mean, std)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return _recover_grads(ctx.kern.recover_from_ric_bwd, ctx, grad)


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
    name = "reference" if stats_grad else _backend_name(features.device.type, backend)
    if name == "reference":
        return ref.recover_from_ric.recover_from_ric(features, num_joints, mean, std)
    lead, (T, _) = features.shape[:-2], features.shape[-2:]
    args = (features.reshape(-1, T, D).contiguous(), num_joints, _contig(mean), _contig(std))
    if torch.compiler.is_compiling():
        out = _recover_from_ric_fwd(*args, name)
    else:
        out = _RecoverFromRicFunction.apply(*args, name)
    return out.reshape(*lead, T, num_joints, 3)
