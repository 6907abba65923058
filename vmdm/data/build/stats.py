"""Side-by-side statistics of the built-in corpus and real motion capture (CMU, Bandai-Namco).

``python -m vmdm.data.build.stats --corpus DIR [--bandai DIR] [--lifter CKPT] [--cmu DIR] [--write-docs docs/data.md]``

Measures, for both sources at 20 fps and cut into clips of at most 196 frames: joint and
root speeds, acceleration, foot-contact ratio, foot skating, root height and its range;
the representation's encode/decode round trip and the IK -> FK error; and, given a lifter
checkpoint, the teacher lifter's error on random-camera projections with detector noise.
With ``--bandai`` (a folder of ``prepare bandai``), Bandai-Namco is a column too, and a
second table sets each procedural family that has a Bandai counterpart (walks, turns,
runs, waves, raises) beside it. Prints Markdown tables; ``--write-docs`` also replaces the block between
``<!-- stats:begin -->`` and ``<!-- stats:end -->`` in the given file.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vmdm.cli import REQUIRED, build_parser, field, from_args
from vmdm.motion.kinematics import bone_lengths, forward_kinematics, inverse_kinematics, offsets_from_lengths
from vmdm.motion.representation import canonicalize, decode, encode
from vmdm.motion.skeleton import SMPL22, Skeleton

__all__ = [
    "FPS",
    "cut_clips",
    "motion_statistics",
    "roundtrip_errors",
    "lifter_errors",
    "markdown_table",
    "collect",
    "COUNTERPARTS",
    "counterpart_statistics",
    "counterpart_table",
    "StatsConfig",
    "report",
    "main",
]

FPS = 20.0
FOOT_HEIGHT = 0.05  # m above the clip's floor: "low" foot for the skating measure
CONTACT_SPEED = 0.2  # m/s: a low foot slower than this is in contact


def cut_clips(clips: Sequence[np.ndarray], max_frames: int = 196, min_frames: int = 40) -> list[np.ndarray]:
    """Consecutive windows of at most ``max_frames`` (shorter tails dropped below ``min_frames``)."""
    out = []
    for c in clips:
        for s in range(0, len(c), max_frames):
            w = c[s : s + max_frames]
            if len(w) >= min_frames:
                out.append(np.asarray(w, dtype=np.float64))
    return out


def motion_statistics(clips: Sequence[np.ndarray], skeleton: Skeleton = SMPL22, fps: float = FPS) -> dict[str, float]:
    """Per-frame statistics averaged over all frames of all clips (heights per clip)."""
    if not clips:
        raise ValueError("motion_statistics: no clips")
    feet = list(skeleton.feet_left) + list(skeleton.feet_right)
    speed, root_speed, acc, contact_any, skate, low_frames = [], [], [], [], [], []
    height, height_range, seconds = [], [], []
    for c in clips:
        c = np.asarray(c, dtype=np.float64)
        if c.ndim != 3 or c.shape[1:] != (skeleton.num_joints, 3) or len(c) < 3:
            raise ValueError(f"motion_statistics: clips must be [T >= 3, {skeleton.num_joints}, 3], got {c.shape}")
        c = c.copy()
        c[..., 1] -= c[..., 1].min()  # floor at the clip's lowest joint, as the representation does
        v = np.diff(c, axis=0) * fps
        speed.append(np.linalg.norm(v, axis=-1).mean(axis=1))
        root_speed.append(np.linalg.norm(v[:, 0, [0, 2]], axis=-1))
        acc.append(np.linalg.norm(np.diff(v, axis=0) * fps, axis=-1).mean(axis=1))
        foot_h = c[:-1, feet, 1]
        foot_v = np.linalg.norm(v[:, feet][..., [0, 2]], axis=-1)
        low = foot_h < FOOT_HEIGHT
        contact_any.append((low & (foot_v < CONTACT_SPEED)).any(axis=1))
        skate.append(foot_v[low])
        low_frames.append(low.any(axis=1))
        height.append(c[:, 0, 1].mean())
        height_range.append(np.ptp(c[:, 0, 1]))
        seconds.append(len(c) / fps)
    cat = np.concatenate
    return {
        "clips": len(clips),
        "seconds_per_clip": float(np.mean(seconds)),
        "joint_speed_m_s": float(cat(speed).mean()),
        "root_speed_m_s": float(cat(root_speed).mean()),
        "joint_accel_m_s2": float(cat(acc).mean()),
        "foot_contact_ratio": float(cat(contact_any).mean()),
        "foot_low_ratio": float(cat(low_frames).mean()),
        "foot_skating_cm_s": float(100 * cat(skate).mean()) if sum(len(s) for s in skate) else float("nan"),
        "root_height_m": float(np.mean(height)),
        "root_height_range_m": float(np.mean(height_range)),
    }


def roundtrip_errors(clips: Sequence[np.ndarray], skeleton: Skeleton = SMPL22) -> dict[str, float]:
    """Representation round trip ``decode(encode(x))`` vs canonical ``x``, and IK -> FK, in mm."""
    rt_mean, rt_max, ik_mean, ik_max = [], [], [], []
    for c in clips:
        x = torch.as_tensor(np.asarray(c), dtype=torch.float64)
        canon, _ = canonicalize(x, skeleton)
        rec = decode(encode(x, skeleton), skeleton)
        e = (rec - canon[:-1]).norm(dim=-1)
        rt_mean.append(float(e.mean()))
        rt_max.append(float(e.max()))
        R = inverse_kinematics(x, skeleton)
        offs = offsets_from_lengths(bone_lengths(x, skeleton), skeleton)
        fk = forward_kinematics(R, x[:, 0], skeleton, offs)
        e = (fk - x).norm(dim=-1)
        ik_mean.append(float(e.mean()))
        ik_max.append(float(e.max()))
    return {
        "roundtrip_mean_mm": 1000 * float(np.mean(rt_mean)),
        "roundtrip_max_mm": 1000 * float(np.max(rt_max)),
        "ik_fk_mean_mm": 1000 * float(np.mean(ik_mean)),
        "ik_fk_max_mm": 1000 * float(np.max(ik_max)),
    }


def lifter_errors(clips: Sequence[np.ndarray], lifter_path: str | Path, views: int = 2, seed: int = 0) -> dict[str, float]:
    """The teacher lifter's errors (mm) on random-camera, detector-noise projections."""
    from vmdm.data.build.teacher import evaluate_lifter, load_lifter, make_views

    model = load_lifter(lifter_path)
    v = make_views([np.asarray(c, dtype=np.float32) for c in clips], views, seed=seed)
    return evaluate_lifter(model, v)


