"""BVH motion capture (``.bvh`` / ``.bvh.gz``) -> 22-joint SMPL-layout positions at 20 fps.

The one BVH reader of the project: :mod:`vmdm.export.bvh` re-exports :func:`read_bvh`,
:class:`BVHMotion` and :class:`BVHFormatError` from here for its own files.

What is read: the ``HIERARCHY`` (``ROOT``/``JOINT`` blocks with ``OFFSET``, ``CHANNELS``
and ``End Site`` blocks, any nesting, braces on their own line or not), then ``MOTION``
with ``Frames:``, ``Frame Time:`` and one line of channel values per frame. Every joint
may carry any subset of the six channels in any order, so each joint has its own Euler
order and, optionally, its own position channels.

Semantics (those of Blender's importer and most tools, and of the project's writer):

* a joint's local rotation is the product of its rotation channels *in the order
  listed*: ``Zrotation Xrotation Yrotation`` means ``Rz @ Rx @ Ry`` (degrees);
* a joint's position channels *replace* the matching components of its ``OFFSET`` as its
  local translation (for a root this is the usual world position; files that repeat the
  offset in the channels, like Bandai-Namco's, give the same either way);
* ``position(j) = position(parent) + R_global(parent) @ translation(j)`` and
  ``R_global(j) = R_global(parent) @ R_local(j)``. Forward kinematics is float64 and
  vectorised over frames (one pass over the joints in file order, parents first).

Import (:func:`load_bvh_smpl22`): forward kinematics, then resampling to 20 fps, units to
metres, a named joint map to SMPL-22 (:data:`JOINT_MAPS`: Bandai-Namco's built in;
Mixamo and CMU-BVH names as well), optional retargeting to HumanML3D's skeleton
(:func:`vmdm.motion.retarget.uniform_skeleton`). Y must be up (as in every BVH source
here).

Resampling (``resample="slerp"``, the default): the local rotations are interpolated by
quaternion slerp and the translation channels linearly at the new frame times, then
forward kinematics runs at the new rate. Bones therefore keep their exact lengths and
rotations their magnitude. ``"linear"`` interpolates joint *positions* after forward
kinematics instead; at 30 -> 20 fps every other output frame is a midpoint, where a bone
turning by an angle ``a`` per source frame shortens by ``1 - cos(a / 2)`` (0.4 % at 10
degrees per frame, a fast wrist), which is why it is not the default. ``"nearest"`` picks
source frames. A source rate that is an integer multiple of 20 fps gives source frames
exactly with every method.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vmdm.motion.kinematics import matrix_to_quat, quat_to_matrix
from vmdm.motion.skeleton import SMPL22

__all__ = [
    "BVHFormatError",
    "BVHMotion",
    "JOINT_MAPS",
    "RESAMPLE_METHODS",
    "UNIT_SCALES",
    "default_bandai_dir",
    "detect_joint_map",
    "euler_matrices",
    "euler_matrices_rad",
    "forward_kinematics",
    "load_bvh_smpl22",
    "parse_bvh",
    "read_bvh",
    "resample_local",
    "resample_positions",
    "source_fps",
    "to_smpl22",
    "unit_scale",
]

log = logging.getLogger(__name__)

_AXIS = {"X": 0, "Y": 1, "Z": 2}
_CHANNELS = {f"{a}{k}".lower(): f"{a}{k}" for a in "XYZ" for k in ("position", "rotation")}
RESAMPLE_METHODS = ("slerp", "linear", "nearest")
# Metres per file unit for ``units=``; "auto" picks among m / cm / mm (see :func:`unit_scale`).
UNIT_SCALES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254}


class BVHFormatError(ValueError):
    """A BVH file the reader cannot parse; the message names the file and line."""


# --------------------------------------------------------------------------- data


@dataclass
class BVHMotion:
    """A parsed BVH file, joints in file (depth-first) order; End Sites are not joints."""

    names: list[str]
    parents: list[int]  # -1 for the root
    offsets: np.ndarray  # [J, 3], file units
    channels: list[list[str]]  # per joint, e.g. ["Xposition", ..., "Zrotation", ...]
    frame_time: float  # seconds
    motion: np.ndarray  # [F, total channels], file units and degrees
    end_sites: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (joint, offset [3])
    source: str = "<bvh>"

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def fps(self) -> float:
        """Frames per second, rounded to an integer when within a relative 1e-3 (see :func:`source_fps`)."""
        return source_fps(self.frame_time)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.source}: no joint {name!r}; joints: {self.names}") from None

    def channel_columns(self) -> list[slice]:
        """The motion columns of each joint."""
        out, col = [], 0
        for ch in self.channels:
            out.append(slice(col, col + len(ch)))
            col += len(ch)
        return out

    def local_transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame local rotations ``[F, J, 3, 3]`` and translations ``[F, J, 3]`` (file units)."""
        F, J = self.num_frames, self.num_joints
        R = np.broadcast_to(np.eye(3), (F, J, 3, 3)).copy()
        t = np.broadcast_to(self.offsets, (F, J, 3)).copy()
        for j, cols in enumerate(self.channel_columns()):
            chans = self.channels[j]
            vals = self.motion[:, cols]
            rot = [(k, c[0]) for k, c in enumerate(chans) if c.endswith("rotation")]
            if rot:
                R[:, j] = euler_matrices(vals[:, [k for k, _ in rot]], "".join(a for _, a in rot))
            for k, c in enumerate(chans):
                if c.endswith("position"):
                    t[:, j, _AXIS[c[0]]] = vals[:, k]
        return R, t

    def positions(self) -> np.ndarray:
        """Forward kinematics of the channels: joint positions ``[F, J, 3]`` (float64, file units)."""
        R, t = self.local_transforms()
        return forward_kinematics(R, t, self.parents)[1]

    def end_site_positions(self) -> np.ndarray:
        """World positions ``[F, E, 3]`` of the End Sites (in file order)."""
        R, t = self.local_transforms()
        G, P = forward_kinematics(R, t, self.parents)
        if not self.end_sites:
            return np.zeros((self.num_frames, 0, 3))
        return np.stack([P[:, j] + G[:, j] @ off for j, off in self.end_sites], axis=1)


