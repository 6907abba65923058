"""One clip: a plan of families -> joints, captions and metadata.

A plan is a family name (``"walk"``), a sequence (``"walk>wave>squat"``,
actions one after another, joined in the neutral stance) or a simultaneous
pair (``"walk+wave"``: a gait carrying an arm gesture).
"""

from __future__ import annotations

import numpy as np

from vmdm.data.build.synth.body import build_joints, fit_pelvis_height, sample_subject
from vmdm.data.build.synth.families import FAMILIES, Action, Ctx
from vmdm.data.build.synth.motion import end_state, ground_feet, place

# 41 joint frames give the 40 feature frames HumanML3D's loader requires.
MIN_FRAMES, MAX_FRAMES = 41, 196

SUBJECTS = {
    "man": (["a man", "the man", "a person", "the person", "someone"], "he", "his", "him"),
    "woman": (["a woman", "the woman", "a person", "the person", "someone"], "she", "her", "her"),
    "person": (["a person", "the person", "someone", "a figure", "a human"], "he", "his", "him"),
}


def parse_plan(plan: str) -> tuple[str, list[str]]:
    if "+" in plan:
        kind, names = "simultaneous", plan.split("+")
        if len(names) != 2:
            raise ValueError(f"plan {plan!r}: a simultaneous plan is 'carrier+gesture'")
        if not FAMILIES.get(names[0], None) or not FAMILIES[names[0]].carrier:
            raise ValueError(f"plan {plan!r}: {names[0]!r} cannot carry a gesture; carriers: "
                             f"{sorted(n for n, f in FAMILIES.items() if f.carrier)}")
        if not FAMILIES.get(names[1], None) or not FAMILIES[names[1]].overlay:
            raise ValueError(f"plan {plan!r}: {names[1]!r} is not an arm gesture; gestures: "
                             f"{sorted(n for n, f in FAMILIES.items() if f.overlay)}")
    else:
        names = plan.split(">")
        kind = "single" if len(names) == 1 else "sequence"
    for n in names:
        if n not in FAMILIES:
            raise ValueError(f"plan {plan!r}: unknown family {n!r}; families: {sorted(FAMILIES)}")
    if kind == "sequence":
        bad = [n for n in names if not FAMILIES[n].composable]
        if bad:
            raise ValueError(f"plan {plan!r}: {bad} cannot be chained (they do not start standing)")
        if len(names) > 3:
            raise ValueError(f"plan {plan!r}: at most three actions in a sequence")
    return kind, names


def _overlay(carrier: Action, gesture: Action) -> None:
    """Replace the carrier's arms with the gesture's, faded by how far the
    gesture moves the wrist from its rest position."""
    T, Tg = carrier.pose.T, gesture.pose.T
    off = (T - Tg) // 2
    g = gesture.pose
    for s in gesture.arms:
        wr = np.concatenate([np.repeat(g.wrist[s][:1], off, 0), g.wrist[s], np.repeat(g.wrist[s][-1:], T - Tg - off, 0)])
        po = np.concatenate([np.repeat(g.elbow_pole[s][:1], off, 0), g.elbow_pole[s],
                             np.repeat(g.elbow_pole[s][-1:], T - Tg - off, 0)])
        co = np.concatenate([np.repeat(g.collar[:1, s], off), g.collar[:, s], np.repeat(g.collar[-1:, s], T - Tg - off)])
        active = np.clip(np.linalg.norm(wr - wr[0], axis=-1) / 0.08, 0, 1)
        from scipy.ndimage import maximum_filter1d, gaussian_filter1d

        active = gaussian_filter1d(maximum_filter1d(active, 9), 2.0)
        w = np.clip(active, 0, 1)[:, None]
        carrier.pose.wrist[s] = carrier.pose.wrist[s] * (1 - w) + wr * w
        carrier.pose.elbow_pole[s] = carrier.pose.elbow_pole[s] * (1 - w) + po * w
        carrier.pose.collar[:, s] = co * w[:, 0] + carrier.pose.collar[:, s] * (1 - w[:, 0])


def _sentence(s: str, rng) -> str:
    s = " ".join(s.split()).replace(" ,", ",").strip()
    if rng.random() < 0.3:
        s = s[0].upper() + s[1:]
    return s + "."