def collect(
    corpus: str | Path,
    cmu: str | Path | None = None,
    lifter: str | Path | None = None,
    max_clips: int = 400,
    seed: int = 0,
    bandai: str | Path | None = None,
) -> dict[str, dict]:
    """All statistics for up to ``max_clips`` corpus clips (test split first), the CMU set
    and up to ``max_clips`` Bandai clips (spread evenly over its contents)."""
    from vmdm.data.build.build_2d import family_split, load_corpus_joints
    from vmdm.data.formats.cmu import load_cmu_testset

    rng = np.random.default_rng(seed)
    ids = [l.strip() for l in (Path(corpus) / "test.txt").read_text().splitlines() if l.strip()]
    if len(ids) > max_clips:
        ids = sorted(rng.choice(ids, size=max_clips, replace=False).tolist())
    sources = {"built-in corpus": cut_clips(load_corpus_joints(corpus, ids))}
    if cmu is not None:
        clips = load_cmu_testset(cmu)
        sources["CMU mocap (24 clips)"] = cut_clips([c.joints for c in clips])
        # Subject 02 does everyday actions; subject 01 climbs playground equipment, which
        # dominates the height and contact statistics of the whole set.
        sources["CMU subject 02 only"] = cut_clips([c.joints for c in clips if c.name.startswith("02_")])
    if bandai is not None:
        contents = _bandai_clips(bandai)
        per = max(1, max_clips // len(contents))
        ids = [c for k in sorted(contents) for c in _sample(contents[k], per, rng)]
        sources[f"Bandai-Namco mocap ({len(ids)} clips)"] = cut_clips(load_corpus_joints(bandai, ids))
    out: dict[str, dict] = {}
    for name, clips in sources.items():
        t0 = time.time()
        row = motion_statistics(clips)
        row.update(roundtrip_errors(clips))
        if lifter is not None:
            row.update({f"lifter_{k}": v for k, v in lifter_errors(clips, lifter, seed=seed).items()})
        row["stats_s"] = time.time() - t0
        out[name] = row
    if lifter is not None:
        # The lifter on its own validation clips (held-out families it was trained on).
        from vmdm.data.build.teacher import load_lifter

        fam = load_lifter(lifter).extra.get("lifter_families")
        if fam:
            split = family_split(corpus, fam)
            val = cut_clips(load_corpus_joints(corpus, split.lifter_val))
            out["_lifter_val"] = {f"lifter_{k}": v for k, v in lifter_errors(val, lifter, seed=seed).items()}
    return out


# Procedural families of the built-in corpus and the Bandai contents that show the same action.
COUNTERPARTS = {
    "walk": ("walk",), "turn_while_walking": ("walk-turn-left", "walk-turn-right"), "run": ("run",),
    "wave": ("wave-left-hand", "wave-right-hand", "wave-both-hands"),
    "raise_arm": ("raise-up-left-hand", "raise-up-right-hand"), "raise_both_arms": ("raise-up-both-hands",),
}
_COUNTERPART_KEYS = ("joint_speed_m_s", "root_speed_m_s", "joint_accel_m_s2", "foot_skating_cm_s")


def _bandai_clips(bandai: str | Path) -> dict[str, list[str]]:
    """Content -> clip ids of a ``prepare bandai`` folder."""
    import json

    meta = json.loads((Path(bandai) / "bandai_meta.json").read_text())
    out: dict[str, list[str]] = {}
    for cid, rec in sorted(meta["clips"].items()):
        out.setdefault(rec["content"], []).append(cid)
    return out


def _sample(ids: list[str], n: int, rng) -> list[str]:
    return sorted(rng.choice(ids, size=n, replace=False).tolist()) if len(ids) > n else list(ids)


def counterpart_statistics(corpus: str | Path, bandai: str | Path, per_source: int = 60,
                           seed: int = 0) -> dict[str, dict]:
    """Motion statistics of each :data:`COUNTERPARTS` family (single-action corpus clips) and
    of its Bandai contents, ``per_source`` clips of each at most."""
    import json

    from vmdm.data.build.build_2d import load_corpus_joints

    rng = np.random.default_rng(seed)
    fam: dict[str, list[str]] = {}
    for line in (Path(corpus) / "meta.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if len(rec.get("families", [])) == 1:
                fam.setdefault(rec["families"][0], []).append(rec["id"])
    contents = _bandai_clips(bandai)
    out = {}
    for family, kinds in COUNTERPARTS.items():
        ids = fam.get(family, [])
        real = [c for k in kinds for c in contents.get(k, [])]
        if not ids or not real:
            continue
        out[family] = {
            "bandai": "/".join(kinds),
            "corpus": motion_statistics(cut_clips(load_corpus_joints(corpus, _sample(ids, per_source, rng)))),
            "real": motion_statistics(cut_clips(load_corpus_joints(bandai, _sample(real, per_source, rng)))),
        }
    return out


def counterpart_table(rows: dict[str, dict]) -> str:
    """Markdown: per family, each statistic for the corpus and Bandai, and their ratio; ratios
    off by more than 25 % are in bold."""
    head = ["family (Bandai contents)"] + [f"{k} corpus / Bandai (ratio)" for k in _COUNTERPART_KEYS]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(_COUNTERPART_KEYS)]
    for family, r in rows.items():
        cells = []
        for k in _COUNTERPART_KEYS:
            a, b = r["corpus"][k], r["real"][k]
            ratio = a / b if b else float("nan")
            txt = f"{a:.3g} / {b:.3g} ({ratio:.2f})"
            cells.append(f"**{txt}**" if abs(ratio - 1) > 0.25 else txt)
        lines.append(f"| {family} ({r['bandai']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


ROWS = [
    ("clips", "clips (<= 196 frames)", "{:.0f}"),
    ("seconds_per_clip", "seconds per clip", "{:.1f}"),
    ("joint_speed_m_s", "mean joint speed (m/s)", "{:.3f}"),
    ("root_speed_m_s", "mean root horizontal speed (m/s)", "{:.3f}"),
    ("joint_accel_m_s2", "mean joint acceleration (m/s^2)", "{:.2f}"),
    ("foot_contact_ratio", "frames with a foot in contact", "{:.2f}"),
    ("foot_skating_cm_s", "foot skating: horizontal speed of feet < 5 cm high (cm/s)", "{:.1f}"),
    ("root_height_m", "mean root height (m)", "{:.3f}"),
    ("root_height_range_m", "root height range per clip (m)", "{:.3f}"),
    ("roundtrip_mean_mm", "encode/decode round trip, mean (mm)", "{:.2g}"),
    ("roundtrip_max_mm", "encode/decode round trip, max (mm)", "{:.2g}"),
    ("ik_fk_mean_mm", "IK -> FK error, mean (mm)", "{:.2f}"),
    ("ik_fk_max_mm", "IK -> FK error, max (mm)", "{:.2f}"),
    ("lifter_mpjpe_mm", "teacher lifter MPJPE, root-relative (mm)", "{:.0f}"),
    ("lifter_abs_mpjpe_mm", "teacher lifter MPJPE, absolute camera frame (mm)", "{:.0f}"),
    ("lifter_root_depth_err_mm", "teacher lifter root depth error (mm)", "{:.0f}"),
]


def markdown_table(stats: dict[str, dict]) -> str:
    names = [n for n in stats if not n.startswith("_")]
    lines = ["| statistic | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label, fmt in ROWS:
        if not any(key in stats[n] for n in names):
            continue
        cells = [fmt.format(stats[n][key]) if key in stats[n] else "-" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if "_lifter_val" in stats:
        v = stats["_lifter_val"]
        lines.append("")
        lines.append(
            f"Teacher lifter on its own validation clips (held-out families): MPJPE "
            f"{v['lifter_mpjpe_mm']:.0f} mm root-relative, {v['lifter_abs_mpjpe_mm']:.0f} mm absolute."
        )
    return "\n".join(lines)


def write_docs(path: str | Path, table: str) -> None:
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    block = f"<!-- stats:begin -->\n{table}\n<!-- stats:end -->"
    if "<!-- stats:begin -->" in text:
        text = re.sub(r"<!-- stats:begin -->.*?<!-- stats:end -->", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


@dataclass
class StatsConfig:
    """``python -m vmdm.data.build.stats``: the corpus-versus-real-motion statistics tables."""

    corpus: str = field(REQUIRED, "3D corpus folder (HumanML3D format + meta.jsonl)")
    bandai: str | None = field(None, "Bandai-Namco folder written by prepare bandai (default: none)")
    cmu: str | None = field(None, "cmu_humanml folder (default: found automatically, skipped if absent)")
    lifter: str | None = field(None, "lifter checkpoint to evaluate")
    max_clips: int = field(400, "corpus clips measured (test split first)")
    write_docs: str | None = field(None, "Markdown file whose stats block is replaced")


def report(cfg: StatsConfig) -> str:
    """Collect the statistics, write them into ``cfg.write_docs`` if given; returns the
    Markdown table."""
    cmu = cfg.cmu
    if cmu is None:
        from vmdm.data.formats.cmu import default_cmu_dir

        cmu = default_cmu_dir()
        if cmu is None:
            print("CMU data not found; reporting the corpus only", file=sys.stderr)
    table = markdown_table(collect(cfg.corpus, cmu, cfg.lifter, cfg.max_clips, bandai=cfg.bandai))
    if cfg.bandai:
        table += ("\n\nProcedural families with a Bandai counterpart (single-action clips; bold: off by more "
                  "than 25 %):\n\n" + counterpart_table(counterpart_statistics(cfg.corpus, cfg.bandai)))
    if cfg.write_docs:
        write_docs(cfg.write_docs, table)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(StatsConfig, "python -m vmdm.data.build.stats", __doc__.split("\n\n")[0])
    print(report(from_args(StatsConfig, parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