def axis_rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` about coordinate axis ``axis`` (0 = x) by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros(np.shape(angle) + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1.0
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def euler_matrices(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """``angles [..., n]`` degrees, one per letter of ``order`` (any of X/Y/Z, ``n`` 1..3,
    repeats allowed) -> ``R_order[0] @ R_order[1] @ ...`` ``[..., 3, 3]``."""
    return euler_matrices_rad(np.radians(np.asarray(angles_deg, dtype=np.float64)), order)


def euler_matrices_rad(angles: np.ndarray, order: str) -> np.ndarray:
    """:func:`euler_matrices` with the angles in radians."""
    a = np.asarray(angles, dtype=np.float64)
    if a.shape[-1] != len(order):
        raise ValueError(f"euler_matrices: {a.shape[-1]} angles for order {order!r}")
    out = None
    for k, ax in enumerate(order.upper()):
        M = axis_rotation(_AXIS[ax], a[..., k])
        out = M if out is None else out @ M
    return out if out is not None else np.broadcast_to(np.eye(3), a.shape[:-1] + (3, 3)).copy()


def forward_kinematics(local_R: np.ndarray, local_t: np.ndarray, parents) -> tuple[np.ndarray, np.ndarray]:
    """Global rotations ``[F, J, 3, 3]`` and positions ``[F, J, 3]`` from local ones.

    ``parents[j] < j`` (file order); vectorised over frames, one step per joint."""
    local_R = np.asarray(local_R, dtype=np.float64)
    local_t = np.asarray(local_t, dtype=np.float64)
    G = np.empty_like(local_R)
    P = np.empty_like(local_t)
    for j, p in enumerate(parents):
        if p < 0:
            G[:, j] = local_R[:, j]
            P[:, j] = local_t[:, j]
        else:
            G[:, j] = G[:, p] @ local_R[:, j]
            P[:, j] = P[:, p] + np.einsum("fab,fb->fa", G[:, p], local_t[:, j])
    return G, P


# --------------------------------------------------------------------------- parsing


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise BVHFormatError(f"{path}: file missing")
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise BVHFormatError(f"{path}:1: cannot read ({e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_bvh(path: str | os.PathLike) -> BVHMotion:
    """Parse a BVH file, plain or gzip-compressed (``.gz``)."""
    path = Path(path)
    return parse_bvh(_read_text(path), source=str(path))


def parse_bvh(text: str, source: str = "<bvh>") -> BVHMotion:
    """Parse BVH text; errors (:class:`BVHFormatError`) read ``source:line: message``."""
    raw = text.splitlines()

    def fail(lineno, msg):
        return BVHFormatError(f"{source}:{lineno}: {msg}")

    # Hierarchy tokens with their line numbers, up to the MOTION keyword.
    toks: list[tuple[str, int]] = []
    motion_line = None
    for n, line in enumerate(raw, 1):
        s = line.strip()
        if not s:
            continue
        if s.split()[0].upper() == "MOTION":
            motion_line = n
            break
        # Braces may share a line with other tokens ("JOINT Hips {").
        toks.extend((t, n) for t in s.replace("{", " { ").replace("}", " } ").split())
    last_line = len(raw) or 1
    if not toks or toks[0][0].upper() != "HIERARCHY":
        raise fail(toks[0][1] if toks else 1, "expected 'HIERARCHY'")

    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    end_sites: list[tuple[int, np.ndarray]] = []
    pos = 1

    def need(k: int, what: str):
        if pos + k > len(toks):
            raise fail(toks[-1][1] if toks else last_line, f"hierarchy not closed: expected {what}")

    def parse_numbers(count: int, what: str) -> list[float]:
        nonlocal pos
        need(count, f"{count} numbers after {what}")
        vals = []
        for t, n in toks[pos : pos + count]:
            try:
                vals.append(float(t))
            except ValueError:
                raise fail(n, f"bad {what}: {t!r} is not a number") from None
        pos += count
        return vals

    def parse_block(parent: int, kind: str, lineno: int) -> None:
        """After ``ROOT name`` / ``JOINT name`` / ``End Site``: ``{ ... }``."""
        nonlocal pos
        need(1, "'{'")
        t, n = toks[pos]
        if t != "{":
            raise fail(n, f"expected '{{' after {kind}, got {t!r}")
        pos += 1
        me = -1
        if kind != "End Site":
            me = len(names) - 1
        got_offset = False
        while True:
            need(1, "'}'")
            t, n = toks[pos]
            key = t.upper()
            if t == "}":
                pos += 1
                break
            if key == "OFFSET":
                pos += 1
                vals = parse_numbers(3, "OFFSET")
                got_offset = True
                if me >= 0:
                    offsets[me] = vals
                else:
                    end_sites.append((parent, np.asarray(vals, dtype=np.float64)))
            elif key == "CHANNELS":
                if me < 0:
                    raise fail(n, "CHANNELS inside an End Site")
                pos += 1
                need(1, "a channel count")
                ct, cn = toks[pos]
                try:
                    count = int(ct)
                except ValueError:
                    raise fail(cn, f"CHANNELS needs a count, got {ct!r}") from None
                pos += 1
                if count < 0 or count > 6:
                    raise fail(cn, f"bad channel list: {count} channels (0 to 6 allowed)")
                need(count, f"{count} channel names")
                chans = []
                for c, m in toks[pos : pos + count]:
                    if c.lower() not in _CHANNELS or m != cn:
                        raise fail(cn, f"bad channel list: {c!r} (expected {count} of Xposition ... Zrotation "
                                       "on the CHANNELS line)")
                    chans.append(_CHANNELS[c.lower()])
                if len(set(chans)) != len(chans):
                    raise fail(cn, f"bad channel list: repeated channel in {chans}")
                pos += count
                # Anything else on the CHANNELS line is a miscount.
                if pos < len(toks) and toks[pos][1] == cn and toks[pos][0] not in ("{", "}"):
                    raise fail(cn, f"bad channel list: more names than the count {count}")
                channels[me] = chans
            elif key in ("JOINT", "END"):
                if me < 0:
                    raise fail(n, f"{t} inside an End Site")
                pos += 1
                if key == "END":
                    need(1, "'Site'")
                    if toks[pos][0].upper() != "SITE":
                        raise fail(n, f"expected 'End Site', got 'End {toks[pos][0]}'")
                    pos += 1
                    parse_block(me, "End Site", n)
                else:
                    name = _joint_name(n)
                    names.append(name)
                    parents.append(me)
                    offsets.append([0.0, 0.0, 0.0])
                    channels.append([])
                    parse_block(me, f"JOINT {name}", n)
            elif key == "ROOT":
                raise fail(n, "ROOT in the wrong place (inside another joint)")
            else:
                raise fail(n, f"unexpected {t!r} in the hierarchy")
        if not got_offset:
            raise fail(lineno, f"{kind}: no OFFSET")

    def _joint_name(lineno: int) -> str:
        nonlocal pos
        parts = []
        while pos < len(toks) and toks[pos][1] == lineno and toks[pos][0] != "{":
            parts.append(toks[pos][0])
            pos += 1
        if not parts:
            raise fail(lineno, "JOINT without a name")
        return " ".join(parts)

    while pos < len(toks):
        t, n = toks[pos]
        if t.upper() != "ROOT":
            raise fail(n, f"expected ROOT, got {t!r}" if not names else f"unexpected {t!r} after the hierarchy")
        if names:
            raise fail(n, "a second ROOT: only one skeleton per file is supported")
        pos += 1
        name = _joint_name(n)
        names.append(name)
        parents.append(-1)
        offsets.append([0.0, 0.0, 0.0])
        channels.append([])
        parse_block(-1, f"ROOT {name}", n)
    if not names:
        raise fail(toks[-1][1], "hierarchy has no ROOT")
    if motion_line is None:
        raise fail(last_line, "expected 'MOTION' after the hierarchy")
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise fail(toks[0][1], f"joint names repeat: {dup}")

    # MOTION header.
    rest = [(n, raw[n - 1].strip()) for n in range(motion_line + 1, len(raw) + 1) if raw[n - 1].strip()]

    def header(k: int, key: str, conv):
        if k >= len(rest):
            raise fail(rest[-1][0] if rest else motion_line, "expected 'Frames: N' and 'Frame Time: T'")
        n, line = rest[k]
        m = re.fullmatch(rf"{key}\s*:?\s*(\S+)", line, flags=re.I)
        try:
            if not m:
                raise ValueError
            return conv(m.group(1)), n
        except ValueError:
            raise fail(n, "expected 'Frames: N' and 'Frame Time: T'") from None

    num_frames, lineno = header(0, "Frames", int)
    frame_time, lineno = header(1, r"Frame\s+Time", float)
    if num_frames < 0:
        raise fail(lineno - 1, f"negative frame count {num_frames}")
    if not frame_time > 0 or not math.isfinite(frame_time):
        raise fail(lineno, f"Frame Time must be positive, got {frame_time}")
    rows = rest[2:]
    if len(rows) != num_frames:
        raise fail(rows[-1][0] if rows else lineno, f"header says {num_frames} frames, found {len(rows)}")
    total = sum(len(c) for c in channels)
    motion = _parse_rows(rows, total, fail)
    return BVHMotion(names, parents, np.asarray(offsets, dtype=np.float64), channels, float(frame_time), motion,
                     end_sites, source)


def _parse_rows(rows: list[tuple[int, str]], total: int, fail) -> np.ndarray:
    """``[F, total]`` from the frame lines: one C-level parse (``np.loadtxt``, which also
    checks that every line has the same number of values); on failure a per-line pass
    finds the line to name."""
    F = len(rows)
    if F == 0 or total == 0:
        for lineno, line in rows:
            if line.split():
                raise fail(lineno, f"expected 0 channel values, got {len(line.split())}")
        return np.zeros((F, total))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = np.loadtxt([line for _, line in rows], dtype=np.float64, comments=None, ndmin=2)
        if data.shape == (F, total) and np.isfinite(data).all():
            return data
    except ValueError:
        pass
    for lineno, line in rows:
        try:
            vals = [float(v) for v in line.split()]
        except ValueError:
            raise fail(lineno, "non-numeric motion data") from None
        if len(vals) != total:
            raise fail(lineno, f"expected {total} channel values, got {len(vals)}")
        if not all(math.isfinite(v) for v in vals):
            raise fail(lineno, "NaN or inf in the motion data")
    raise fail(rows[0][0], "motion data unreadable")  # pragma: no cover - the loop finds the line


# --------------------------------------------------------------------------- rates and units


def source_fps(frame_time: float) -> float:
    """``1 / frame_time``, rounded to the nearest integer when within a relative 1e-3 of
    it (files write ``0.0333333`` for 30 fps)."""
    fps = 1.0 / frame_time
    r = round(fps)
    return float(r) if r > 0 and abs(fps - r) < 1e-3 * r else fps


def _times(num_frames: int, src_fps: float, fps: float) -> np.ndarray:
    """Source-frame coordinates of the output frames ``k / fps`` within the clip."""
    duration = (num_frames - 1) / src_fps
    n = int(math.floor(duration * fps + 1e-6)) + 1
    return np.arange(n) * (src_fps / fps)


def _slerp(q0: np.ndarray, q1: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Shortest-path slerp ``[..., 4]`` with ``u`` broadcast over the leading dims."""
    dot = np.sum(q0 * q1, -1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot).clip(max=1.0)
    theta = np.arccos(dot)
    s = np.sin(theta)
    small = s < 1e-8
    safe = np.where(small, 1.0, s)
    w0 = np.where(small, 1.0 - u, np.sin((1.0 - u) * theta) / safe)
    w1 = np.where(small, u, np.sin(u * theta) / safe)
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def resample_local(local_R: np.ndarray, local_t: np.ndarray, src_fps: float, fps: float,
                   method: str = "slerp") -> tuple[np.ndarray, np.ndarray]:
    """Local rotations ``[F, J, 3, 3]`` / translations ``[F, J, 3]`` at ``fps``: slerp and
    linear (``"slerp"``) or the nearest source frame (``"nearest"``)."""
    if method not in ("slerp", "nearest"):
        raise ValueError(f"resample_local: method must be 'slerp' or 'nearest', got {method!r}")
    F = local_R.shape[0]
    x = _times(F, src_fps, fps)
    if method == "nearest":
        idx = np.minimum(np.floor(x + 0.5).astype(int), F - 1)
        return local_R[idx], local_t[idx]
    i0 = np.minimum(np.floor(x + 1e-9).astype(int), F - 1)
    i1 = np.minimum(i0 + 1, F - 1)
    u = np.clip(x - i0, 0.0, 1.0)
    q = matrix_to_quat(torch.from_numpy(np.ascontiguousarray(local_R, dtype=np.float64))).numpy()
    R = quat_to_matrix(torch.from_numpy(_slerp(q[i0], q[i1], u[:, None, None]))).numpy()
    exact = u < 1e-9  # keep source frames bit-exact
    R[exact] = local_R[i0[exact]]
    t = local_t[i0] * (1.0 - u)[:, None, None] + local_t[i1] * u[:, None, None]
    return R, t


def resample_positions(positions: np.ndarray, src_fps: float, fps: float) -> np.ndarray:
    """Joint positions ``[F, J, 3]`` linearly interpolated at ``fps``."""
    F = positions.shape[0]
    x = _times(F, src_fps, fps)
    i0 = np.minimum(np.floor(x + 1e-9).astype(int), F - 1)
    i1 = np.minimum(i0 + 1, F - 1)
    u = np.clip(x - i0, 0.0, 1.0)[:, None, None]
    return positions[i0] * (1.0 - u) + positions[i1] * u


def _skeleton_span(bvh: BVHMotion) -> float:
    """The longest path between two leaves of the skeleton (End Sites included), file units:
    head to toe or hand to hand, about a person's height for a human. Bone lengths are
    those of frame 0 (position channels included); a joint whose position channels change
    over the clip carries the trajectory, not a bone (Bandai's Hips under joint_Root), and
    counts as length 0."""
    J = bvh.num_joints
    t = bvh.local_transforms()[1] if bvh.num_frames else np.broadcast_to(bvh.offsets, (1, J, 3))
    moving = np.ptp(t, axis=0).max(-1) > 1e-6 * (1.0 + np.abs(t).max())
    adj: list[list[tuple[int, float]]] = [[] for _ in range(J)]
    nodes = J
    for j, p in enumerate(bvh.parents):
        if p >= 0:
            w = 0.0 if moving[j] else float(np.linalg.norm(t[0, j]))
            adj[j].append((p, w))
            adj[p].append((j, w))
    for p, off in bvh.end_sites:
        adj.append([(p, float(np.linalg.norm(off)))])
        adj[p].append((nodes, float(np.linalg.norm(off))))
        nodes += 1

    def farthest(src: int) -> tuple[int, float]:
        dist = {src: 0.0}
        stack = [src]
        while stack:
            a = stack.pop()
            for b, w in adj[a]:
                if b not in dist:
                    dist[b] = dist[a] + w
                    stack.append(b)
        far = max(dist, key=dist.get)
        return far, dist[far]

    a, _ = farthest(0)
    return farthest(a)[1]


def unit_scale(bvh: BVHMotion, units: str | float = "auto") -> float:
    """Metres per file unit: ``units`` as a number, a name of :data:`UNIT_SCALES`, or
    ``"auto"``: among m, cm and mm the unit that makes the skeleton's span (longest
    leaf-to-leaf path, about the body height) closest to 1.7 m. Inches are never guessed
    (pass ``units="inch"``); a span outside 1.0-2.5 m after scaling is logged."""
    if isinstance(units, (int, float)):
        if not units > 0:
            raise ValueError(f"units: a scale must be positive, got {units}")
        return float(units)
    if units in UNIT_SCALES:
        return UNIT_SCALES[units]
    if units != "auto":
        raise ValueError(f"units: expected 'auto', {sorted(UNIT_SCALES)} or metres per unit, got {units!r}")
    span = _skeleton_span(bvh)
    if not span > 0:
        raise BVHFormatError(f"{bvh.source}: all OFFSETs are zero; cannot detect the units (pass units=)")
    scale = min((1.0, 0.01, 0.001), key=lambda s: abs(math.log(span * s / 1.7)))
    if not 1.0 <= span * scale <= 2.5:
        log.warning("%s: skeleton span %.3g file units -> %.2f m with units 'auto'; pass units= if wrong",
                    bvh.source, span, span * scale)
    return scale


# --------------------------------------------------------------------------- joint maps

# SMPL-22 joint -> a BVH joint, or (joint a, joint b, t): the point a + t (b - a).
_SIDES = ("left", "right")

BANDAI = {
    "pelvis": "Hips",
    "left_hip": "UpperLeg_L", "right_hip": "UpperLeg_R",
    "spine1": "Spine",
    "left_knee": "LowerLeg_L", "right_knee": "LowerLeg_R",
    # Bandai has two spine joints (Spine, Chest) for SMPL's three: spine2 halfway between.
    "spine2": ("Spine", "Chest", 0.5),
    "left_ankle": "Foot_L", "right_ankle": "Foot_R",
    "spine3": "Chest",
    "left_foot": "Toes_L", "right_foot": "Toes_R",
    "neck": "Neck",
    "left_collar": "Shoulder_L", "right_collar": "Shoulder_R",
    "head": "Head",
    "left_shoulder": "UpperArm_L", "right_shoulder": "UpperArm_R",
    "left_elbow": "LowerArm_L", "right_elbow": "LowerArm_R",
    "left_wrist": "Hand_L", "right_wrist": "Hand_R",
}


def _sided(template: dict[str, object], left: str, right: str) -> dict[str, object]:
    out = {}
    for k, v in template.items():
        for side, word in (("left", left), ("right", right)):
            if k.startswith("{s}"):
                key = side + k[3:]
                out[key] = tuple(x.format(S=word) if isinstance(x, str) else x for x in v) if isinstance(v, tuple) \
                    else v.format(S=word)
        if not k.startswith("{s}"):
            out[k] = v
    return out


# Mixamo (names may carry a "mixamorig:" or other "prefix:"; matching ignores it).
MIXAMO = _sided({
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck", "head": "Head",
    "{s}_hip": "{S}UpLeg", "{s}_knee": "{S}Leg", "{s}_ankle": "{S}Foot", "{s}_foot": "{S}ToeBase",
    "{s}_collar": "{S}Shoulder", "{s}_shoulder": "{S}Arm", "{s}_elbow": "{S}ForeArm", "{s}_wrist": "{S}Hand",
}, "Left", "Right")

# CMU mocap as BVH (the common conversion with LHipJoint / LowerBack / Neck1 joints): the
# same placement as the ASF/AMC map of vmdm.data.formats.cmu (SMPL22_FROM_CMU).
CMU_BVH = _sided({
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": ("Spine1", "Neck", 0.6), "neck": "Neck1",
    "head": "Head",
    "{s}_hip": "{S}UpLeg", "{s}_knee": "{S}Leg", "{s}_ankle": "{S}Foot", "{s}_foot": "{S}ToeBase",
    "{s}_collar": ("{S}Shoulder", "{S}Arm", 0.35), "{s}_shoulder": "{S}Arm", "{s}_elbow": "{S}ForeArm",
    "{s}_wrist": "{S}Hand",
}, "Left", "Right")

# The project's own files (vmdm.export.bvh.write_bvh): SMPL-22 names.
SMPL22_NAMES = {n: n for n in SMPL22.joint_names}

JOINT_MAPS: dict[str, dict[str, object]] = {"bandai": BANDAI, "cmu": CMU_BVH, "mixamo": MIXAMO,
                                            "smpl22": SMPL22_NAMES}
# Joints that tell the maps apart (CMU and Mixamo share most names).
_SIGNATURE = {"bandai": ("UpperLeg_L", "Chest"), "cmu": ("LHipJoint", "Neck1"), "mixamo": ("LeftUpLeg", "Spine2"),
              "smpl22": ("pelvis", "left_collar")}


def _strip(name: str) -> str:
    return name.rsplit(":", 1)[-1]


def _required(jmap: dict[str, object]) -> set[str]:
    out = set()
    for v in jmap.values():
        out.update(x for x in (v[:2] if isinstance(v, tuple) else (v,)))
    return out


def detect_joint_map(names) -> str:
    """The name of the :data:`JOINT_MAPS` entry whose joints all occur in ``names``."""
    have = {_strip(n) for n in names}
    for key in ("bandai", "cmu", "mixamo", "smpl22"):
        if set(_SIGNATURE[key]) <= have and _required(JOINT_MAPS[key]) <= have:
            return key
    raise KeyError(f"no joint map fits these joints (maps: {sorted(JOINT_MAPS)}; pass joint_map= a dict "
                   f"SMPL joint -> BVH joint): {list(names)}")


def to_smpl22(positions: np.ndarray, names, joint_map: str | dict = "auto") -> np.ndarray:
    """``[F, 22, 3]`` SMPL-22 joints from BVH joint positions ``[F, J, 3]`` named ``names``."""
    if isinstance(joint_map, str):
        key = detect_joint_map(names) if joint_map == "auto" else joint_map
        if key not in JOINT_MAPS:
            raise KeyError(f"joint_map: unknown map {joint_map!r}; maps: {sorted(JOINT_MAPS)}")
        jmap = JOINT_MAPS[key]
    else:
        jmap = joint_map
    index = {_strip(n): i for i, n in enumerate(names)}

    def at(name: str) -> np.ndarray:
        if _strip(name) not in index:
            raise KeyError(f"to_smpl22: BVH joint {name!r} not in the file; joints: {list(names)}")
        return positions[:, index[_strip(name)]]

    out = []
    for smpl in SMPL22.joint_names:
        if smpl not in jmap:
            raise KeyError(f"to_smpl22: the joint map has no entry for SMPL joint {smpl!r}")
        v = jmap[smpl]
        if isinstance(v, tuple):
            a, b, t = v
            pa, pb = at(a), at(b)
            out.append(pa + float(t) * (pb - pa))
        else:
            out.append(at(v))
    return np.stack(out, axis=1)


# --------------------------------------------------------------------------- import


def load_bvh_smpl22(
    source: str | os.PathLike | BVHMotion,
    *,
    joint_map: str | dict = "auto",
    fps: float = 20.0,
    units: str | float = "auto",
    resample: str = "slerp",
    retarget: bool = False,
    fps_in: float | None = None,
) -> np.ndarray:
    """A BVH file (or parsed :class:`BVHMotion`) as SMPL-22 joints ``[T, 22, 3]`` float64,
    metres, y up, at ``fps``.

    ``joint_map``: a :data:`JOINT_MAPS` name, ``"auto"`` (detected from the joint names) or
    a dict SMPL joint -> BVH joint / ``(a, b, t)``. ``units``: see :func:`unit_scale`.
    ``resample``: :data:`RESAMPLE_METHODS` (module docstring). ``retarget``: HumanML3D's
    ``uniform_skeleton`` (bone lengths of its target skeleton, trajectory scaled by the
    leg ratio). ``fps_in`` overrides the file's Frame Time.
    """
    bvh = source if isinstance(source, BVHMotion) else read_bvh(source)
    if resample not in RESAMPLE_METHODS:
        raise ValueError(f"resample: expected one of {RESAMPLE_METHODS}, got {resample!r}")
    if not fps > 0:
        raise ValueError(f"fps: must be positive, got {fps}")
    if bvh.num_frames < 1:
        raise BVHFormatError(f"{bvh.source}: no frames")
    src = float(fps_in) if fps_in is not None else bvh.fps
    scale = unit_scale(bvh, units)
    R, t = bvh.local_transforms()
    if resample == "linear":
        pos = resample_positions(forward_kinematics(R, t, bvh.parents)[1], src, fps)
    else:
        R, t = resample_local(R, t, src, fps, resample)
        pos = forward_kinematics(R, t, bvh.parents)[1]
    joints = to_smpl22(pos * scale, bvh.names, joint_map)
    if retarget:
        from vmdm.motion.retarget import uniform_skeleton

        joints = uniform_skeleton(joints)
    return joints


def default_bandai_dir() -> Path | None:
    """``$VMDM_BANDAI_DIR``, else ``shared/data/bandai_namco_2`` in or beside the repository; None if absent."""
    from vmdm.data.formats import find_shared_data

    return find_shared_data("VMDM_BANDAI_DIR", "bandai_namco_2", "data")
