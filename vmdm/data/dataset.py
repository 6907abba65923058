"""Training datasets: one class for the 2D-only dataset, HumanML3D folders and video folders.

``MotionDataset(root, split, mode=...)`` serves three training regimes:

* ``"3d"``: ground-truth features normalised with the ground-truth Mean/Std (the usual
  MDM setting). Works on the project's 2D-only dataset (its ``gt/`` part) and on any
  HumanML3D-format folder.
* ``"teacher"``: the teacher lift's features normalised with the teacher Mean/Std, plus the
  2D observations (a model trained on the noisy lifts as if they were 3D data).
* ``"2d"``: the same inputs as ``"teacher"``; 3D ground truth is never opened. This is the
  VideoMDM setting and also the only mode of video folders.

Every item is cropped to a multiple of ``unit_length`` frames and at most ``max_frames``,
with one random window shared by all per-frame fields. :func:`collate` pads a batch:

``text`` list[str] (one random caption per clip), ``ids`` list[str], ``lengths``
LongTensor[B] (feature frames), ``mask`` BoolTensor[B, F], ``motion`` [B, F, D]
(normalised), ``keypoints`` [B, F, J, 2], ``weights`` [B, F, J] (detected x confidence^2,
zero on padding), ``camera`` [B, 3, 4] (or [B, F, 3, 4] for per-frame cameras),
``intrinsics`` [B, 4] only when keypoints are in pixels, ``gt_joints`` [B, F, J, 3] only
when asked for and allowed. Keypoints are normalised image coordinates unless
``pixel_keypoints=True``.

Frames: the camera is expressed in the frame of ``decode(denormalised motion)`` *of the
crop* (which restarts at the origin facing +z), so projecting the decoded crop through
``camera`` gives ``keypoints`` up to detector noise and teacher error; ``gt_joints`` are
in the frame of the decoded ground-truth crop. See :func:`window_frame`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from vmdm.motion.kinematics import rotation_about_y
from vmdm.motion.representation import Normalizer, check_feature_convention, decode
from vmdm.motion.skeleton import SMPL22, get_skeleton

__all__ = [
    "MotionDataset",
    "collate",
    "GTStore",
    "NpzGTStore",
    "GroundTruthAccessError",
    "detect_format",
    "window_frame",
    "camera_to_window",
    "points_to_window",
]

log = logging.getLogger(__name__)


def check_corpus_convention(root) -> None:
    """A corpus this project generated (it has ``meta.jsonl``) records its feature
    convention in ``features.json``; a HumanML3D folder from elsewhere carries
    HumanML3D's own features and is taken as it is."""
    root = Path(root)
    if not (root / "meta.jsonl").is_file():
        return
    rec = json.loads((root / "features.json").read_text()) if (root / "features.json").is_file() else {}
    check_feature_convention(rec, root)

MODES = ("3d", "teacher", "2d")


class GroundTruthAccessError(PermissionError):
    """Raised when code tries to read 3D ground truth in mode ``"2d"``."""


def detect_format(root: str | os.PathLike) -> str:
    """``"2d"`` (project 2D-only dataset), ``"video"`` or ``"humanml3d"``."""
    root = Path(root)
    if (root / "vmdm_2d.json").is_file():
        return "2d"
    if (root / "video_format.json").is_file():
        return "video"
    if (root / "new_joint_vecs").is_dir():
        return "humanml3d"
    raise FileNotFoundError(
        f"{root}: not a dataset folder (expected vmdm_2d.json, video_format.json or new_joint_vecs/)"
    )


class GTStore(Protocol):
    """Source of 3D ground truth for a 2D-only dataset (a test can substitute its own)."""

    def load(self, split: str) -> dict[str, np.ndarray]: ...

    def normalizer(self) -> Normalizer: ...


