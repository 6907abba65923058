"""Argument checks shared by every public op, whatever the backend.

Messages follow one pattern: ``<op>: <argument>: expected <what>, got <what>``.
"""

from __future__ import annotations

import math

import torch

from .ref.reproj_vel import DEPTH_MODES

REDUCTIONS = ("none", "mean", "sum")


def _fail(op: str, name: str, expected: str, got) -> None:
    raise ValueError(f"{op}: {name}: expected {expected}, got {got}")


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _dim_str(s) -> str:
    if isinstance(s, tuple):
        return s[0] if s[1] is None else f"{s[0]}={s[1]}"
    return "*" if s is None else str(s)


def check_tensor(op: str, name: str, t, shape: tuple, like: torch.Tensor | None = None) -> None:
    """``shape`` entries: an int, or a ``(label, size)`` pair used in the message, or None for any."""
    if not isinstance(t, torch.Tensor):
        _fail(op, name, "a torch.Tensor", type(t).__name__)
    # This runs on every call of every op: compare whole shapes at once, explain only on failure.
    sizes = tuple(s[1] if isinstance(s, tuple) else s for s in shape)
    got = t.shape
    if len(got) != len(sizes):
        ok = False
    elif None in sizes:
        ok = all(n is None or g == n for g, n in zip(got, sizes))
    else:
        ok = got == sizes
    if not ok:
        want = ", ".join(_dim_str(s) for s in shape)
        _fail(op, name, f"shape [{want}]", _shape(t))
    if like is None:
        if not t.dtype.is_floating_point:
            _fail(op, name, "a floating-point dtype (float16, bfloat16, float32, float64)", t.dtype)
        return
    if t.dtype is like.dtype and t.device == like.device:
        return
    if t.dtype != like.dtype:
        _fail(op, name, f"dtype {like.dtype} (the dtype of joints)", t.dtype)
    if t.device != like.device:
        _fail(op, name, f"device {like.device} (the device of joints)", t.device)


def check_joints(op: str, joints, name: str = "joints") -> tuple[int, int, int]:
    check_tensor(op, name, joints, (("B", None), ("T", None), ("J", None), 3))
    B, T, J, _ = joints.shape
    return B, T, J


def check_camera_inputs(op: str, joints, keypoints, camera, intrinsics) -> None:
    B, T, J = joints.shape[:3]
    check_tensor(op, "keypoints", keypoints, (("B", B), ("T", T), ("J", J), 2), joints)
    if not isinstance(camera, torch.Tensor) or camera.dim() not in (3, 4):
        got = _shape(camera) if isinstance(camera, torch.Tensor) else type(camera).__name__
        _fail(op, "camera", f"shape [B={B}, 3, 4] or [B={B}, T={T}, 3, 4]", got)
    if camera.dim() == 3:
        check_tensor(op, "camera", camera, (("B", B), 3, 4), joints)
    else:
        check_tensor(op, "camera", camera, (("B", B), ("T", T), 3, 4), joints)
    if intrinsics is not None:
        check_tensor(op, "intrinsics", intrinsics, (("B", B), 4), joints)


def check_weights(op: str, joints, weights) -> torch.Tensor:
    B, T, J = joints.shape[:3]
    if weights is None:
        return torch.ones((B, T, J), dtype=joints.dtype, device=joints.device)
    check_tensor(op, "weights", weights, (("B", B), ("T", T), ("J", J)), joints)
    if weights.requires_grad and torch.is_grad_enabled():
        # The compiled backends give weights no gradient; refusing keeps every backend alike.
        _fail(op, "weights", "a constant tensor (weights get no gradient; pass weights.detach())",
              "a tensor that requires grad")
    # A negative weight turns its term into a reward for moving away from the target.
    # On the CPU the values are read at once (a clear ValueError). On a GPU reading them
    # back would cost a host sync per call, so a device-side assertion runs instead: it
    # fails the next synchronising call with the same message. Skipped where values cannot
    # be checked: while torch.compile traces (a data-dependent branch would break a
    # fullgraph graph), for meta tensors, and during CUDA graph capture.
    if _values_readable(weights):
        if weights.device.type == "cpu":
            if bool((weights < 0).any()):
                _fail(op, "weights", "non-negative values (confidences or masks)",
                      f"a minimum of {weights.min().item():g}")
        elif weights.numel():
            torch._assert_async(weights.min() >= 0,
                                f"{op}: weights: expected non-negative values (confidences or masks), got a "
                                "negative value")
    return weights


def _values_readable(t: torch.Tensor) -> bool:
    if torch.compiler.is_compiling() or t.device.type == "meta":
        return False
    return not (t.device.type == "cuda" and torch.cuda.is_current_stream_capturing())


def check_options(op: str, depth_weight: str, depth_power, z_min, reduction: str) -> None:
    if depth_weight not in DEPTH_MODES:
        _fail(op, "depth_weight", f"one of {DEPTH_MODES}", repr(depth_weight))
    if depth_power is not None and not (isinstance(depth_power, (int, float)) and math.isfinite(depth_power)):
        _fail(op, "depth_power", "a finite number or None", repr(depth_power))
    if not (isinstance(z_min, (int, float)) and math.isfinite(z_min) and z_min >= 0):
        _fail(op, "z_min", "a finite non-negative depth in metres", repr(z_min))
    check_reduction(op, reduction)


def check_reduction(op: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        _fail(op, "reduction", f"one of {REDUCTIONS}", repr(reduction))
