"""Reader and writer for the HumanML3D directory format (and KIT-ML's, same layout).

::

    root/
      new_joints/<id>.npy       [T, J, 3] float32, canonical joint positions
      new_joint_vecs/<id>.npy   [T-1, D] float32, features (``representation.encode``)
      texts/<id>.txt            one caption per line: ``caption#tok/POS tok/POS ...#start#end``
      train.txt val.txt test.txt   one id per line
      Mean.npy Std.npy          feature statistics over the training split

``start``/``end`` are seconds; ``0.0#0.0`` means the whole clip, otherwise the
caption describes the sub-segment ``[start*fps, end*fps)`` of the features.

The reader applies HumanML3D's ``Text2MotionDatasetV2`` filters: a clip is
kept when ``min_len <= frames < max_len`` (40 and 200 at 20 fps); a caption
with start/end tags becomes its own record cropped at ``fps``, kept under the
same length rule; NaN tags count as 0. Cropping to a multiple of the unit
length happens at sampling time (:func:`crop_to_unit`).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vmdm.motion.representation import Normalizer, compute_mean_std, encode, feature_dim
from vmdm.motion.skeleton import DATASET_FPS, SMPL22, Skeleton, get_skeleton

__all__ = [
    "Caption",
    "HumanML3DIndex",
    "MotionRecord",
    "HumanML3DFormatError",
    "crop_to_unit",
    "load_split",
    "parse_text_line",
    "read_ids",
    "read_texts",
    "tokenize",
    "write_clip",
    "write_ids",
    "write_normalizer",
    "write_texts",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class HumanML3DFormatError(ValueError):
    """Malformed file in a HumanML3D-format directory (message names the file)."""


# --------------------------------------------------------------------------- tokens


# Lexicon for the deterministic tagger: word -> (universal POS, lemma). POS
# tags follow spaCy's universal set, as in HumanML3D's texts; like HumanML3D's
# ``process_text`` nouns and verbs are lemmatised (except "left"), other words
# kept as written.
_LEXICON: dict[str, tuple[str, str]] = {}


def _add(pos: str, words: str) -> None:
    for w in words.split():
        lemma = w
        if "=" in w:
            w, lemma = w.split("=")
        _LEXICON[w] = (pos, lemma)


_add("DET", "a an the this that these those his her their its each every another some any both all no")
_add("PRON", "he she they it someone somebody person=person something himself herself themselves them him one")
_add("ADP", "with in on at to from into onto over under up down around across through along off of by for "
     "above below behind near toward towards forward=forward back=back before after while like about out")
_add("CCONJ", "and or but then=then")
_add("SCONJ", "as while=while until if")
_add("AUX", "is are was were be been being has have had does do did can could will would")
_add("PART", "not")
_add("NUM", "two three four five six seven eight nine ten twice once")
_add("ADV", "then again slowly quickly fast briskly quickly gently slightly repeatedly forwards backwards "
     "sideways here there together away also very firmly lightly steadily briefly finally back twice once "
     "backward=backward straight=straight clockwise counterclockwise anticlockwise")
_add("ADJ", "left right both slow quick big small wide high low full deep short long large little other "
     "straight same several few heavy light circular overhead fast forward sideways small big")
_add("NOUN", "man woman person people figure human hand hands=hand arm arms=arm leg legs=leg foot feet=foot "
     "knee knees=knee head body waist hip hips=hip shoulder shoulders=shoulder chest torso back circle "
     "circles=circle line direction step steps=step time times=time place spot floor ground air jack "
     "jacks=jack squat squats=squat lunge lunges=lunge jump jumps=jump punch punches=punch kick kicks=kick "
     "wave bow circle clockwise pushup pushups=pushup push ups=up stance pace path zigzag curve turn "
     "turns=turn motion movement rhythm music side sides=side box ball object chair seat front "
     "stairs stair platform partner crowd fist fists=fist palm palms=palm finger fingers=finger")
# Verbs: inflected forms map to lemmas.
for _lemma, _forms in {
    "walk": "walk walks walked walking", "jog": "jog jogs jogged jogging", "run": "run runs ran running",
    "wave": "wave waves waved waving", "raise": "raise raises raised raising",
    "lower": "lower lowers lowered lowering", "clap": "clap claps clapped clapping",
    "punch": "punch punches punched punching", "throw": "throw throws threw throwing",
    "point": "point points pointed pointing", "squat": "squat squats squatted squatting",
    "lunge": "lunge lunges lunged lunging", "kick": "kick kicks kicked kicking",
    "jump": "jump jumps jumped jumping", "hop": "hop hops hopped hopping",
    "step": "step steps stepped stepping", "bow": "bow bows bowed bowing",
    "sit": "sit sits sat sitting", "stand": "stand stands stood standing",
    "crouch": "crouch crouches crouched crouching", "turn": "turn turns turned turning",
    "dance": "dance dances danced dancing", "sway": "sway sways swayed swaying",
    "bend": "bend bends bent bending", "lift": "lift lifts lifted lifting",
    "circle": "circled circling", "stop": "stop stops stopped stopping",
    "go": "go goes went going", "move": "move moves moved moving", "do": "does did doing done",
    "perform": "perform performs performed performing", "make": "make makes made making",
    "stretch": "stretch stretches stretched stretching", "rotate": "rotate rotates rotated rotating",
    "swing": "swing swings swung swinging", "hold": "hold holds held holding",
    "return": "return returns returned returning", "pause": "pause pauses paused pausing",
    "start": "start starts started starting", "begin": "begin begins began beginning",
    "get": "get gets got getting", "reach": "reach reaches reached reaching",
    "shuffle": "shuffle shuffles shuffled shuffling", "sidestep": "sidestep sidesteps sidestepped sidestepping",
    "strafe": "strafe strafes strafed strafing", "pace": "paces paced pacing",
    "march": "march marches marched marching", "spin": "spin spins spun spinning",
    "greet": "greet greets greeted greeting", "salute": "salute salutes saluted saluting",
    "hinge": "hinge hinges hinged hinging", "pick": "pick picks picked picking",
    "push": "pushes pushed pushing", "complete": "complete completes completed completing",
    "repeat": "repeat repeats repeated repeating", "zigzag": "zigzags zigzagged zigzagging",
    "weave": "weave weaves wove weaving", "face": "face faces faced facing",
    "keep": "keep keeps kept keeping", "continue": "continue continues continued continuing",
    "finish": "finish finishes finished finishing", "come": "come comes came coming",
    "look": "look looks looked looking", "bounce": "bounce bounces bounced bouncing",
    "rock": "rock rocks rocked rocking", "leap": "leap leaps leapt leaping",
    "toss": "toss tosses tossed tossing", "strike": "strike strikes struck striking",
    "exercise": "exercise exercises exercised exercising", "bob": "bob bobs bobbed bobbing",
}.items():
    for _f in _forms.split():
        _LEXICON[_f] = ("VERB", _lemma)


def tokenize(caption: str) -> list[str]:
    """Deterministic ``word/POS`` tokens for a caption, HumanML3D style.

    Lower-cases, drops hyphens and non-alphabetic tokens, tags from a lexicon
    covering the built-in corpus's vocabulary, and falls back on suffix rules
    (``-ly`` adverb, ``-ing``/``-ed`` verb, otherwise noun) for unknown words.
    """
    words = re.findall(r"[a-z]+", caption.lower().replace("-", ""))
    out = []
    for w in words:
        if w in _LEXICON:
            pos, lemma = _LEXICON[w]
        elif w.endswith("ly"):
            pos, lemma = "ADV", w
        elif w.endswith("ing") and len(w) > 5:
            pos, lemma = "VERB", w[:-3]
        elif w.endswith("ed") and len(w) > 4:
            pos, lemma = "VERB", w[:-2]
        else:
            pos, lemma = "NOUN", (w[:-1] if w.endswith("s") and not w.endswith("ss") and len(w) > 3 else w)
        if pos not in ("NOUN", "VERB") or w == "left":
            lemma = w
        out.append(f"{lemma}/{pos}")
    return out


# --------------------------------------------------------------------------- texts


@dataclass(frozen=True)
class Caption:
    caption: str
    tokens: tuple[str, ...]
    start: float = 0.0  # seconds; 0, 0 = whole clip
    end: float = 0.0

    @property
    def whole_clip(self) -> bool:
        return self.start == 0.0 and self.end == 0.0

    def to_line(self) -> str:
        for name, value in (("caption", self.caption), *((f"token {t!r}", t) for t in self.tokens)):
            if "#" in value or "\n" in value:
                raise ValueError(f"{name}: must not contain '#' or a newline, got {value!r}")
        return f"{self.caption}#{' '.join(self.tokens)}#{self.start}#{self.end}"


def _tag(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        return float("nan")
    return v


def parse_text_line(line: str, *, where: str = "<text>") -> Caption:
    """One ``caption#tokens#start#end`` line. Missing or NaN tags count as 0."""
    parts = line.rstrip("\n").split("#")
    caption = parts[0].strip()
    if not caption:
        raise HumanML3DFormatError(f"{where}: empty caption in line {line!r}")
    tokens = tuple(parts[1].split()) if len(parts) > 1 and parts[1].strip() else tuple(tokenize(caption))
    start = _tag(parts[2]) if len(parts) > 2 else 0.0
    end = _tag(parts[3]) if len(parts) > 3 else 0.0
    if len(parts) > 2 and (math.isnan(_tag(parts[2])) and parts[2].strip().lower() != "nan"):
        raise HumanML3DFormatError(f"{where}: start tag {parts[2]!r} is not a number in line {line!r}")
    if len(parts) > 3 and (math.isnan(_tag(parts[3])) and parts[3].strip().lower() != "nan"):
        raise HumanML3DFormatError(f"{where}: end tag {parts[3]!r} is not a number in line {line!r}")
    start = 0.0 if math.isnan(start) else start
    end = 0.0 if math.isnan(end) else end
    return Caption(caption, tokens, start, end)