class NpzGTStore:
    """Reads ``gt/<split>.npz`` and ``gt/Mean.npy``/``Std.npy``; touches nothing until asked."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root) / "gt"

    def load(self, split: str) -> dict[str, np.ndarray]:
        path = self.root / f"{split}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ground-truth file missing")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def normalizer(self) -> Normalizer:
        return Normalizer.load(self.root)


def window_frame(clip_features: np.ndarray, start: int, skeleton=SMPL22) -> tuple[np.ndarray, np.ndarray]:
    """Where a crop's own frame sits in its clip's frame.

    ``decode`` of features cropped at ``start`` restarts the root at the xz origin facing
    +z, so ``decode(f[start:])`` is the clip's ``decode(f)[start:]`` moved by a rotation
    about y and a horizontal shift: ``X_clip = M @ X_window + p``. ``clip_features`` are raw
    (unnormalised) features of the clip from frame 0 (at least ``start + 1`` frames).
    Returns ``(M [3, 3], p [3])``.
    """
    if start == 0:
        return np.eye(3), np.zeros(3)
    f = torch.from_numpy(np.asarray(clip_features[: start + 1], dtype=np.float64))
    yaw = -2.0 * f[:start, 0].sum()
    root = decode(f, skeleton)[start, 0]
    p = torch.stack([root[0], torch.zeros((), dtype=root.dtype), root[2]])
    return rotation_about_y(yaw).numpy(), p.numpy()


def camera_to_window(camera: np.ndarray, M: np.ndarray, p: np.ndarray) -> np.ndarray:
    """An extrinsic ``[..., 3, 4]`` for clip-frame points, rewritten for window-frame points."""
    R, t = camera[..., :3], camera[..., 3]
    return np.concatenate([R @ M, (R @ p + t)[..., None]], axis=-1).astype(np.float32)


def points_to_window(points: np.ndarray, M: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Clip-frame points ``[..., 3]`` -> the crop's frame (see :func:`window_frame`)."""
    return ((points - p) @ M).astype(np.float32)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


