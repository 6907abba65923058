"""Bandai-Namco motion capture (BVH) -> a HumanML3D-format folder.

``python -m vmdm.data.build.prepare bandai --root DIR --out OUT`` reads the
Bandai-Namco-Research-Motiondataset BVH clips (dataset-2, or dataset-1, or both) and
writes what :class:`vmdm.data.dataset.MotionDataset` reads in mode ``"3d"``::

    OUT/new_joints/<id>.npy      [T, 22, 3] float32, 20 fps, HumanML3D's skeleton, canonical frame
    OUT/new_joint_vecs/<id>.npy  [T-1, 263] float32 (representation.encode)
    OUT/texts/<id>.txt           3 captions, caption#word/POS ...#0.0#0.0
    OUT/train.txt val.txt test.txt, Mean.npy, Std.npy (train only), features.json,
    OUT/bandai_meta.json         labels per clip, padding/cropping, split seed, source, licence

``DIR`` is the shared copy (``DIR/data/*.bvh.gz``, ``DIR/cfg``), one dataset folder of the
publisher's repository (``data/*.bvh``), or a clone of the whole repository (its
``dataset/Bandai-Namco-Research-Motiondataset-{1,2}/data``). File names are
``dataset-N_{content}_{style}_{id}.bvh[.gz]``; labels come from the ``.json`` next to
each clip (indices into ``cfg/*_label.txt``) when present, else from the name.

Choices (docs/data.md, "Real motion capture: Bandai-Namco (BVH)"): slerp resampling to
20 fps, centimetres to metres, the Bandai joint map of :mod:`vmdm.data.formats.bvh`,
HumanML3D's ``uniform_skeleton`` (on by default), canonicalised like HumanML3D (floor at
y = 0, root at the xz origin facing +z at frame 0). Clips shorter than 2 s (HumanML3D's
loader drops them) are padded with held poses, clips too long for its loader (10 s)
cut, splits stratified over (content, style) with a seed, captions drawn per clip.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmdm.cli import REQUIRED, ConfigError, field
from vmdm.data.build.staging import staged_folder

__all__ = ["BandaiConfig", "BandaiClip", "build_bandai", "find_clips", "make_captions", "split_clips", "tag_caption"]

LICENCE = ("Bandai-Namco-Research-Motiondataset, (c) 2022 Bandai Namco Research Inc., CC BY-NC 4.0 "
           "(non-commercial use, attribution required); derived data keep the licence")
SOURCE = "BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset"
_NAME = re.compile(r"^(?:(dataset-(\d+))_)?([A-Za-z0-9-]+)_([A-Za-z0-9-]+)_(\d+)\.bvh(\.gz)?$")
SHORT_CLIPS = ("pad", "keep", "drop")


@dataclass
class BandaiConfig:
    """Options of ``python -m vmdm.data.build.prepare bandai``."""

    root: str = field(REQUIRED, "the Bandai-Namco data: the shared copy, one dataset folder of the publisher's "
                                "repository or a clone of the whole repository", metavar="DIR")
    out: str = field(REQUIRED, "the HumanML3D-format folder to write", metavar="OUT")
    clips: list[str] | None = field(None, "only clips whose name (without dataset-N_ and .bvh[.gz]) matches one of "
                                          "these glob patterns, comma-separated (e.g. 'walk_*,run_normal_00?')",
                                    sep=",")
    limit: int | None = field(None, "at most this many clips (the first in name order, after --clips)")
    seed: int = field(0, "seed of the splits and of the caption draws")
    val_fraction: float = field(0.1, "fraction of each (content, style) group in val")
    test_fraction: float = field(0.1, "fraction of each (content, style) group in test")
    captions_per_clip: int = field(3, "captions drawn per clip")
    retarget: bool = field(True, "put every clip on HumanML3D's skeleton (uniform_skeleton)")
    short_clips: str = field("pad", "clips under --min-seconds: 'pad' (hold the first and last pose), 'keep' "
                                    "(HumanML3D's loader then skips them), 'drop'", choices=SHORT_CLIPS)
    min_seconds: float = field(2.0, "HumanML3D's minimum clip length (40 feature frames at 20 fps)")
    min_motion_seconds: float = field(0.8, "clips with less captured motion than this are dropped, not padded")
    max_seconds: float = field(9.95, "longer clips are cut to this (HumanML3D's loader takes < 200 feature frames)")
    overwrite: bool = field(False, "replace OUT if it exists")
    progress: bool = field(True, "show a progress bar")


# --------------------------------------------------------------------------- finding clips


@dataclass
class BandaiClip:
    id: str  # file stem, e.g. "dataset-2_walk_normal_001"
    path: Path
    dataset: str  # "dataset-2", "dataset-1" or "" (name without the prefix)
    content: str
    style: str
    take: str


def _labels(folder: Path, kind: str) -> list[str] | None:
    path = folder / "cfg" / f"{kind}_label.txt"
    if not path.is_file():
        return None
    return [re.sub(r"^dataset-\d+_", "", ln.strip()) for ln in path.read_text().splitlines() if ln.strip()]


def _dataset_folders(root: Path) -> list[Path]:
    """Folders holding ``data/`` (or the clips themselves) under ``root``."""
    if (root / "data").is_dir():
        return [root]
    nested = sorted(p for p in (root / "dataset").glob("Bandai-Namco-Research-Motiondataset-*") if p.is_dir()) \
        if (root / "dataset").is_dir() else []
    if nested:
        return nested
    if any(_NAME.match(p.name) for p in root.iterdir()):
        return [root]
    raise FileNotFoundError(f"{root}: no Bandai-Namco BVH clips (expected data/*.bvh[.gz], dataset/Bandai-Namco-"
                            "Research-Motiondataset-*/data/ or the clips themselves)")


def find_clips(root: str | os.PathLike, patterns: list[str] | None = None,
               limit: int | None = None) -> list[BandaiClip]:
    """The clips under ``root`` (both name forms, plain or ``.gz``; a clip present as both is read once, ``.gz``
    preferred), filtered by glob ``patterns`` over ``content_style_take`` and cut to ``limit``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    clips: dict[str, BandaiClip] = {}
    for folder in _dataset_folders(root):
        data = folder / "data" if (folder / "data").is_dir() else folder
        contents, styles = _labels(folder, "content"), _labels(folder, "style")
        files = sorted(data.iterdir())
        if not any(_NAME.match(p.name) for p in files) and (folder / "data.zip").is_file():
            raise FileNotFoundError(f"{folder}: the clips are still in data.zip; extract it into {data}")
        for p in files:
            m = _NAME.match(p.name)
            if not m:
                continue
            dataset, _, content, style, take, gz = m.groups()
            stem = p.name[: -len(".bvh.gz")] if gz else p.name[: -len(".bvh")]
            labels = p.with_name(stem + ".json")
            if labels.is_file() and contents and styles:
                rec = json.loads(labels.read_text())
                try:
                    content, style = contents[int(rec["content"])], styles[int(rec["style"])]
                except (KeyError, IndexError, ValueError, TypeError):
                    raise ValueError(f"{labels}: expected {{\"content\": i, \"style\": j}} indexing cfg/*_label.txt, "
                                     f"got {rec}") from None
                if (content, style) != tuple(m.group(k) for k in (3, 4)):
                    raise ValueError(f"{labels}: labels {content!r}/{style!r} differ from the file name {p.name!r}")
            clip = BandaiClip(stem, p, dataset or "", content, style, take)
            if stem not in clips or gz:
                clips[stem] = clip
    out = sorted(clips.values(), key=lambda c: c.id)
    if patterns:
        out = [c for c in out if any(fnmatch.fnmatchcase(f"{c.content}_{c.style}_{c.take}", pat) or
                                     fnmatch.fnmatchcase(c.id, pat) for pat in patterns)]
    if limit is not None:
        out = out[:limit]
    if not out:
        raise FileNotFoundError(f"{root}: no clip matches {patterns}" if patterns else f"{root}: no clips")
    return out


