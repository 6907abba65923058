"""Bad calls fail at the boundary with a message naming the argument, what was
expected and what was given — on every backend, and in the C++ ops themselves."""

import re

import pytest
import torch

import vmdm_kernels as vk

from .problems import make_problem

BACKENDS = ["reference"] + (["cpp"] if vk.backends()["cpp"].available else [])


def _args(**over):
    p = make_problem(2, 5, 4, dtype=torch.float32, seed=0)
    p.update(over)
    return p


def _call(p, backend, **kw):
    return vk.reprojection_velocity_loss(p["joints"], p["keypoints"], p["camera"], p["weights"], p["intrinsics"],
                                         backend=backend, **kw)


CASES = [
    ("joints rank", dict(joints=torch.zeros(2, 5, 3)), r"joints: expected shape \[B, T, J, 3\], got \[2, 5, 3\]"),
    ("joints last dim", dict(joints=torch.zeros(2, 5, 4, 2)), r"joints: expected shape \[B, T, J, 3\], got \[2, 5, 4, 2\]"),
    ("keypoints T", dict(keypoints=torch.zeros(2, 6, 4, 2)),
     r"keypoints: expected shape \[B=2, T=5, J=4, 2\], got \[2, 6, 4, 2\]"),
    ("keypoints J", dict(keypoints=torch.zeros(2, 5, 3, 2)),
     r"keypoints: expected shape \[B=2, T=5, J=4, 2\], got \[2, 5, 3, 2\]"),
    ("weights B", dict(weights=torch.zeros(3, 5, 4)), r"weights: expected shape \[B=2, T=5, J=4\], got \[3, 5, 4\]"),
    ("camera shape", dict(camera=torch.zeros(2, 3, 3)), r"camera: expected shape \[B=2, 3, 4\], got \[2, 3, 3\]"),
    ("camera rank", dict(camera=torch.zeros(2, 12)),
     r"camera: expected shape \[B=2, 3, 4\] or \[B=2, T=5, 3, 4\], got \[2, 12\]"),
    ("per-frame camera T", dict(camera=torch.zeros(2, 4, 3, 4)),
     r"camera: expected shape \[B=2, T=5, 3, 4\], got \[2, 4, 3, 4\]"),
    ("intrinsics", dict(intrinsics=torch.zeros(2, 3)), r"intrinsics: expected shape \[B=2, 4\], got \[2, 3\]"),
    ("integer joints", dict(joints=torch.zeros(2, 5, 4, 3, dtype=torch.int64)),
     r"joints: expected a floating-point dtype .*, got torch.int64"),
    ("mixed dtype", dict(keypoints=torch.zeros(2, 5, 4, 2, dtype=torch.float64)),
     r"keypoints: expected dtype torch.float32 \(the dtype of joints\), got torch.float64"),
    ("integer weights", dict(weights=torch.ones(2, 5, 4, dtype=torch.int32)),
     r"weights: expected dtype torch.float32 \(the dtype of joints\), got torch.int32"),
    ("mixed device", dict(camera=torch.zeros(2, 3, 4, device="meta")),
     r"camera: expected device cpu \(the device of joints\), got meta"),
    ("not a tensor", dict(keypoints=[[0.0, 0.0]]), r"keypoints: expected a torch.Tensor, got list"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,over,message", CASES, ids=[c[0] for c in CASES])
def test_bad_tensor_arguments(backend, name, over, message):
    with pytest.raises(ValueError, match=r"reprojection_velocity_loss: " + message):
        _call(_args(**over), backend)


OPTION_CASES = [
    (dict(depth_weight="pixel"), r"depth_weight: expected one of \('none', 'sample', 'point'\), got 'pixel'"),
    (dict(z_min=-1.0), r"z_min: expected a finite non-negative depth in metres, got -1.0"),
    (dict(z_min=float("nan")), r"z_min: expected a finite non-negative depth in metres, got nan"),
    (dict(depth_power=float("inf")), r"depth_power: expected a finite number or None, got inf"),
    (dict(reduction="avg"), r"reduction: expected one of \('none', 'mean', 'sum'\), got 'avg'"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("over,message", OPTION_CASES, ids=[str(c[0]) for c in OPTION_CASES])
def test_bad_options(backend, over, message):
    with pytest.raises(ValueError, match=message):
        _call(_args(), backend, **over)


def test_other_ops_validate_too():
    p = _args()
    with pytest.raises(ValueError, match=r"velocity_loss_3d: target: expected shape \[B=2, T=5, J=4, 3\], got \[2, 5, 4, 2\]"):
        vk.velocity_loss_3d(p["joints"], p["keypoints"])
    with pytest.raises(ValueError, match=r"ray_targets: keypoints: expected shape \[B=2, T=5, J=4, 2\], got \[2, 5, 4, 3\]"):
        vk.ray_targets(p["joints"], p["joints"], p["camera"])
    with pytest.raises(ValueError, match=r"velocity_loss: weights: expected shape"):
        vk.velocity_loss(p["joints"], p["keypoints"], p["camera"], p["weights"][:, :2])


def test_unknown_and_unavailable_backends():
    p = _args()
    with pytest.raises(ValueError, match=r"backend= argument: expected one of .*, got 'fast'"):
        _call(p, "fast")
    unavailable = [n for n, info in vk.backends().items() if not info.available]
    for name in unavailable:
        with pytest.raises(vk.BackendUnavailableError, match=rf"backend '{name}' \(backend= argument\) is unavailable: "):
            _call(p, name)


@pytest.mark.skipif(not vk.backends()["cpp"].available, reason="C++ extension not built")
def test_cpp_ops_check_their_inputs_directly():
    """The dispatcher-level ops are a public C++ API too; they validate on their own."""
    p = _args()
    ops = torch.ops.vmdm_C
    with pytest.raises(ValueError, match=re.escape("reproj_vel_fwd: keypoints: expected shape [2, 5, 4, 2], got [2, 5, 4, 3]")):
        ops.reproj_vel_fwd(p["joints"], p["joints"], p["camera"], p["weights"], None, 1, 1.0, 0.5, True, True)
    with pytest.raises(ValueError, match=re.escape("reproj_vel_fwd: weights: expected dtype Double (the dtype of joints), got Float")):
        ops.reproj_vel_fwd(p["joints"].double(), p["keypoints"].double(), p["camera"].double(), p["weights"], None,
                           1, 1.0, 0.5, True, True)
    with pytest.raises(ValueError, match=re.escape("reproj_vel_fwd: depth_mode: expected 0 (none), 1 (sample) or 2 (point), got 7")):
        ops.reproj_vel_fwd(p["joints"], p["keypoints"], p["camera"], p["weights"], None, 7, 1.0, 0.5, True, True)
    with pytest.raises(ValueError, match=re.escape("velocity3d_fwd: target: expected shape [2, 5, 4, 3], got [2, 5, 4, 2]")):
        ops.velocity3d_fwd(p["joints"], p["keypoints"], p["weights"])
    with pytest.raises(ValueError, match=re.escape("ray_targets_fwd: camera: expected shape [B, 3, 4] or [B, T, 3, 4] with B=2, T=5, got [3, 4]")):
        ops.ray_targets_fwd(p["joints"], p["keypoints"], p["camera"][0], None)
    with pytest.raises(ValueError, match=re.escape("reproj_vel_fwd: joints: expected a floating-point dtype")):
        ops.reproj_vel_fwd(p["joints"].long(), p["keypoints"], p["camera"], p["weights"], None, 1, 1.0, 0.5, True, True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_that_require_grad_are_refused_on_every_backend(backend):
    # The compiled backends treat weights as constants; the reference would differentiate them.
    p = _args()
    p["weights"] = p["weights"].clone().requires_grad_()
    msg = r"weights: expected a constant tensor \(weights get no gradient; pass weights.detach\(\)\), got a tensor"
    with pytest.raises(ValueError, match=msg):
        _call(p, backend)
    with pytest.raises(ValueError, match=msg):
        vk.velocity_loss_3d(p["joints"], p["joints"].detach() + 1, p["weights"], backend=backend)
    with torch.no_grad():
        _call(p, backend)  # nothing to differentiate: fine
    _call(dict(p, weights=p["weights"].detach()), backend)


def _weighted_ops(p, backend):
    """Every public op that takes weights, as ``name -> call(weights)``."""
    j, kp, cam, intr = p["joints"], p["keypoints"], p["camera"], p["intrinsics"]
    target = j.detach() + 0.01
    return {
        "reprojection_velocity_loss": lambda w: vk.reprojection_velocity_loss(j, kp, cam, w, intr, backend=backend),
        "reprojection_loss": lambda w: vk.reprojection_loss(j, kp, cam, w, intr, backend=backend),
        "velocity_loss": lambda w: vk.velocity_loss(j, kp, cam, w, intr, backend=backend),
        "velocity_loss_3d": lambda w: vk.velocity_loss_3d(j, target, w, backend=backend),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_weights_are_refused_and_zero_weights_are_not(backend):
    p = _args()
    negative = p["weights"].clone()
    negative[1, 2, 3] = -0.25
    for name, call in _weighted_ops(p, backend).items():
        msg = rf"{name}: weights: expected non-negative values \(confidences or masks\), got a minimum of -0.25"
        with pytest.raises(ValueError, match=msg):
            call(negative)
        # Zero weights (masked points) stay valid: all-zero gives a zero loss, a zeroed clip a finite one.
        partly = p["weights"].clone()
        partly[0] = 0.0
        for weights, want_zero in ((torch.zeros_like(partly), True), (partly, False)):
            out = call(weights)
            for value in out if isinstance(out, tuple) else (out,):
                assert torch.isfinite(value) and (float(value) == 0.0) == want_zero, (name, value)


def test_negative_weights_check_does_not_break_a_fullgraph_trace():
    """Under torch.compile the value check is skipped (a data-dependent branch would break the
    graph); the compiled op gives the eager result on valid weights."""
    p = _args()
    backend = "cpp" if vk.backends()["cpp"].available else "reference"

    def loss(j, kp, cam, w, intr):
        pos, vel = vk.reprojection_velocity_loss(j, kp, cam, w, intr, backend=backend)
        return pos + vel + vk.velocity_loss_3d(j, j.detach() + 0.01, w, backend=backend)

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    args = (p["joints"], p["keypoints"], p["camera"], p["weights"], p["intrinsics"])
    torch.testing.assert_close(compiled(*args), loss(*args))