class MotionDataset(Dataset):
    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        mode: str = "2d",
        max_frames: int = 196,
        unit_length: int = 4,
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        random_crop: bool = True,
        return_gt: bool = False,
        gt_store: GTStore | None = None,
        pixel_keypoints: bool = False,
        skip_bad: bool = False,
        skeleton=SMPL22,
    ):
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if unit_length < 1 or max_frames < unit_length:
            raise ValueError(f"max_frames ({max_frames}) must be >= unit_length ({unit_length}) >= 1")
        if mode == "2d" and return_gt:
            raise GroundTruthAccessError("return_gt=True is not allowed in mode '2d' (3D ground truth is off limits)")
        self.root = Path(root)
        self.split = split
        self.mode = mode
        self.max_frames = max_frames
        self.unit_length = unit_length
        self.random_crop = random_crop
        self.return_gt = return_gt
        self.pixel_keypoints = pixel_keypoints
        self.skeleton = get_skeleton(skeleton)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.kind = detect_format(self.root)
        if self.kind == "humanml3d":
            self._init_humanml3d(skip_bad)
        elif self.kind == "video":
            self._init_video(skip_bad)
        else:
            self._init_2d(gt_store)
        # Clips too short for one unit cannot be cropped; drop them once, here.
        keep = [i for i in range(len(self._ids)) if self._nframes(i) >= unit_length]
        if len(keep) < len(self._ids):
            log.info("%s/%s: dropping %d clips shorter than %d frames", root, split, len(self._ids) - len(keep), unit_length)
        self._index = keep

    # ------------------------------------------------------------------ loaders

    def _init_2d(self, gt_store):
        meta = json.loads((self.root / "vmdm_2d.json").read_text())
        if meta.get("format") != "vmdm-2d-1":
            raise ValueError(f"{self.root / 'vmdm_2d.json'}: format {meta.get('format')!r}, expected 'vmdm-2d-1'")
        check_feature_convention(meta, self.root / "vmdm_2d.json")
        self.meta = meta
        obs = _load_npz(self.root / f"obs_{self.split}.npz")
        self._obs = obs
        self._ids = [str(i) for i in obs["ids"]]
        self._off = obs["feat_offsets"]
        self._joff = obs["joint_offsets"]
        self._captions = self._read_captions(self.root / "texts.jsonl")
        self._gt = None
        if self.mode == "2d":
            self._gt_store = None  # never consulted in this mode
            self.normalizer = Normalizer.load(self.root / "teacher")
            self._motion = obs["teacher_features"]
            return
        self._gt_store = gt_store if gt_store is not None else NpzGTStore(self.root)
        if self.mode == "3d" or self.return_gt:
            self._gt = self._gt_store.load(self.split)
            if [str(i) for i in self._gt["ids"]] != self._ids:
                raise ValueError(f"{self.root}: gt/{self.split}.npz clip ids differ from obs_{self.split}.npz")
        if self.mode == "3d":
            self.normalizer = self._gt_store.normalizer()
            self._motion = self._gt["gt_features"]
        else:
            self.normalizer = Normalizer.load(self.root / "teacher")
            self._motion = obs["teacher_features"]

    def _init_video(self, skip_bad):
        if self.mode == "3d":
            raise ValueError(f"{self.root}: a video folder has no 3D ground truth; use mode '2d' or 'teacher'")
        if self.return_gt:
            raise GroundTruthAccessError(f"{self.root}: a video folder has no 3D ground truth (return_gt)")
        from vmdm.data.formats.video import load_video_dataset

        packed, self.normalizer, captions = load_video_dataset(self.root, self.split, skip_bad=skip_bad)
        self.meta = {"format": "vmdm-video-1"}
        self._obs = packed
        self._ids = [str(i) for i in packed["ids"]]
        self._off = packed["feat_offsets"]
        self._joff = packed["joint_offsets"]
        self._captions = captions
        self._gt = None
        self._motion = packed["teacher_features"]

    def _init_humanml3d(self, skip_bad):
        if self.mode != "3d":
            raise ValueError(f"{self.root}: a HumanML3D folder has only 3D data; use mode '3d', not {self.mode!r}")
        from vmdm.data.formats.humanml3d import HumanML3DIndex

        check_corpus_convention(self.root)
        index = HumanML3DIndex(self.root, self.skeleton)
        self.meta = {"format": "humanml3d"}
        self.normalizer = index.normalizer()
        self._records = index.load_split(self.split, load_joints=self.return_gt, skip_bad=skip_bad)
        self._ids = [r["id"] for r in self._records]
        self._captions = {r["id"]: [c for c, _ in r["captions"]] for r in self._records}

    @staticmethod
    def _read_captions(path: Path) -> dict[str, list[str]]:
        out = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                rec = json.loads(line)
                caps = [c for c in rec.get("captions", []) if c.strip()]
                if not caps:
                    raise ValueError(f"{path}:{n}: clip {rec.get('id')!r} has no non-empty caption")
                out[str(rec["id"])] = caps
        return out

    # ------------------------------------------------------------------ items

    def _nframes(self, i: int) -> int:
        if self.kind == "humanml3d":
            return len(self._records[i]["features"])
        return int(self._off[i + 1] - self._off[i])

    def __len__(self) -> int:
        return len(self._index)

    @property
    def ids(self) -> list[str]:
        return [self._ids[i] for i in self._index]

    def limit_clips(self, n: int | None) -> "MotionDataset":
        """Keep only the first ``n`` clips (``None``: all); returns ``self``."""
        if n is not None:
            if n < 1:
                raise ValueError(f"limit_clips: expected >= 1, got {n}")
            self._index = self._index[:n]
        return self

    def captions(self, clip_id: str) -> list[str]:
        """All captions of a clip (items draw one of them at random)."""
        return list(self._captions[clip_id])

    @property
    def feature_dim(self) -> int:
        return self.normalizer.dim

    @staticmethod
    def worker_init_fn(worker_id: int) -> None:
        """Give each DataLoader worker its own crop/caption random stream."""
        info = torch.utils.data.get_worker_info()
        if info is not None:
            info.dataset.rng = np.random.default_rng(torch.initial_seed() % (2**32) + worker_id)

    def _window(self, n: int) -> tuple[int, int]:
        L = min(n, self.max_frames) // self.unit_length * self.unit_length
        start = int(self.rng.integers(0, n - L + 1)) if self.random_crop else 0
        return start, L

    def __getitem__(self, idx: int) -> dict:
        i = self._index[idx]
        cid = self._ids[i]
        caps = self._captions.get(cid) if self.kind != "humanml3d" else self._captions[cid]
        if not caps:
            raise ValueError(f"{self.root}: clip {cid!r} has no caption")
        text = caps[int(self.rng.integers(len(caps)))]
        n = self._nframes(i)
        s, L = self._window(n)
        item: dict = {"id": cid, "text": text, "length": L}
        if self.kind == "humanml3d":
            rec = self._records[i]
            item["motion"] = self.normalizer.normalize(rec["features"][s : s + L]).astype(np.float32)
            if self.return_gt:
                # new_joints are in the frame of the whole file; records may start later.
                s0 = rec["start_frame"] + s
                full = np.load(self.root / "new_joint_vecs" / f"{rec['clip_id']}.npy")
                M, p = window_frame(full, s0, self.skeleton)
                item["gt_joints"] = points_to_window(np.asarray(rec["joints"][s : s + L]), M, p)
            return item
        c0 = int(self._off[i])
        a = c0 + s
        b = a + L
        obs = self._obs
        M, p = window_frame(self._motion[c0 : a + 1], s, self.skeleton)
        item["motion"] = self.normalizer.normalize(self._motion[a:b]).astype(np.float32)
        kp = obs["keypoints"][a:b].astype(np.float32)
        sc = obs["scores"][a:b].astype(np.float32)
        item["weights"] = (sc > 0) * sc**2
        if self.pixel_keypoints:
            K = obs["intrinsics"][i].astype(np.float32)
            kp = kp * K[:2] + K[2:]
            item["intrinsics"] = K
        item["keypoints"] = kp
        cams = self._gt if self.mode == "3d" else obs
        cam = cams["camera_frames"][a:b] if "camera_frames" in cams else cams["camera"][i]
        item["camera"] = camera_to_window(cam.astype(np.float64), M, p)
        if self.return_gt:
            ja = int(self._joff[i]) + s
            gf = self._gt["gt_features"]
            Mg, pg = (M, p) if self.mode == "3d" else window_frame(gf[c0 : a + 1], s, self.skeleton)
            item["gt_joints"] = points_to_window(self._gt["gt_joints"][ja : ja + L].astype(np.float64), Mg, pg)
        return item