def read_texts(path) -> list[Caption]:
    path = Path(path)
    if not path.is_file():
        raise HumanML3DFormatError(f"{path}: text file missing")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise HumanML3DFormatError(f"{path}: no captions")
    return [parse_text_line(ln, where=f"{path}:{i + 1}") for i, ln in enumerate(lines)]


def write_texts(path, captions: Iterable) -> None:
    """Captions as strings (tokenised here, whole clip) or :class:`Caption`."""
    lines = []
    for c in captions:
        if isinstance(c, str):
            if not c.strip():
                raise ValueError(f"{path}: empty caption")
            c = Caption(c.strip(), tuple(tokenize(c)))
        lines.append(c.to_line())
    if not lines:
        raise ValueError(f"{path}: no captions to write")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_ids(root, split: str) -> list[str]:
    path = Path(root) / f"{split}.txt"
    if not path.is_file():
        raise HumanML3DFormatError(f"{path}: split file missing (expected one of {SPLITS})")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def write_ids(root, split: str, ids: Sequence[str]) -> None:
    Path(root, f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


# --------------------------------------------------------------------------- writer


def write_clip(
    root,
    clip_id: str,
    joints: np.ndarray,
    captions: Iterable,
    *,
    skeleton: Skeleton = SMPL22,
    features: np.ndarray | None = None,
    feet_threshold: float = 0.002,
) -> np.ndarray:
    """Write one clip's joints, features (encoded here unless given) and texts.

    ``joints`` ``[T, J, 3]`` are stored as given (the built-in corpus passes
    canonical joints, as HumanML3D does). Returns the features.
    """
    root = Path(root)
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", clip_id):
        raise ValueError(f"clip_id: only letters, digits, '_', '-', '.' allowed, got {clip_id!r}")
    joints = np.asarray(joints, dtype=np.float32)
    _check_joint_array(joints, skeleton, f"joints of {clip_id!r}")
    if features is None:
        features = encode(joints.astype(np.float64), skeleton, feet_threshold=feet_threshold).astype(np.float32)
    features = np.asarray(features, dtype=np.float32)
    D = feature_dim(skeleton)
    if features.shape != (joints.shape[0] - 1, D):
        raise ValueError(f"features of {clip_id!r}: expected shape {(joints.shape[0] - 1, D)}, got {features.shape}")
    for sub in ("new_joints", "new_joint_vecs", "texts"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    np.save(root / "new_joints" / f"{clip_id}.npy", joints)
    np.save(root / "new_joint_vecs" / f"{clip_id}.npy", features)
    write_texts(root / "texts" / f"{clip_id}.txt", captions)
    return features


def write_normalizer(root, train_ids: Sequence[str], skeleton: Skeleton = SMPL22) -> Normalizer:
    """Mean.npy / Std.npy from the training clips' features already on disk."""
    root = Path(root)
    feats = [np.load(root / "new_joint_vecs" / f"{i}.npy") for i in train_ids]
    norm = Normalizer(*compute_mean_std(feats, skeleton))
    norm.save(root)
    return norm


# --------------------------------------------------------------------------- reader


def _check_joint_array(joints: np.ndarray, skeleton: Skeleton, where: str) -> None:
    J = skeleton.num_joints
    if joints.ndim != 3 or joints.shape[1:] != (J, 3):
        raise HumanML3DFormatError(
            f"{where}: expected shape [T, {J}, 3] for skeleton {skeleton.name!r}, got {joints.shape}"
        )
    if joints.shape[0] < 2:
        raise HumanML3DFormatError(f"{where}: need at least 2 frames, got {joints.shape[0]}")
    if not np.isfinite(joints).all():
        raise HumanML3DFormatError(f"{where}: contains NaN or inf")


class MotionRecord(dict):
    """A loaded sample. Keys: ``id`` (unique record id), ``clip_id`` (file stem),
    ``features`` ``[F, D]`` float32, ``captions`` list of ``(caption, tokens)``,
    ``start_frame``/``end_frame`` (feature frames of the clip used), ``length``.
    ``record["joints"]`` loads the matching ``[F, J, 3]`` joints from
    ``new_joints`` on first access (frames ``start_frame:end_frame``).
    """

    def __missing__(self, key):
        if key != "joints":
            raise KeyError(key)
        path = self["joints_path"]
        joints = np.load(path).astype(np.float32)
        _check_joint_array(joints, get_skeleton(self["skeleton"]), str(path))
        joints = joints[self["start_frame"] : self["end_frame"]]
        self["joints"] = joints
        return joints


def crop_to_unit(features: np.ndarray, rng: np.random.Generator, unit_length: int = 4) -> np.ndarray:
    """HumanML3D's sampling-time crop: length rounded down to a multiple of
    ``unit_length`` (one unit shorter with probability 1/3), random offset."""
    n = len(features)
    units = n // unit_length
    if rng.random() < 1.0 / 3.0 and units > 1:
        units -= 1
    m = units * unit_length
    if m <= 0:
        raise ValueError(f"features: {n} frames is shorter than unit_length {unit_length}")
    start = int(rng.integers(0, n - m + 1))
    return features[start : start + m]


def load_split(
    root,
    split: str,
    *,
    skeleton: Skeleton | str = SMPL22,
    fps: float | None = None,
    min_len: int | None = None,
    max_len: int = 200,
    load_joints: bool = False,
    skip_bad: bool = False,
) -> list[MotionRecord]:
    """Records of one split, filtered as HumanML3D's training loader does.

    ``fps`` defaults to the skeleton's dataset rate (20 HumanML3D, 12.5 KIT);
    ``min_len`` to 40 (24 for KIT). A clip (feature frames) is kept when
    ``min_len <= frames < max_len``. Whole-clip captions are grouped into one
    record; each captioned sub-segment (non-zero tags) becomes its own record
    ``<clip_id>#<k>``. Bad files raise :class:`HumanML3DFormatError` naming
    the file, or with ``skip_bad=True`` are logged and skipped.
    """
    skeleton = get_skeleton(skeleton)
    if fps is None:
        fps = DATASET_FPS.get(skeleton.name, 20.0)
    if min_len is None:
        min_len = 24 if skeleton.name == "kit21" else 40
    root = Path(root)
    D = feature_dim(skeleton)
    records: list[MotionRecord] = []
    for clip_id in read_ids(root, split):
        try:
            records.extend(_load_clip(root, clip_id, skeleton, D, fps, min_len, max_len))
        except HumanML3DFormatError as e:
            if not skip_bad:
                raise
            log.warning("skipping %s: %s", clip_id, e)
    if load_joints:
        for r in records:
            r["joints"]
    return records


def _load_clip(root: Path, clip_id: str, skeleton: Skeleton, D: int, fps: float, min_len: int, max_len: int):
    vec_path = root / "new_joint_vecs" / f"{clip_id}.npy"
    if not vec_path.is_file():
        raise HumanML3DFormatError(f"{vec_path}: feature file missing")
    try:
        feats = np.load(vec_path)
    except (ValueError, OSError) as e:
        raise HumanML3DFormatError(f"{vec_path}: unreadable ({e})") from None
    if feats.ndim != 2 or feats.shape[1] != D:
        raise HumanML3DFormatError(
            f"{vec_path}: expected shape [F, {D}] for skeleton {skeleton.name!r}, got {feats.shape}"
        )
    if not np.isfinite(feats).all():
        raise HumanML3DFormatError(f"{vec_path}: contains NaN or inf")
    feats = feats.astype(np.float32, copy=False)
    captions = read_texts(root / "texts" / f"{clip_id}.txt")
    joints_path = root / "new_joints" / f"{clip_id}.npy"

    def make(rec_id, start, end, caps):
        return MotionRecord(
            id=rec_id, clip_id=clip_id, features=feats[start:end], captions=caps,
            start_frame=start, end_frame=end, length=end - start,
            joints_path=joints_path, skeleton=skeleton.name,
        )

    out = []
    n = len(feats)
    whole = [(c.caption, list(c.tokens)) for c in captions if c.whole_clip]
    if whole and min_len <= n < max_len:
        out.append(make(clip_id, 0, n, whole))
    for k, c in enumerate(captions):
        if c.whole_clip:
            continue
        start, end = int(c.start * fps), min(int(c.end * fps), n)
        if min_len <= end - start < max_len:
            out.append(make(f"{clip_id}#{k}", start, end, [(c.caption, list(c.tokens))]))
    return out


class HumanML3DIndex:
    """A HumanML3D-format directory: splits, statistics and records."""

    def __init__(self, root, skeleton: Skeleton | str = SMPL22, fps: float | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: not a directory")
        self.skeleton = get_skeleton(skeleton)
        self.fps = fps if fps is not None else DATASET_FPS.get(self.skeleton.name, 20.0)

    def ids(self, split: str) -> list[str]:
        return read_ids(self.root, split)

    def load_split(self, split: str, **kw) -> list[MotionRecord]:
        return load_split(self.root, split, skeleton=self.skeleton, fps=self.fps, **kw)

    def normalizer(self) -> Normalizer:
        return Normalizer.load(self.root)

    def joints(self, clip_id: str) -> np.ndarray:
        path = self.root / "new_joints" / f"{clip_id}.npy"
        if not path.is_file():
            raise HumanML3DFormatError(f"{path}: joint file missing")
        j = np.load(path)
        _check_joint_array(j, self.skeleton, str(path))
        return j.astype(np.float32, copy=False)

    def features(self, clip_id: str) -> np.ndarray:
        return np.load(self.root / "new_joint_vecs" / f"{clip_id}.npy")

    def captions(self, clip_id: str) -> list[Caption]:
        return read_texts(self.root / "texts" / f"{clip_id}.txt")