def make_captions(kind: str, actions: list[Action], rng: np.random.Generator, n: int | None = None) -> list[str]:
    """Several distinct HumanML3D-style paraphrases of what the clip shows."""
    gender = str(rng.choice(list(SUBJECTS)))
    subjects, he, his, him = SUBJECTS[gender]
    fmt = {"his": his, "him": him, "he": he}
    n = n if n is not None else int(rng.integers(3, 6))
    out: list[str] = []
    for _ in range(60):
        S = str(rng.choice(subjects))
        cl = [a.clauses[int(rng.integers(len(a.clauses)))] for a in actions]
        pres = [c[0].format(**fmt) for c in cl]
        ger = [c[1].format(**fmt) for c in cl]
        if kind == "single":
            s = f"{S} {pres[0]}"
        elif kind == "sequence":
            pattern = int(rng.integers(4))
            if pattern == 0:
                s = f"{S} " + ", then ".join(pres[:-1]) + f" and then {pres[-1]}"
            elif pattern == 1:
                s = f"{S} {pres[0]}, " + ", ".join(f"then {p}" for p in pres[1:])
            elif pattern == 2:
                s = f"first {S} {pres[0]}, " + ", ".join(f"then {he} {p}" for p in pres[1:])
            else:
                s = f"{S} {pres[0]} before " + " and then ".join(ger[1:])
        else:
            pattern = int(rng.integers(3))
            if pattern == 0:
                s = f"{S} {pres[0]} while {ger[1]}"
            elif pattern == 1:
                s = f"while {ger[0]}, {S} {pres[1]}"
            else:
                s = f"{S} {pres[1]} as {he} {pres[0]}"
        s = _sentence(s, rng)
        if s.lower() not in {o.lower() for o in out}:
            out.append(s)
        if len(out) >= n:
            break
    return out


def generate_clip(plan: str, rng: np.random.Generator, *, subject=None, n_captions: int | None = None):
    """Generate one clip for ``plan`` (see module doc).

    Returns ``(joints [T, 22, 3] float32, captions list[str], meta dict)``;
    joints are in metres, y up, lowest foot on the floor, 20 fps, with
    ``41 <= T <= 196`` (so 40 to 195 feature frames). ``meta`` holds the families, composition kind, each
    action's parameters and the subject's size, all JSON-serialisable.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected numpy.random.Generator, got {type(rng).__name__}")
    kind, names = parse_plan(plan)
    subj = subject if subject is not None else sample_subject(rng)
    ctx = Ctx(rng, subj)
    if kind == "simultaneous":
        carrier = FAMILIES[names[0]].fn(ctx, MAX_FRAMES)
        gesture = FAMILIES[names[1]].fn(ctx, carrier.pose.T)
        _overlay(carrier, gesture)
        actions = [carrier, gesture]
        pose = carrier.pose
    else:
        actions = []
        budget = MAX_FRAMES
        parts = []
        x = z = h = 0.0
        mins = [FAMILIES[n].min_frames for n in names]
        if sum(mins) > MAX_FRAMES:
            raise ValueError(f"plan {plan!r}: needs at least {sum(mins)} frames, more than {MAX_FRAMES}")
        for k, n in enumerate(names):
            # An even share of what is left, but leave the later actions their minimum.
            share = max(budget // (len(names) - k), mins[k])
            share = min(share, budget - sum(mins[k + 1 :]))
            act = FAMILIES[n].fn(ctx, share)
            if act.pose.T > share:
                raise RuntimeError(f"family {n!r} used {act.pose.T} frames, over its budget {share}")
            actions.append(act)
            placed = place(act.pose, x, z, h)
            parts.append(placed)
            x, z, h = end_state(placed)
            budget -= act.pose.T
        from vmdm.data.build.synth.body import Pose

        pose = Pose.concat(parts) if len(parts) > 1 else parts[0]
    if pose.T < MIN_FRAMES:
        # Every action ends at rest: hold the last frame.
        from vmdm.data.build.synth.body import Pose

        pose = Pose.concat([pose] + [pose.slice(pose.T - 1, pose.T)] * (MIN_FRAMES - pose.T))
    # Random start position and heading in the world.
    pose = place(pose, rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(-np.pi, np.pi))
    ground_feet(pose, subj)
    fit_pelvis_height(pose, subj)
    joints = build_joints(pose, subj)
    # The planner keeps soles at or above the floor; put the lowest on it.
    joints[..., 1] -= joints[:, [7, 8, 10, 11], 1].min()
    if not (MIN_FRAMES <= len(joints) <= MAX_FRAMES):
        raise RuntimeError(f"plan {plan!r} produced {len(joints)} frames, outside [{MIN_FRAMES}, {MAX_FRAMES}]")
    captions = make_captions(kind, actions, rng, n_captions)
    meta = {
        "plan": plan,
        "families": names,
        "composition": kind,
        "params": [_jsonable(a.params) for a in actions],
        "subject_scale": round(float(subj.scale), 4),
        "length": int(len(joints)),
    }
    return joints.astype(np.float32), captions, meta


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating,)):
            v = float(v)
        elif isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, np.bool_):
            v = bool(v)
        out[k] = v
    return out