def collate(batch: list[dict]) -> dict:
    """Pad a list of :class:`MotionDataset` items into batched tensors (see module doc)."""
    if not batch:
        raise ValueError("collate: empty batch")
    B = len(batch)
    lengths = torch.tensor([b["length"] for b in batch], dtype=torch.long)
    Fm = int(lengths.max())
    mask = torch.arange(Fm)[None] < lengths[:, None]
    out: dict = {"text": [b["text"] for b in batch], "ids": [b["id"] for b in batch], "lengths": lengths, "mask": mask}

    def pad(key):
        first = np.asarray(batch[0][key])
        arr = np.zeros((B, Fm) + first.shape[1:], dtype=np.float32)
        for k, b in enumerate(batch):
            arr[k, : b["length"]] = b[key]
        return torch.from_numpy(arr)

    out["motion"] = pad("motion")
    for key in ("keypoints", "weights", "gt_joints"):
        if key in batch[0]:
            out[key] = pad(key)
    if "camera" in batch[0]:
        cams = [np.asarray(b["camera"]) for b in batch]
        if all(c.ndim == 2 for c in cams):
            out["camera"] = torch.from_numpy(np.stack(cams).astype(np.float32))
        else:
            # Per-frame cameras: static ones are repeated; padding repeats the last camera
            # so projecting padded frames stays finite (their weights are zero anyway).
            arr = np.zeros((B, Fm, 3, 4), dtype=np.float32)
            for k, (c, b) in enumerate(zip(cams, batch)):
                c = np.broadcast_to(c, (b["length"], 3, 4)) if c.ndim == 2 else c
                arr[k, : b["length"]] = c
                arr[k, b["length"] :] = c[-1]
            out["camera"] = torch.from_numpy(arr)
    if "intrinsics" in batch[0]:
        out["intrinsics"] = torch.from_numpy(np.stack([b["intrinsics"] for b in batch]).astype(np.float32))
    return out
