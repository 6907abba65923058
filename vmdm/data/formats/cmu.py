"""CMU motion capture (ASF/AMC) -> 22-joint SMPL-layout positions at 20 fps.

The CMU clips shipped in ``shared/data/cmu_humanml`` are the project's real-motion test
set: motion nobody here generated. Nothing in the package needs them at run time; the
loaders only run when asked and say where they looked when the folder is absent.

ASF/AMC semantics (CMU Graphics Lab): each bone has a rest ``direction`` (world
coordinates) and ``length``, and an ``axis`` (Euler angles, degrees, applied in the
given order) that defines its local frame ``C``. A frame of motion gives each bone's
DOF angles, forming ``M``; the bone's global rotation is
``G = G_parent @ C @ M @ C^T`` and its end point is ``start + G @ direction * length``.
Lengths are in ``1/length`` inches (``length 0.45`` in ``:units``), so
metres = value / 0.45 * 0.0254. Y is up.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vmdm.motion.skeleton import SMPL22

__all__ = [
    "AsfBone",
    "AsfSkeleton",
    "CmuClip",
    "SMPL22_FROM_CMU",
    "parse_asf",
    "parse_amc",
    "amc_bone_positions",
    "to_smpl22",
    "load_cmu_clip",
    "default_cmu_dir",
    "load_cmu_testset",
    "load_humanml3d_segments",
]

_INCH = 0.0254


@dataclass
class AsfBone:
    name: str
    direction: np.ndarray  # [3] unit vector, world rest frame
    length: float  # metres
    axis: np.ndarray  # [3, 3] local frame C
    dof: tuple[str, ...]
    parent: str = "root"


@dataclass
class AsfSkeleton:
    bones: dict[str, AsfBone]
    order: tuple[str, ...]  # bones parents-first
    root_order: tuple[str, ...]  # DOF order of the root line in the AMC
    root_axis: np.ndarray  # [3, 3]
    root_position: np.ndarray  # [3] metres
    unit_scale: float  # metres per ASF length unit
    angle_scale: float = field(default=np.pi / 180.0)


def _open_text(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"CMU file not found: {path}")
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as f:
            return f.read()
    return path.read_text()


def _euler(angles_rad: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` applying the axis rotations in ``order`` (first letter first)."""
    angles_rad = np.asarray(angles_rad, dtype=np.float64)
    out = np.broadcast_to(np.eye(3), angles_rad.shape[:-1] + (3, 3)).copy()
    for k, ax in enumerate(order.upper()):
        a = angles_rad[..., k]
        c, s = np.cos(a), np.sin(a)
        R = np.zeros(a.shape + (3, 3))
        i = "XYZ".index(ax)
        j, l = [m for m in range(3) if m != i]
        R[..., i, i] = 1.0
        R[..., j, j] = c
        R[..., l, l] = c
        # Right-handed rotation about axis i: (j, l) is (y, z), (x, z) or (x, y).
        sign = -1.0 if ax == "Y" else 1.0
        R[..., j, l] = -s * sign
        R[..., l, j] = s * sign
        out = R @ out
    return out


def parse_asf(path: str | os.PathLike) -> AsfSkeleton:
    """Parse an ASF skeleton file (plain or ``.gz``)."""
    text = _open_text(path)
    section = None
    unit_length = 1.0
    angle_deg = True
    root_order: tuple[str, ...] = ()
    root_axis_order = "XYZ"
    root_pos = np.zeros(3)
    root_ori = np.zeros(3)
    bones: dict[str, AsfBone] = {}
    cur: dict | None = None
    hierarchy: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            parts = line.split()
            section = parts[0][1:]
            continue
        tok = line.split()
        if section == "units":
            if tok[0] == "length":
                unit_length = float(tok[1])
            elif tok[0] == "angle":
                angle_deg = tok[1].lower().startswith("deg")
        elif section == "root":
            if tok[0] == "order":
                root_order = tuple(t.upper() for t in tok[1:])
            elif tok[0] == "axis":
                root_axis_order = tok[1]
            elif tok[0] == "position":
                root_pos = np.array([float(v) for v in tok[1:4]])
            elif tok[0] == "orientation":
                root_ori = np.array([float(v) for v in tok[1:4]])
        elif section == "bonedata":
            if tok[0] == "begin":
                cur = {"dof": ()}
            elif tok[0] == "end":
                if cur is None or "name" not in cur:
                    raise ValueError(f"{path}: bone without a name in :bonedata")
                bones[cur["name"]] = AsfBone(
                    name=cur["name"],
                    direction=np.asarray(cur["direction"], dtype=np.float64),
                    length=float(cur["length"]),
                    axis=cur.get("axis", np.eye(3)),
                    dof=cur["dof"],
                )
                cur = None
            elif cur is not None:
                if tok[0] == "name":
                    cur["name"] = tok[1]
                elif tok[0] == "direction":
                    cur["direction"] = [float(v) for v in tok[1:4]]
                elif tok[0] == "length":
                    cur["length"] = float(tok[1])
                elif tok[0] == "axis":
                    cur["axis_raw"] = ([float(v) for v in tok[1:4]], tok[4] if len(tok) > 4 else "XYZ")
                elif tok[0] == "dof":
                    cur["dof"] = tuple(t.lower() for t in tok[1:])
                if "axis_raw" in cur and "axis" not in cur:
                    ang, order = cur["axis_raw"]
                    scale = np.pi / 180.0 if angle_deg else 1.0
                    cur["axis"] = _euler(np.array(ang) * scale, order)
        elif section == "hierarchy":
            if tok[0] not in ("begin", "end"):
                hierarchy.append(tok)
    if not bones:
        raise ValueError(f"{path}: no :bonedata found; is this an ASF file?")
    scale = _INCH / unit_length
    for b in bones.values():
        b.length *= scale
    order: list[str] = []
    for parent, *children in hierarchy:
        for c in children:
            if c not in bones:
                raise ValueError(f"{path}: :hierarchy names unknown bone {c!r}")
            bones[c].parent = parent
            order.append(c)
    missing = set(bones) - set(order)
    if missing:
        raise ValueError(f"{path}: bones missing from :hierarchy: {sorted(missing)}")
    ang_scale = np.pi / 180.0 if angle_deg else 1.0
    return AsfSkeleton(
        bones=bones,
        order=tuple(order),
        root_order=root_order or ("TX", "TY", "TZ", "RX", "RY", "RZ"),
        root_axis=_euler(root_ori * ang_scale, root_axis_order),
        root_position=root_pos * scale,
        unit_scale=scale,
        angle_scale=ang_scale,
    )