# --------------------------------------------------------------------------- splits


def _stable_seed(*parts) -> list[int]:
    return [int(p) if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts]


def split_clips(clips: list[BandaiClip], seed: int = 0, val: float = 0.1, test: float = 0.1) -> dict[str, str]:
    """``{clip id: split}``, stratified over (content, style): each group, in name order,
    is shuffled with its own generator (seeded by ``seed`` and the group, so groups do not
    depend on each other) and gets ``round(n * val)`` val and ``round(n * test)`` test
    clips, the rest train."""
    if not (0 <= val and 0 <= test and val + test < 1):
        raise ValueError(f"val/test fractions must be >= 0 and sum to < 1, got {val} and {test}")
    groups: dict[tuple[str, str], list[str]] = {}
    for c in clips:
        groups.setdefault((c.content, c.style), []).append(c.id)
    out = {}
    for key in sorted(groups):
        ids = sorted(groups[key])
        order = np.random.default_rng(_stable_seed(seed, "split", *key)).permutation(len(ids))
        n_val, n_test = int(round(len(ids) * val)), int(round(len(ids) * test))
        for rank, i in enumerate(order):
            out[ids[i]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return out


# --------------------------------------------------------------------------- captions

# Content -> verb phrases (third person singular; "{pos}" is the subject's possessive).
_CONTENT: dict[str, list[str]] = {
    "walk": ["walks forward", "walks straight ahead", "walks forward a few steps", "takes a walk forward"],
    "walk-turn-left": ["walks forward and turns left", "walks and then turns to the left",
                       "walks ahead, then turns left", "walks forward and makes a left turn"],
    "walk-turn-right": ["walks forward and turns right", "walks and then turns to the right",
                        "walks ahead, then turns right", "walks forward and makes a right turn"],
    "run": ["runs forward", "runs straight ahead", "runs forward a short distance", "jogs forward quickly"],
    "dash": ["dashes forward", "sprints forward", "runs forward very fast"],
    "walk-back": ["walks backward", "walks backwards a few steps", "steps backward"],
    "walk-left": ["walks to the left", "walks sideways to the left", "steps to the left"],
    "walk-right": ["walks to the right", "walks sideways to the right", "steps to the right"],
    "wave-both-hands": ["waves with both hands", "waves both hands", "waves both arms above {pos} head",
                        "raises both hands and waves them"],
    "wave-left-hand": ["waves with {pos} left hand", "waves {pos} left hand", "raises {pos} left hand and waves",
                       "waves hello with {pos} left hand"],
    "wave-right-hand": ["waves with {pos} right hand", "waves {pos} right hand", "raises {pos} right hand and waves",
                        "waves hello with {pos} right hand"],
    "raise-up-both-hands": ["raises both hands", "raises both arms up", "lifts both hands above {pos} head",
                            "puts both hands up"],
    "raise-up-left-hand": ["raises {pos} left hand", "raises {pos} left arm up", "lifts {pos} left hand up",
                           "puts {pos} left hand up"],
    "raise-up-right-hand": ["raises {pos} right hand", "raises {pos} right arm up", "lifts {pos} right hand up",
                            "puts {pos} right hand up"],
    "bow": ["bows", "bows forward", "makes a bow"],
    "bye": ["waves goodbye", "waves goodbye with one hand", "says goodbye with a wave"],
    "byebye": ["waves goodbye with both hands", "waves both hands to say goodbye", "says goodbye waving both hands"],
    "guide": ["gestures to show the way", "points the way with {pos} hand", "guides someone with a hand gesture"],
    "respond": ["responds with a gesture", "answers with a gesture", "reacts with a short gesture"],
    "call": ["calls someone over with {pos} hand", "beckons someone to come", "waves someone over"],
    "punch": ["punches forward", "throws a punch", "punches with {pos} fist"],
    "kick": ["kicks forward", "kicks with {pos} leg", "does a kick"],
    "slash": ["slashes with a sword", "makes a slashing motion", "swings an imaginary sword"],
    "dance-long": ["dances", "performs a dance", "dances energetically"],
    "dance-short": ["dances briefly", "does a short dance", "performs a short dance"],
}

# Style -> (adjectives before "person", adverbials after the verb phrase, relative clauses).
# Empty strings (normal) mean no style words at all.
_STYLE: dict[str, tuple[list[str], list[str], list[str]]] = {
    "normal": (["", ""], ["", "normally", "in a normal way"], [""]),
    "active": (["energetic", "lively", "active"], ["energetically", "with a lot of energy", "in a lively way"],
               ["who is full of energy", "who seems very energetic"]),
    "elderly": (["elderly", "old"], ["slowly like an old person", "in an elderly manner", "like an elderly person"],
                ["who looks old", "who moves like an elderly person"]),
    "old": (["elderly", "old"], ["slowly like an old person", "like an elderly person"], ["who looks old"]),
    "exhausted": (["exhausted", "tired", "worn out"], ["wearily", "as if exhausted", "in an exhausted way"],
                  ["who looks exhausted", "who seems very tired"]),
    "tired": (["tired", "exhausted"], ["wearily", "as if tired"], ["who looks tired", "who seems worn out"]),
    "feminine": (["feminine"], ["in a feminine way", "in a feminine manner", "gracefully"],
                 ["who moves in a feminine way"]),
    "masculine": (["masculine"], ["in a masculine way", "in a masculine manner", "in a manly way"],
                  ["who moves in a masculine way"]),
    "masculinity": (["masculine"], ["in a masculine way", "in a manly way"], ["who moves in a masculine way"]),
    "youthful": (["young", "youthful"], ["in a youthful way", "like a young person", "with youthful energy"],
                 ["who looks young", "who moves in a youthful way"]),
    "childish": (["childish"], ["like a child", "in a childish way"], ["who acts like a child"]),
    "children": (["childlike"], ["like a child", "in a childish way"], ["who acts like a child"]),
    "happy": (["happy", "cheerful"], ["happily", "cheerfully"], ["who looks happy", "who seems cheerful"]),
    "sad": (["sad", "gloomy"], ["sadly", "in a sad way"], ["who looks sad", "who seems unhappy"]),
    "angry": (["angry"], ["angrily", "in an angry way"], ["who looks angry", "who seems furious"]),
    "proud": (["proud"], ["proudly", "with pride"], ["who looks proud", "who is full of pride"]),
    "not-confident": (["timid", "insecure"], ["timidly", "without confidence"], ["who lacks confidence",
                                                                                 "who looks unsure"]),
    "musical": (["theatrical"], ["theatrically", "like in a musical"], ["who acts like in a musical"]),
    "giant": (["huge", "heavy"], ["heavily like a giant", "like a giant"], ["who moves like a giant"]),
    "chimpira": (["thuggish"], ["like a thug", "with a swagger"], ["who acts like a street thug"]),
}

# Subjects: (noun phrase without article, possessive), HumanML3D's usual ones.
_SUBJECTS = [("person", "his"), ("person", "their"), ("man", "his"), ("someone", "their")]


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _phrase(content: str) -> list[str]:
    return _CONTENT.get(content, [f"performs a {content.replace('-', ' ')} motion",
                                  f"does a {content.replace('-', ' ')} movement"])


def _style(style: str) -> tuple[list[str], list[str], list[str]]:
    words = style.replace("-", " ")
    return _STYLE.get(style, ([words], [f"in a {words} style", f"in a {words} way"], [f"who moves in a {words} way"]))


def _sentence(subject: str, adjective: str, verb: str, adverbial: str = "", clause: str = "") -> str:
    if subject == "someone":
        head = "someone" if not adjective else f"{_article(adjective)} {adjective} person"
    else:
        noun = f"{adjective} {subject}" if adjective else subject
        head = f"{_article(noun)} {noun}"
    return " ".join(p for p in (head, clause, verb, adverbial) if p) + "."


def make_captions(content: str, style: str, rng: np.random.Generator, n: int = 3) -> list[str]:
    """``n`` distinct captions of a clip from its labels, drawn with ``rng``: the style as
    an adjective ("an elderly person walks forward."), an adverbial ("a person walks
    forward slowly like an old person.") or a relative clause ("someone who looks
    exhausted raises both hands."), with varied subjects and verb phrases."""
    adjs, advs, clauses = _style(style)
    verbs = _phrase(content)
    kinds = ["adjective", "adverbial", "clause"]
    first = int(rng.integers(3))
    out: list[str] = []
    for attempt in range(50 * n):
        # One of each form first (from a random one), then any.
        kind = kinds[(first + attempt) % 3] if attempt < 3 else kinds[int(rng.integers(3))]
        noun, pos = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
        verb = verbs[int(rng.integers(len(verbs)))].format(pos=pos)
        if kind == "adjective":
            s = _sentence(noun, adjs[int(rng.integers(len(adjs)))], verb)
        elif kind == "adverbial":
            s = _sentence(noun, "", verb, adverbial=advs[int(rng.integers(len(advs)))])
        else:
            s = _sentence(noun, "", verb, clause=clauses[int(rng.integers(len(clauses)))])
        if s not in out:
            out.append(s)
        if len(out) == n:
            break
    order = rng.permutation(len(out))
    return [out[i] for i in order]


# Words of the captions above that the HumanML3D tokenizer's lexicon lacks or tags
# otherwise: word -> (lemma, universal POS), as spaCy tags them in HumanML3D's texts.
_WORDS: dict[str, tuple[str, str]] = {}
for _pos, _ws in {
    "ADJ": "energetic lively active elderly old exhausted tired worn feminine masculine young youthful childish "
           "childlike happy cheerful sad gloomy unhappy angry furious proud timid insecure unsure theatrical huge "
           "heavy thuggish normal manly imaginary short full",
    "ADV": "forward ahead straight backward backwards sideways quickly slowly energetically normally wearily "
           "gracefully happily cheerfully sadly angrily proudly timidly theatrically heavily briefly very then",
    "INTJ": "hello",
    "NUM": "one",
    "PRON": "who someone",
    "ADP": "with like in of to above without as",
    "DET": "a an the both his her their",
    "NOUN": "person man hand hands=hand arm arms=arm head way manner energy lot distance steps=step step turn left "
            "right sword motion movement dance gesture child giant thug street pride confidence swagger bow kick "
            "punch fist leg musical walk",
    "VERB": "walks=walk takes=take runs=run jogs=jog dashes=dash sprints=sprint steps=step waves=wave raises=raise "
            "lifts=lift puts=put turns=turn makes=make bows=bow says=say gestures=gesture points=point guides=guide "
            "responds=respond answers=answer reacts=react calls=call beckons=beckon come punches=punch throws=throw "
            "kicks=kick does=do slashes=slash swings=swing dances=dance performs=perform looks=look seems=seem "
            "moves=move acts=act lacks=lack show",
    "AUX": "is",
    "CCONJ": "and",
}.items():
    for _w in _ws.split():
        _word, _lemma = _w.split("=") if "=" in _w else (_w, _w)
        _WORDS.setdefault(_word, (_lemma, _pos))
# "left"/"right": adjectives before a noun ("his left hand"), nouns after "the" ("turns to the left"),
# adverbs otherwise ("turns left").
_SIDE = {"left", "right"}
_SIDE_NOUNS = {"hand", "arm", "leg", "foot", "turn"}


def tag_caption(caption: str) -> list[str]:
    """``lemma/POS`` tokens of a caption (HumanML3D's texts: lower case, no punctuation,
    nouns and verbs lemmatised, ``left``/``right`` kept). A lexicon for this module's
    fixed vocabulary; other words fall back on :func:`vmdm.data.formats.humanml3d.tokenize`."""
    from vmdm.data.formats.humanml3d import tokenize

    words = re.findall(r"[a-z]+", caption.lower().replace("-", " "))
    out = []
    for k, w in enumerate(words):
        if w in _SIDE:
            nxt = words[k + 1] if k + 1 < len(words) else ""
            prev = words[k - 1] if k else ""
            pos = "ADJ" if nxt in _SIDE_NOUNS else "NOUN" if prev == "the" else "ADV"
            out.append(f"{w}/{pos}")
        elif w in _WORDS:
            lemma, pos = _WORDS[w]
            out.append(f"{lemma}/{pos}")
        else:
            out.extend(tokenize(w))
    return out


# --------------------------------------------------------------------------- build


def _process(clip: BandaiClip, cfg: BandaiConfig) -> tuple[np.ndarray | None, dict]:
    """Canonical joints ``[T, 22, 3]`` (None: dropped) and the clip's record."""
    from vmdm.data.formats.bvh import load_bvh_smpl22, read_bvh
    from vmdm.motion.representation import canonicalize
    from vmdm.motion.skeleton import SMPL22

    bvh = read_bvh(clip.path)
    joints = load_bvh_smpl22(bvh, joint_map="bandai", units="auto", resample="slerp", retarget=cfg.retarget)
    rec = {"content": clip.content, "style": clip.style, "dataset": clip.dataset, "take": clip.take,
           "source_file": str(clip.path.relative_to(Path(cfg.root))) if clip.path.is_relative_to(Path(cfg.root))
           else str(clip.path), "source_frames": bvh.num_frames, "source_fps": bvh.fps,
           "pad_frames": [0, 0], "cut_frames": 0}
    fps = 20.0
    min_frames = int(round(cfg.min_seconds * fps)) + 1  # joints frames: features are one fewer
    max_frames = int(round(cfg.max_seconds * fps)) + 1
    T = len(joints)
    if T < min_frames and cfg.short_clips != "keep":
        if cfg.short_clips == "drop" or (T - 1) / fps < cfg.min_motion_seconds:
            rec["dropped"] = f"{(T - 1) / fps:.2f} s at 20 fps, under {cfg.min_seconds} s"
            return None, rec
        before = (min_frames - T) // 2
        after = min_frames - T - before
        joints = np.concatenate([np.repeat(joints[:1], before, 0), joints, np.repeat(joints[-1:], after, 0)])
        rec["pad_frames"] = [before, after]
    if len(joints) > max_frames:
        rec["cut_frames"] = len(joints) - max_frames
        joints = joints[:max_frames]
    canon, _ = canonicalize(joints.astype(np.float64), SMPL22)
    rec["frames"] = len(canon)
    return canon, rec


def build_bandai(cfg: BandaiConfig) -> dict:
    """Write the folder ``cfg.out`` (see the module docstring); returns the summary that
    ``bandai_meta.json`` holds without its per-clip records."""
    from tqdm import tqdm

    from vmdm.data.build.numerics import round_significand
    from vmdm.data.formats.humanml3d import Caption, write_clip, write_ids, write_normalizer
    from vmdm.motion.representation import encode, feature_convention_record
    from vmdm.motion.skeleton import SMPL22

    if cfg.short_clips not in SHORT_CLIPS:
        raise ConfigError(f"--short-clips: expected one of {SHORT_CLIPS}, got {cfg.short_clips!r}")
    if cfg.captions_per_clip < 1:
        raise ConfigError(f"--captions-per-clip: must be >= 1, got {cfg.captions_per_clip}")
    if cfg.limit is not None and cfg.limit < 1:
        raise ConfigError(f"--limit: must be >= 1, got {cfg.limit}")
    if not 0 < cfg.min_seconds < cfg.max_seconds:
        raise ConfigError(f"--min-seconds / --max-seconds: need 0 < min < max, got {cfg.min_seconds}, "
                          f"{cfg.max_seconds}")
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise ConfigError(f"--out: {out} exists and is not empty (pass --overwrite to replace it)")
    t0 = time.time()
    clips = find_clips(cfg.root, cfg.clips, cfg.limit)
    splits = split_clips(clips, cfg.seed, cfg.val_fraction, cfg.test_fraction)
    records: dict[str, dict] = {}
    dropped: dict[str, dict] = {}
    with staged_folder(out) as tmp:
        for clip in tqdm(clips, desc="bandai clips", unit="clip", disable=not cfg.progress):
            joints, rec = _process(clip, cfg)
            rec["split"] = splits[clip.id]
            if joints is None:
                dropped[clip.id] = rec
                continue
            rng = np.random.default_rng(_stable_seed(cfg.seed, "captions", clip.id))
            texts = make_captions(clip.content, clip.style, rng, cfg.captions_per_clip)
            joints = round_significand(joints)
            feats = round_significand(encode(joints.astype(np.float64), SMPL22))
            write_clip(tmp, clip.id, joints, [Caption(t, tuple(tag_caption(t))) for t in texts], skeleton=SMPL22,
                       features=feats)
            rec["captions"] = texts
            records[clip.id] = rec
        ids = {s: [i for i in sorted(records) if records[i]["split"] == s] for s in ("train", "val", "test")}
        if not ids["train"]:
            raise ValueError(f"{cfg.root}: no training clip among the {len(clips)} selected; Mean/Std need one "
                             "(select more clips)")
        for split, split_ids in ids.items():
            write_ids(tmp, split, split_ids)
        write_normalizer(tmp, ids["train"], SMPL22)
        (tmp / "features.json").write_text(json.dumps(feature_convention_record(), indent=1) + "\n")
        summary = {
            "format": "humanml3d", "source": SOURCE, "root": str(Path(cfg.root).resolve()), "licence": LICENCE,
            "fps": 20, "skeleton": "smpl22", "retarget": "humanml3d uniform_skeleton" if cfg.retarget else "none",
            "split": {"seed": cfg.seed, "val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction,
                      "stratified_by": ["content", "style"], "counts": {s: len(v) for s, v in ids.items()}},
            "short_clips": {"policy": cfg.short_clips, "min_seconds": cfg.min_seconds,
                            "min_motion_seconds": cfg.min_motion_seconds,
                            "padded": sum(1 for r in records.values() if sum(r["pad_frames"])),
                            "dropped": len(dropped)},
            "max_seconds": cfg.max_seconds, "cut": sum(1 for r in records.values() if r["cut_frames"]),
            "captions_per_clip": cfg.captions_per_clip, "clips_read": len(clips),
        }
        summary["build_seconds"] = round(time.time() - t0, 1)
        meta = {**summary, "clips": records, "dropped_clips": dropped}
        (tmp / "bandai_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return summary
