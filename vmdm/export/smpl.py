"""Export joint-position motions as SMPL pose parameters and meshes (optional, needs ``smplx``).

SMPL poses are rotations relative to SMPL's own rest pose, so the inverse kinematics runs
on a copy of the SMPL22 skeleton whose rest offsets are the model's rest joints (for the
given shape): the IK rotations then *are* SMPL's local joint rotations. Bone twist is not
observable from joint positions; the IK's no-twist choice is what gets exported, so joint
positions are reproduced exactly (up to bone lengths) while limb twist is a guess.

SMPL model files are licensed and cannot ship with the project: download SMPL (version
1.1.0, "SMPL for Python") from https://smpl.is.tue.mpg.de after registering and put
``SMPL_NEUTRAL.pkl`` (and/or ``SMPL_MALE.pkl``, ``SMPL_FEMALE.pkl``) into
``<model_dir>/smpl/``. Reading the original ``.pkl`` files also needs ``chumpy``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vmdm.motion.kinematics import inverse_kinematics, matrix_to_axis_angle
from vmdm.motion.skeleton import SMPL22, Skeleton

__all__ = ["SMPLTensors", "load_smpl_model", "rest_skeleton", "joints_to_smpl_params", "smpl_forward", "export_smpl"]

NUM_SMPL_JOINTS = 24  # SMPL22 + left_hand, right_hand


def _require_smplx():
    try:
        import smplx  # noqa: F401
        import smplx.lbs  # noqa: F401
    except ImportError as e:
        raise ImportError("SMPL export needs the 'smplx' package: pip install smplx") from e
    return smplx


@dataclass
class SMPLTensors:
    """The arrays ``smplx.lbs.lbs`` needs (from a real model or built by hand)."""

    v_template: torch.Tensor  # [V, 3]
    shapedirs: torch.Tensor  # [V, 3, NB]
    posedirs: torch.Tensor  # [207, V * 3]
    J_regressor: torch.Tensor  # [24, V]
    parents: torch.Tensor  # [24] long, parents[0] = -1
    lbs_weights: torch.Tensor  # [V, 24]

    def rest_joints(self, betas: torch.Tensor | None = None) -> torch.Tensor:
        v = self.v_template
        if betas is not None:
            v = v + torch.einsum("vcn,n->vc", self.shapedirs[..., : betas.shape[-1]], betas)
        return self.J_regressor @ v


def load_smpl_model(model_dir: str | os.PathLike, gender: str = "neutral") -> SMPLTensors:
    """Load SMPL from ``model_dir`` (see the module doc for where the files go)."""
    smplx = _require_smplx()
    model_dir = Path(model_dir)
    name = f"SMPL_{gender.upper()}.pkl"
    candidates = [model_dir / "smpl" / name, model_dir / name]
    if not any(p.is_file() for p in candidates):
        raise FileNotFoundError(
            f"SMPL model file {name} not found in {model_dir} (looked at {', '.join(map(str, candidates))}). "
            "Download SMPL v1.1.0 ('SMPL for Python') from https://smpl.is.tue.mpg.de (free registration), "
            f"and put {name} into {model_dir / 'smpl'}/; the original .pkl files also need 'pip install chumpy'."
        )
    model = smplx.create(str(model_dir), model_type="smpl", gender=gender)
    return SMPLTensors(
        v_template=model.v_template.detach(),
        shapedirs=model.shapedirs.detach(),
        posedirs=model.posedirs.detach(),
        J_regressor=model.J_regressor.detach(),
        parents=model.parents.detach().long(),
        lbs_weights=model.lbs_weights.detach(),
    )


def rest_skeleton(rest_joints: torch.Tensor, base: Skeleton = SMPL22) -> Skeleton:
    """SMPL22 with rest offsets taken from a model's rest joints ``[>= 22, 3]``."""
    j = rest_joints[: base.num_joints].double()
    par = list(base.parents)
    offs = [(0.0, 0.0, 0.0)] + [tuple((j[k] - j[par[k]]).tolist()) for k in range(1, base.num_joints)]
    return dataclasses.replace(base, name=base.name + "_smplrest", offsets=tuple(offs))


def joints_to_smpl_params(
    joints: torch.Tensor | np.ndarray, model: SMPLTensors, betas: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """SMPL parameters for joints ``[T, 22, 3]`` (metres, y up, SMPL22 order).

    Returns ``global_orient`` [T, 3], ``body_pose`` [T, 69] (axis-angle; the hand joints
    are zero), ``transl`` [T, 3] and ``betas`` [NB].
    """
    x = torch.as_tensor(np.asarray(joints) if isinstance(joints, np.ndarray) else joints).double()
    if x.ndim != 3 or x.shape[1:] != (22, 3):
        raise ValueError(f"joints: expected [T, 22, 3] SMPL22 positions, got {tuple(x.shape)}")
    nb = model.shapedirs.shape[-1]
    betas = torch.zeros(nb, dtype=torch.float64) if betas is None else torch.as_tensor(betas).double()
    rest = model.rest_joints(betas.to(model.v_template.dtype)).double()
    skel = rest_skeleton(rest)
    R = inverse_kinematics(x, skel)  # [T, 22, 3, 3], relative to SMPL's rest pose
    aa = matrix_to_axis_angle(R)
    T = x.shape[0]
    body = torch.zeros(T, NUM_SMPL_JOINTS - 1, 3, dtype=torch.float64)
    body[:, :21] = aa[:, 1:]
    # lbs rotates about the rest root joint; the translation moves it to the observed root.
    return {
        "global_orient": aa[:, 0],
        "body_pose": body.reshape(T, -1),
        "transl": x[:, 0] - rest[0],
        "betas": betas,
    }


def smpl_forward(params: dict[str, torch.Tensor], model: SMPLTensors) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vertices [T, V, 3], joints [T, 24, 3])`` through ``smplx.lbs.lbs``."""
    _require_smplx()
    from smplx.lbs import lbs

    dtype = model.v_template.dtype
    T = params["global_orient"].shape[0]
    pose = torch.cat([params["global_orient"], params["body_pose"]], dim=-1).to(dtype)
    betas = params["betas"].to(dtype).expand(T, -1)
    verts, J = lbs(
        betas, pose, model.v_template[None], model.shapedirs[..., : betas.shape[-1]], model.posedirs,
        model.J_regressor, model.parents, model.lbs_weights,
    )
    t = params["transl"].to(dtype)[:, None]
    return verts + t, J + t


def export_smpl(
    joints: torch.Tensor | np.ndarray,
    model_dir: str | os.PathLike | None = None,
    *,
    model: SMPLTensors | None = None,
    gender: str = "neutral",
    out: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """Parameters and mesh vertices for a motion; optionally saved as ``.npz`` at ``out``."""
    if model is None:
        if model_dir is None:
            raise ValueError("export_smpl: give model_dir (folder with smpl/SMPL_NEUTRAL.pkl) or model")
        model = load_smpl_model(model_dir, gender)
    params = joints_to_smpl_params(joints, model)
    verts, J = smpl_forward(params, model)
    result = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in params.items()}
    result["vertices"] = verts.detach().cpu().numpy().astype(np.float32)
    result["joints"] = J.detach().cpu().numpy().astype(np.float32)
    if out is not None:
        np.savez(out, **result)
    return result