def parse_amc(path: str | os.PathLike, asf: AsfSkeleton) -> dict[str, np.ndarray]:
    """Parse an AMC motion file into ``{bone: [N, n_dof]}`` (``"root"`` has 6 values)."""
    text = _open_text(path)
    frames: list[dict[str, list[float]]] = []
    cur: dict[str, list[float]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith(":"):
            continue
        tok = line.split()
        if len(tok) == 1 and tok[0].isdigit():
            cur = {}
            frames.append(cur)
            continue
        if cur is None:
            raise ValueError(f"{path}: bone values before the first frame number")
        cur[tok[0]] = [float(v) for v in tok[1:]]
    if not frames:
        raise ValueError(f"{path}: no frames")
    out: dict[str, np.ndarray] = {}
    for name in ("root",) + asf.order:
        n = len(asf.root_order) if name == "root" else len(asf.bones[name].dof)
        if n == 0:
            continue
        rows = []
        for i, f in enumerate(frames):
            if name not in f:
                raise ValueError(f"{path}: bone {name!r} missing in frame {i + 1}")
            if len(f[name]) != n:
                raise ValueError(f"{path}: bone {name!r} has {len(f[name])} values in frame {i + 1}, ASF says {n}")
            rows.append(f[name])
        out[name] = np.array(rows, dtype=np.float64)
    return out


def amc_bone_positions(asf: AsfSkeleton, motion: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """World start and end points ``([N, 3], [N, 3])`` of every bone, metres; ``"root"`` -> (pos, pos)."""
    root = motion["root"]
    N = root.shape[0]
    trans = np.zeros((N, 3))
    rot_angles = np.zeros((N, 3))
    rot_order = ""
    for k, ch in enumerate(asf.root_order):
        if ch.startswith("T"):
            trans[:, "XYZ".index(ch[1])] = root[:, k]
        else:
            rot_angles[:, len(rot_order)] = root[:, k]
            rot_order += ch[1]
    C = asf.root_axis
    glob = {"root": C @ _euler(rot_angles[:, : len(rot_order)] * asf.angle_scale, rot_order) @ C.T}
    pos = {"root": trans * asf.unit_scale + asf.root_position}
    out = {"root": (pos["root"], pos["root"])}
    for name in asf.order:
        b = asf.bones[name]
        Mloc = np.broadcast_to(np.eye(3), (N, 3, 3))
        if b.dof:
            vals = motion[name] * asf.angle_scale
            ang = np.zeros((N, 3))
            order = ""
            for k, d in enumerate(b.dof):
                if d.startswith("r"):
                    ang[:, len(order)] = vals[:, k]
                    order += d[1].upper()
            if order:
                # DOF rotations compose in the bone's axis order (X, then Y, then Z).
                idx = sorted(range(len(order)), key=lambda i: "XYZ".index(order[i]))
                order_sorted = "".join(order[i] for i in idx)
                Mloc = _euler(ang[:, idx], order_sorted)
        G = glob[b.parent] @ b.axis @ Mloc @ b.axis.T
        start = pos[b.parent]
        end = start + (G @ (b.direction * b.length))
        glob[name] = G
        pos[name] = end
        out[name] = (start, end)
    return out


# SMPL22 joint -> (CMU bone, fraction along it: 0 = its start, 1 = its end).
# The CMU spine and clavicles are not SMPL's; fractions put each joint where the SMPL
# joint sits relative to its neighbours (see docs/data.md).
SMPL22_FROM_CMU: dict[str, tuple[str, float]] = {
    "pelvis": ("root", 0.0),
    "left_hip": ("lfemur", 0.0),
    "right_hip": ("rfemur", 0.0),
    "spine1": ("lowerback", 1.0),
    "left_knee": ("ltibia", 0.0),
    "right_knee": ("rtibia", 0.0),
    "spine2": ("upperback", 1.0),
    "left_ankle": ("lfoot", 0.0),
    "right_ankle": ("rfoot", 0.0),
    "spine3": ("thorax", 0.6),
    "left_foot": ("ltoes", 0.0),
    "right_foot": ("rtoes", 0.0),
    "neck": ("lowerneck", 1.0),
    "left_collar": ("lclavicle", 0.35),
    "right_collar": ("rclavicle", 0.35),
    "head": ("upperneck", 1.0),
    "left_shoulder": ("lhumerus", 0.0),
    "right_shoulder": ("rhumerus", 0.0),
    "left_elbow": ("lradius", 0.0),
    "right_elbow": ("rradius", 0.0),
    "left_wrist": ("lwrist", 0.0),
    "right_wrist": ("rwrist", 0.0),
}


def to_smpl22(bone_positions: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``[N, 22, 3]`` SMPL-layout joints from :func:`amc_bone_positions`' output."""
    out = []
    for name in SMPL22.joint_names:
        bone, frac = SMPL22_FROM_CMU[name]
        if bone not in bone_positions:
            raise KeyError(f"to_smpl22: CMU bone {bone!r} (for SMPL joint {name!r}) not in the skeleton")
        s, e = bone_positions[bone]
        out.append(s + frac * (e - s))
    return np.stack(out, axis=1)


def load_cmu_clip(
    asf_path: str | os.PathLike,
    amc_path: str | os.PathLike,
    source_fps: int = 120,
    fps: int = 20,
    asf: AsfSkeleton | None = None,
) -> np.ndarray:
    """Joints ``[T, 22, 3]`` float32 in metres, y up, resampled by taking every ``source_fps/fps``-th frame."""
    if source_fps % fps:
        raise ValueError(f"load_cmu_clip: source_fps ({source_fps}) must be a multiple of fps ({fps})")
    asf = asf or parse_asf(asf_path)
    motion = parse_amc(amc_path, asf)
    step = source_fps // fps
    motion = {k: v[::step] for k, v in motion.items()}
    return to_smpl22(amc_bone_positions(asf, motion)).astype(np.float32)


def default_cmu_dir() -> Path | None:
    """``$VMDM_CMU_DIR``, else ``shared/data/cmu_humanml`` in or beside the repository; None if absent."""
    from vmdm.data.formats import find_shared_data

    return find_shared_data("VMDM_CMU_DIR", "cmu_humanml", "clips.tsv")


def _resolve_root(root: str | os.PathLike | None) -> Path:
    if root is None:
        found = default_cmu_dir()
        if found is None:
            raise FileNotFoundError(
                "CMU test data not found: set VMDM_CMU_DIR or place cmu_humanml under shared/data/ "
                "in or beside the repository"
            )
        return found
    root = Path(root)
    if not (root / "clips.tsv").is_file():
        raise FileNotFoundError(f"{root}: not a cmu_humanml folder (no clips.tsv)")
    return root


def _read_tsv(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().strip().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, l.split("\t"))) for l in lines[1:]]


@dataclass
class CmuClip:
    name: str  # e.g. "01_05" or a HumanML3D id for a segment
    joints: np.ndarray  # [T, 22, 3], 20 fps, metres, y up
    source: str = ""  # the CMU trial it came from


def load_cmu_testset(root: str | os.PathLike | None = None, fps: int = 20) -> list[CmuClip]:
    """All clips listed in ``clips.tsv`` (the 24-clip real-motion test set)."""
    root = _resolve_root(root)
    asf_cache: dict[str, AsfSkeleton] = {}
    clips = []
    for row in _read_tsv(root / "clips.tsv"):
        name = row["cmu_subject_trial"]
        subject = name.split("_")[0]
        asf_path = root / "asfamc" / subject / f"{subject}.asf.gz"
        if subject not in asf_cache:
            asf_cache[subject] = parse_asf(asf_path)
        joints = load_cmu_clip(asf_path, root / row["amc_file"], fps=fps, asf=asf_cache[subject])
        clips.append(CmuClip(name=name, joints=joints, source=name))
    return clips


def load_humanml3d_segments(
    root: str | os.PathLike | None = None, clips: list[CmuClip] | None = None
) -> list[CmuClip]:
    """The HumanML3D segments (``clip_in_this_folder == 1``) cut from the local clips at 20 fps."""
    root = _resolve_root(root)
    clips = clips if clips is not None else load_cmu_testset(root)
    by_name = {c.name: c for c in clips}
    out = []
    for row in _read_tsv(root / "humanml3d_cmu_index.tsv"):
        if row.get("clip_in_this_folder") != "1":
            continue
        src = by_name[row["cmu_subject_trial"]]
        s, e = int(row["start_frame_20fps"]), int(row["end_frame_20fps"])
        j = src.joints[s:] if e == -1 else src.joints[s:e]
        out.append(CmuClip(name=row["humanml_id"], joints=j, source=src.name))
    return out
