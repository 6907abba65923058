import numpy as np
import pytest
import torch

smplx = pytest.importorskip("smplx", reason="smplx not installed (pip install smplx)")

from vmdm.motion.kinematics import axis_angle_to_matrix  # noqa: E402
from vmdm.motion.skeleton import SMPL22, forward_kinematics  # noqa: E402
from vmdm.export.smpl import (  # noqa: E402
    SMPLTensors,
    export_smpl,
    joints_to_smpl_params,
    load_smpl_model,
    rest_skeleton,
    smpl_forward,
)

SMPL_PARENTS = list(SMPL22.parents) + [20, 21]


def _synthetic_model(seed=0, extra=200, nb=10, posedirs_scale=0.001):
    """An SMPL-shaped model: the first 24 vertices sit on the joints, the rest are skinned to one joint each."""
    g = torch.Generator().manual_seed(seed)
    rest = forward_kinematics(torch.eye(3).expand(22, 3, 3), torch.tensor([0.0, 0.9, 0.0]), SMPL22).double()
    hands = rest[[20, 21]] + torch.tensor([[0.08, 0.0, 0.0], [-0.08, 0.0, 0.0]], dtype=torch.float64)
    joints24 = torch.cat([rest, hands])
    owner = torch.randint(0, 24, (extra,), generator=g)
    others = joints24[owner] + 0.05 * torch.randn(extra, 3, generator=g, dtype=torch.float64)
    v = torch.cat([joints24, others])
    V = v.shape[0]
    W = torch.zeros(V, 24, dtype=torch.float64)
    W[torch.arange(24), torch.arange(24)] = 1.0
    W[24 + torch.arange(extra), owner] = 1.0
    Jreg = torch.zeros(24, V, dtype=torch.float64)
    Jreg[torch.arange(24), torch.arange(24)] = 1.0
    return SMPLTensors(
        v_template=v,
        shapedirs=0.01 * torch.randn(V, 3, nb, generator=g, dtype=torch.float64),
        posedirs=posedirs_scale * torch.randn(207, V * 3, generator=g, dtype=torch.float64),
        J_regressor=Jreg,
        parents=torch.tensor([-1] + SMPL_PARENTS[1:], dtype=torch.long),
        lbs_weights=W,
    )


def _motion(model, betas, T=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    skel = rest_skeleton(model.rest_joints(betas))
    aa = 0.6 * torch.randn(T, 22, 3, generator=g, dtype=torch.float64)
    root = torch.randn(T, 3, generator=g, dtype=torch.float64) + torch.tensor([0.0, 0.9, 0.0], dtype=torch.float64)
    return forward_kinematics(axis_angle_to_matrix(aa), root, skel)


@pytest.mark.parametrize("with_shape", [False, True])
def test_parameters_reproduce_joints_through_smplx_lbs(with_shape):
    model = _synthetic_model()
    betas = 2.0 * torch.randn(10, generator=torch.Generator().manual_seed(3), dtype=torch.float64) if with_shape else None
    joints = _motion(model, betas)
    params = joints_to_smpl_params(joints, model, betas)
    assert params["global_orient"].shape == (12, 3) and params["body_pose"].shape == (12, 69)
    assert (params["body_pose"].reshape(12, 23, 3)[:, 21:] == 0).all()  # hands
    verts, J = smpl_forward(params, model)
    # Pose blend shapes move vertices, never joints.
    torch.testing.assert_close(J[:, :22], joints, atol=1e-6, rtol=0)
    rigid = _synthetic_model(posedirs_scale=0.0)
    verts, J = smpl_forward(joints_to_smpl_params(joints, rigid, betas), rigid)
    torch.testing.assert_close(verts[:, :22], joints, atol=1e-6, rtol=0)
    # A vertex skinned to one joint keeps its distance to that joint.
    owner = rigid.lbs_weights[24:].argmax(1)
    b = betas if betas is not None else torch.zeros(10, dtype=torch.float64)
    shaped = rigid.v_template + torch.einsum("vcn,n->vc", rigid.shapedirs, b)
    d_rest = (shaped[24:] - rigid.rest_joints(betas)[owner]).norm(dim=-1)
    d_posed = (verts[:, 24:] - J[:, owner]).norm(dim=-1)
    torch.testing.assert_close(d_posed, d_rest.expand_as(d_posed), atol=1e-6, rtol=0)


def test_rest_pose_motion_exports_zero_pose():
    model = _synthetic_model()
    rest = model.rest_joints()[:22]
    joints = rest[None].repeat(3, 1, 1) + torch.tensor([0.5, 0.0, -0.2], dtype=torch.float64)
    params = joints_to_smpl_params(joints, model)
    assert params["body_pose"].abs().max() < 1e-6 and params["global_orient"].abs().max() < 1e-6
    torch.testing.assert_close(params["transl"], torch.tensor([[0.5, 0.0, -0.2]] * 3, dtype=torch.float64))


def test_export_writes_npz(tmp_path):
    model = _synthetic_model()
    joints = _motion(model, None, T=5).numpy()
    out = export_smpl(joints, model=model, out=tmp_path / "m.npz")
    saved = np.load(tmp_path / "m.npz")
    assert saved["vertices"].shape == (5, 224, 3) and np.allclose(saved["joints"][:, :22], joints, atol=1e-4)
    assert set(out) == set(saved.files)


def test_missing_model_files_say_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SMPL_NEUTRAL\.pkl.*smpl\.is\.tue\.mpg\.de"):
        load_smpl_model(tmp_path)
    with pytest.raises(ValueError, match="model_dir"):
        export_smpl(np.zeros((3, 22, 3)))
    with pytest.raises(ValueError, match=r"\[T, 22, 3\]"):
        joints_to_smpl_params(np.zeros((3, 21, 3)), _synthetic_model())
