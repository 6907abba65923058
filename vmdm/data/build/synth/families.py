"""The action families of the built-in corpus.

Each family is a function ``(ctx, max_frames) -> Action`` that samples its
parameters, authors a local-frame :class:`Pose` (start at the origin facing
+z in the neutral stance, end in the neutral stance unless the family is not
composable) and describes itself with caption clauses. A clause is a pair
``(present, gerund)`` such as ``("waves with {his} right hand", "waving {his}
right hand")``; ``clip.make_captions`` turns clauses into sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vmdm.data.build.synth.body import SIDE_SIGN, Pose, Subject, mv, ry, torso_frames
from vmdm.data.build.synth.motion import (
    FPS,
    add_idle_noise,
    arm_hang,
    integrate_path,
    neutral,
    plan_steps,
    rep_phase,
    smoothstep,
    stance_half_width,
    window,
)

SIDES = ("left", "right")
NUM_WORDS = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times", 6: "six times",
             7: "seven times", 8: "eight times"}
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


@dataclass
class Ctx:
    rng: np.random.Generator
    subj: Subject


@dataclass
class Action:
    family: str
    pose: Pose
    clauses: list[tuple[str, str]]
    params: dict
    # Which arms the action drives (for "walk while waving" overlays).
    arms: tuple[int, ...] = ()


@dataclass(frozen=True)
class Family:
    name: str
    group: str
    fn: Callable[[Ctx, int], Action]
    composable: bool = True  # starts and ends in the neutral standing pose
    overlay: bool = False  # an arm gesture that can run on top of locomotion
    carrier: bool = False  # locomotion that can carry an arm gesture
    min_frames: int = 40  # shortest complete instance (budget needed in a sequence)


FAMILIES: dict[str, Family] = {}


def family(group: str, composable: bool = True, overlay: bool = False, carrier: bool = False, min_frames: int = 40):
    def deco(fn):
        FAMILIES[fn.__name__] = Family(fn.__name__, group, fn, composable, overlay, carrier, min_frames)
        return fn

    return deco


def _frames(seconds: float) -> int:
    return int(round(seconds * FPS))


def _times(n: int) -> str:
    return NUM_WORDS.get(n, f"{n} times")


def _fit_reps(max_frames: int, overhead: int, per_rep: float, lo: int, hi: int, rng) -> int:
    most = int((max_frames - overhead) // max(per_rep, 1))
    hi = min(hi, most)
    if hi < lo:
        return max(1, hi)
    return int(rng.integers(lo, hi + 1))


def _lerp(a, b, w):
    w = np.asarray(w)[..., None]
    return a * (1 - w) + b * w


# --------------------------------------------------------------------------- locomotion

GAITS = {
    # speed m/s, cycle s, duty, clearance m, pelvis height factor, bob m, lean rad
    "walk": (1.25, 1.05, 0.62, 0.10, 0.975, 0.02, 0.03),
    "jog": (2.3, 0.74, 0.42, 0.14, 0.94, -0.03, 0.12),
    "run": (3.3, 0.66, 0.36, 0.18, 0.92, -0.04, 0.2),
}
SPEED_WORDS = {0.75: ("slowly", " slowly"), 1.0: ("", ""), 1.3: ("quickly", " quickly")}


def _locomote(ctx: Ctx, T: int, travel: np.ndarray, heading: np.ndarray, speed: np.ndarray,
              gait: str, windows: list[tuple[int, int]], width=None, knee_lift=0.0, cycle_scale=1.0,
              speed_scale_for_cycle: float = 1.0) -> Pose:
    """Generic gait along a travel-direction / speed profile (local frame)."""
    subj = ctx.subj
    v0, cycle, duty, clear, hfac, bob, lean = GAITS[gait]
    cycle = cycle * cycle_scale * FPS
    vel = np.stack([np.sin(travel), np.cos(travel)], -1) * speed[:, None] / FPS
    path = integrate_path(vel)
    ankle, yaw, pitch, swing = plan_steps(
        subj, path, heading, windows, cycle, duty, clear * subj.scale, width=width, knee_lift=knee_lift,
        first_foot=int(ctx.rng.integers(0, 2)),
    )
    pose = neutral(subj, T)
    moving = np.zeros(T)
    for a, b in windows:
        moving = np.maximum(moving, window(T, a, b, min(cycle * 0.5, (b - a) / 3)))
    pose.pelvis[:, 0], pose.pelvis[:, 2] = path[:, 0], path[:, 1]
    pose.heading = heading.copy()
    pose.ankle, pose.foot_yaw, pose.foot_pitch = ankle, yaw, pitch
    # Pelvis bob: highest (walk) or lowest (run) in mid single support.
    both = swing[0] + swing[1]
    phase = np.cumsum(both) / max((1 - duty) * cycle, 1)
    pose.pelvis[:, 1] = subj.hip_height * (0.985 + (hfac - 0.985) * moving) + bob * subj.scale * moving * np.cos(
        2 * np.pi * phase - np.pi)
    # Arms swing against the legs; pelvis and shoulders counter-rotate.
    rel = np.stack([mv(ry(-pose.heading), pose.ankle[s] - pose.pelvis) for s in range(2)])
    rel_z = rel[..., 2] - rel[..., 2].mean(axis=1, keepdims=True)
    la, lb = subj.arm
    bend = {"walk": 0.0, "jog": 0.55, "run": 0.7}[gait]
    for s in range(2):
        hang = arm_hang(subj, s)
        bent = np.array([SIDE_SIGN[s] * 0.10 * subj.scale, -0.55 * (la + lb), 0.28 * (la + lb)])
        base = _lerp(hang[None], bent[None], bend * moving)
        swing_amp = 0.45 if gait == "walk" else 0.6
        # Forward swing lifts the bent forearm a little (jog, run).
        lift = 0.15 * np.abs(rel_z[1 - s]) * bend
        pose.wrist[s] = base + np.stack([np.zeros(T), lift, -swing_amp * rel_z[s]], -1)
    diff = rel_z[0] - rel_z[1]
    pose.pelvis_tilt[:, 2] = 0.25 * diff
    pose.spine[:, 2] = -0.4 * diff
    pose.pelvis_tilt[:, 0] = lean * 0.5 * moving
    pose.spine[:, 0] = lean * 0.5 * moving
    add_idle_noise(pose, ctx.rng, 0.6)
    return pose


def _speed_choice(rng):
    k = rng.choice(list(SPEED_WORDS))
    return float(k), SPEED_WORDS[float(k)]


def _straight(ctx: Ctx, max_frames: int, gait: str, direction: str):
    rng = ctx.rng
    mult, (adv, adv_sp) = _speed_choice(rng) if gait == "walk" else (1.0, ("", ""))
    if direction == "backward":
        mult *= 0.6
    if direction in ("left", "right"):
        mult *= 0.35
    v = GAITS[gait][0] * mult * ctx.subj.scale * rng.uniform(0.9, 1.1)
    high = min(9.5, max_frames / FPS - 0.6)
    secs = rng.uniform(min(3.0, high), high)
    T = min(max_frames, _frames(secs + 0.6))
    a, b = 6, T - 6
    body = {"forward": 0.0, "backward": np.pi, "left": -np.pi / 2, "right": np.pi / 2}[direction]
    travel = np.full(T, -body)
    heading = np.zeros(T)
    speed = v * window(T, a, b, 14)
    width = stance_half_width(ctx.subj) * (1.9 if direction in ("left", "right") else 1.0)
    pose = _locomote(ctx, T, travel, heading, speed, gait, [(a, b)], width=width,
                     cycle_scale=1.0 / np.sqrt(mult) if gait == "walk" else 1.0)
    dist = float(np.linalg.norm(pose.pelvis[-1, [0, 2]] - pose.pelvis[0, [0, 2]]))
    return pose, adv, adv_sp, dist


@family("locomotion", carrier=True, min_frames=60)
def walk(ctx: Ctx, max_frames: int) -> Action:
    pose, adv, adv_sp, dist = _straight(ctx, max_frames, "walk", "forward")
    steps = int(round(dist / 0.7))
    clauses = [
        (f"walks forward{adv_sp}", f"walking forward{adv_sp}"),
        (f"walks straight ahead{adv_sp}", f"walking straight ahead{adv_sp}"),
        (f"walks in a straight line{adv_sp}", f"walking in a straight line{adv_sp}"),
        (f"takes {COUNT_WORDS.get(steps, 'several')} steps forward", f"taking {COUNT_WORDS.get(steps, 'several')} steps forward"),
    ]
    if adv:
        clauses.append((f"{adv} walks forward", f"{adv} walking forward"))
    return Action("walk", pose, clauses, {"speed": adv or "normal", "distance": round(dist, 2)})


@family("locomotion", carrier=True, min_frames=60)
def walk_backward(ctx: Ctx, max_frames: int) -> Action:
    pose, adv, adv_sp, dist = _straight(ctx, max_frames, "walk", "backward")
    clauses = [
        (f"walks backwards{adv_sp}", f"walking backwards{adv_sp}"),
        ("walks backward in a straight line", "walking backward in a straight line"),
        ("steps backwards several times", "stepping backwards"),
        (f"moves backwards{adv_sp}", f"moving backwards{adv_sp}"),
    ]
    return Action("walk_backward", pose, clauses, {"speed": adv or "normal", "distance": round(dist, 2)})


@family("locomotion", min_frames=60)
def sidestep(ctx: Ctx, max_frames: int) -> Action:
    d = str(ctx.rng.choice(SIDES))
    pose, _, _, dist = _straight(ctx, max_frames, "walk", d)
    clauses = [
        (f"walks sideways to the {d}", f"walking sideways to the {d}"),
        (f"side steps to {{his}} {d}", f"side stepping to {{his}} {d}"),
        (f"shuffles sideways towards the {d}", f"shuffling sideways towards the {d}"),
        (f"steps to the {d} several times", f"stepping to the {d}"),
    ]
    return Action("sidestep", pose, clauses, {"direction": d, "distance": round(dist, 2)})


@family("locomotion", carrier=True, min_frames=60)
def jog(ctx: Ctx, max_frames: int) -> Action:
    pose, _, _, dist = _straight(ctx, max_frames, "jog", "forward")
    clauses = [
        ("jogs forward", "jogging forward"),
        ("jogs in a straight line", "jogging in a straight line"),
        ("jogs straight ahead", "jogging straight ahead"),
        ("runs forward at a slow pace", "running forward at a slow pace"),
    ]
    return Action("jog", pose, clauses, {"distance": round(dist, 2)})


@family("locomotion", min_frames=60)
def run(ctx: Ctx, max_frames: int) -> Action:
    pose, _, _, dist = _straight(ctx, max_frames, "run", "forward")
    clauses = [
        ("runs forward", "running forward"),
        ("runs fast in a straight line", "running fast in a straight line"),
        ("sprints forward", "sprinting forward"),
        ("runs quickly straight ahead", "running quickly straight ahead"),
    ]
    return Action("run", pose, clauses, {"distance": round(dist, 2)})


def _curve(ctx: Ctx, max_frames: int, gait: str, turn_rate: np.ndarray, T: int, v: float,
           windows=None, speed=None):
    """Travel along a curve given the turn rate (rad/frame) of the travel direction."""
    a, b = 6, T - 6
    if speed is None:
        speed = v * window(T, a, b, 14)
    travel = np.cumsum(turn_rate * (speed / max(v, 1e-6)))
    travel -= travel[0]
    return _locomote(ctx, T, travel, travel.copy(), speed, gait, windows or [(a, b)])


@family("locomotion", carrier=True, min_frames=80)
def circle(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    gait = str(rng.choice(["walk", "walk", "jog"]))
    d = str(rng.choice(["clockwise", "counterclockwise"]))
    v = GAITS[gait][0] * ctx.subj.scale * (0.8 if gait == "walk" else 0.75)
    radius = rng.uniform(1.0, 2.0) if gait == "walk" else rng.uniform(1.6, 2.6)
    full = 2 * np.pi * radius / v
    frac = float(rng.choice([1.0, 1.0, 0.5]))
    if full * frac + 1.4 > max_frames / FPS:
        frac = 0.5
    secs = min(full * frac + 1.4, max_frames / FPS - 0.1)
    T = max(40, min(max_frames, _frames(secs)))
    # Clockwise seen from above (y up) turns to the right: negative yaw rate.
    rate = (v / radius / FPS) * (-1 if d == "clockwise" else 1)
    pose = _curve(ctx, max_frames, gait, np.full(T, rate), T, v)
    side = "right" if d == "clockwise" else "left"
    verb, ger = ("walks", "walking") if gait == "walk" else ("jogs", "jogging")
    done = (secs - 1.4) / full
    what = "a circle" if done > 0.85 else "a half circle" if done > 0.4 else "a curve"
    clauses = [
        (f"{verb} in {what}", f"{ger} in {what}"),
        (f"{verb} in {what} {d}", f"{ger} in {what} {d}"),
        (f"{verb} around in {what}, turning to the {side}", f"{ger} around in {what}"),
        (f"{verb} in a curve to the {side}", f"{ger} in a curve to the {side}"),
    ]
    return Action("circle", pose, clauses, {"gait": gait, "direction": d, "radius": round(radius, 2), "fraction": frac})


@family("locomotion", min_frames=90)
def turn_while_walking(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    side = str(rng.choice(SIDES))
    angle = float(rng.choice([np.pi / 2, np.pi / 2, np.pi]))
    v = GAITS["walk"][0] * ctx.subj.scale * 0.85
    T = min(max_frames, int(rng.integers(110, 190)))
    t = np.arange(T)
    c, w = T * rng.uniform(0.4, 0.6), rng.uniform(12, 24)
    bumpy = np.exp(-0.5 * ((t - c) / (w / 2.5)) ** 2)
    rate = bumpy / bumpy.sum() * angle * (1 if side == "left" else -1)
    a, b = 6, T - 6
    speed = v * window(T, a, b, 14)
    travel = np.cumsum(rate)
    pose = _locomote(ctx, T, travel, travel.copy(), speed, "walk", [(a, b)])
    deg = "around" if angle > 3 else f"to the {side}"
    clauses = [
        (f"walks forward and turns {deg}", f"walking forward and turning {deg}"),
        (f"walks forward, turns {deg} and keeps walking", f"walking and turning {deg}"),
        (f"walks and makes a {'u' if angle > 3 else side} turn", f"walking and making a turn {deg}"),
        (f"walks ahead then turns {'back' if angle > 3 else 'to the ' + side} while walking", f"walking ahead then turning {deg}"),
    ]
    return Action("turn_while_walking", pose, clauses, {"side": side, "angle_deg": round(np.degrees(angle))})


@family("locomotion", min_frames=110)
def zigzag(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    gait = str(rng.choice(["walk", "walk", "jog"]))
    v = GAITS[gait][0] * ctx.subj.scale * 0.8
    T = min(max_frames, int(rng.integers(120, 196)))
    legs = int(rng.integers(3, 6))
    amp = rng.uniform(0.5, 0.9)
    t = np.arange(T)
    a, b = 6, T - 6
    # Travel direction swings between +amp and -amp in smooth legs.
    ph = np.clip((t - a) / (b - a), 0, 1) * legs
    k = np.floor(ph)
    frac = ph - k
    sgn = np.where(k % 2 == 0, 1.0, -1.0)
    travel = amp * (sgn * (1 - 2 * smoothstep(np.clip((frac - 0.75) / 0.25, 0, 1))))
    travel = np.where(t < a + 3, amp, travel)
    speed = v * window(T, a, b, 14)
    pose = _locomote(ctx, T, travel, travel.copy(), speed, gait, [(a, b)])
    verb, ger = ("walks", "walking") if gait == "walk" else ("jogs", "jogging")
    clauses = [
        (f"{verb} in a zigzag", f"{ger} in a zigzag"),
        (f"{verb} forward in a zig zag pattern", f"{ger} forward in a zig zag pattern"),
        (f"{verb} from side to side while moving forward", f"{ger} from side to side"),
        (f"{verb} diagonally left and right", f"{ger} diagonally left and right"),
    ]
    return Action("zigzag", pose, clauses, {"gait": gait, "legs": legs})


@family("locomotion", min_frames=110)
def stop_and_go(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    gait = str(rng.choice(["walk", "walk", "jog"]))
    v = GAITS[gait][0] * ctx.subj.scale * 0.9
    T = min(max_frames, int(rng.integers(130, 196)))
    a, b = 6, T - 6
    pause = int(rng.integers(16, 30))
    m = (a + b - pause) // 2
    windows = [(a, m), (m + pause, b)]
    speed = v * (window(T, a, m, 12) + window(T, m + pause, b, 12))
    travel = np.zeros(T)
    pose = _locomote(ctx, T, travel, travel.copy(), speed, gait, windows)
    verb, ger = ("walks", "walking") if gait == "walk" else ("jogs", "jogging")
    clauses = [
        (f"{verb} forward, stops, then {verb} forward again", f"{ger}, stopping and {ger} again"),
        (f"{verb} forward, pauses briefly and continues", f"{ger} forward with a short pause"),
        (f"{verb} a few steps, stops, and then {verb} on", f"{ger} with a stop in the middle"),
        (f"{verb} forward with a pause in between", f"{ger} forward with a pause in between"),
    ]
    return Action("stop_and_go", pose, clauses, {"gait": gait, "pause_frames": pause})


@family("locomotion", min_frames=60)
def turn_around(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    side = str(rng.choice(SIDES))
    angle = float(rng.choice([np.pi, np.pi, np.pi / 2, 2 * np.pi]))
    T = min(max_frames, int(40 + angle * 18 + rng.integers(0, 20)))
    a, b = 6, T - 6
    sgn = 1 if side == "left" else -1
    heading = sgn * angle * smoothstep((np.arange(T) - a) / (b - a))
    pose = _locomote(ctx, T, heading, heading, np.zeros(T), "walk", [(a, b)], cycle_scale=0.8)
    if angle > 4:
        clauses = [(f"spins around to the {side} in a full circle", f"spinning around to the {side}"),
                   ("turns all the way around", "turning all the way around"),
                   (f"turns around once in place to the {side}", "turning around once in place"),
                   ("does a full turn in place", "doing a full turn in place")]
    elif angle > 3:
        clauses = [("turns around", "turning around"),
                   (f"turns around to the {side}", f"turning around to the {side}"),
                   ("turns to face the other way", "turning to face the other way"),
                   ("turns back in place", "turning back in place")]
    else:
        clauses = [(f"turns to the {side}", f"turning to the {side}"),
                   (f"turns ninety degrees to {{his}} {side}", f"turning to {{his}} {side}"),
                   (f"steps in place and faces {side}", f"turning {side} in place"),
                   (f"rotates {{his}} body to the {side}", f"rotating to the {side}")]
    return Action("turn_around", pose, clauses, {"side": side, "angle_deg": round(np.degrees(angle))})


@family("locomotion", carrier=True, min_frames=60)
def march_in_place(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    T = min(max_frames, int(rng.integers(60, 160)))
    a, b = 6, T - 6
    lift = rng.uniform(0.1, 0.25) * ctx.subj.scale
    pose = _locomote(ctx, T, np.zeros(T), np.zeros(T), np.zeros(T), "walk", [(a, b)], knee_lift=lift, cycle_scale=0.9)
    high = " with high knees" if lift > 0.18 else ""
    clauses = [
        (f"marches in place{high}", f"marching in place{high}"),
        ("walks in place, lifting {his} knees", "walking in place"),
        ("steps up and down on the spot", "stepping on the spot"),
        (f"marches on the spot{high}", f"marching on the spot{high}"),
    ]
    return Action("march_in_place", pose, clauses, {"knee_lift": round(lift, 2)})


# --------------------------------------------------------------------------- arm gestures


def _gesture_frame(ctx: Ctx, max_frames: int, active_frames: float, lo=40):
    rng = ctx.rng
    pre, post = int(rng.integers(4, 12)), int(rng.integers(4, 12))
    T = int(min(max_frames, max(lo, pre + active_frames + post)))
    return T, pre, T - post


def _arm_len(subj):
    la, lb = subj.arm
    return la + lb


def _set_arm(pose: Pose, s: int, target: np.ndarray, pole, weight: np.ndarray) -> None:
    pose.wrist[s] = _lerp(pose.wrist[s], target, weight)
    pose.elbow_pole[s] = _lerp(pose.elbow_pole[s], np.broadcast_to(pole, pose.elbow_pole[s].shape), weight)


@family("arm", overlay=True)
def wave(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    s = int(rng.integers(0, 2))
    reps = int(rng.integers(2, 7))
    per = rng.uniform(8, 12)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per + 20)
    L = _arm_len(ctx.subj)
    pose = neutral(ctx.subj, T)
    up = window(T, a, b, 10)
    ph = rep_phase(T, a + 10, b - 10, reps)
    sx = SIDE_SIGN[s]
    target = np.stack([sx * (0.3 + 0.14 * np.sin(2 * np.pi * ph)) * L, np.full(T, 0.5 * L), np.full(T, 0.15 * L)], -1)
    _set_arm(pose, s, target, np.array([sx, -1.0, 0.2]), up)
    pose.collar[:, s] = 0.1 * up
    pose.neck[:, 2] = sx * 0.2 * up
    add_idle_noise(pose, rng)
    side = SIDES[s]
    clauses = [
        (f"waves with {{his}} {side} hand", f"waving {{his}} {side} hand"),
        (f"raises {{his}} {side} hand and waves", f"waving with {{his}} {side} hand"),
        (f"waves hello with {{his}} {side} arm", f"waving hello with {{his}} {side} arm"),
        (f"waves {{his}} {side} hand {_times(reps) if reps <= 3 else 'back and forth'}", f"waving {{his}} {side} hand"),
    ]
    return Action("wave", pose, clauses, {"side": side, "reps": reps}, arms=(s,))


@family("arm", overlay=True)
def raise_arm(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    s = int(rng.integers(0, 2))
    how = str(rng.choice(["up", "forward", "side"]))
    reps = int(rng.integers(1, 4))
    hold = rng.uniform(6, 20)
    per = 20 + hold
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    L = _arm_len(ctx.subj)
    pose = neutral(ctx.subj, T)
    sx = SIDE_SIGN[s]
    tgt = {"up": [sx * 0.12, 0.96, 0.08], "forward": [sx * 0.05, 0.0, 0.97], "side": [sx * 0.97, 0.05, 0.05]}[how]
    pole = {"up": [sx, 0, -1.0], "forward": [sx, -1.0, 0], "side": [0, -1.0, -1.0]}[how]
    ph = rep_phase(T, a, b, reps)
    w = smoothstep(np.clip(np.minimum(ph % 1, 1 - ph % 1) * per / 10, 0, 1)) * (ph < reps)
    _set_arm(pose, s, np.array(tgt) * L, np.array(pole), w)
    if how == "up":
        pose.collar[:, s] = 0.25 * w
    add_idle_noise(pose, rng)
    side = SIDES[s]
    where = {"up": "above {his} head", "forward": "in front of {him}", "side": "out to the side"}[how]
    rep = "" if reps == 1 else f" {_times(reps)}"
    clauses = [
        (f"raises {{his}} {side} arm {where}{rep}", f"raising {{his}} {side} arm {where}"),
        (f"lifts {{his}} {side} arm {how if how != 'side' else 'sideways'} and lowers it{rep}",
         f"lifting {{his}} {side} arm"),
        (f"puts {{his}} {side} hand {'up' if how == 'up' else 'out'}{rep}", f"putting {{his}} {side} hand {'up' if how == 'up' else 'out'}"),
        (f"raises {{his}} {side} arm{rep}", f"raising {{his}} {side} arm"),
    ]
    return Action("raise_arm", pose, clauses, {"side": side, "how": how, "reps": reps}, arms=(s,))


@family("arm", overlay=True)
def raise_both_arms(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    how = str(rng.choice(["up", "forward", "side"]))
    reps = int(rng.integers(1, 4))
    hold = rng.uniform(6, 20)
    per = 20 + hold
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    L = _arm_len(ctx.subj)
    pose = neutral(ctx.subj, T)
    ph = rep_phase(T, a, b, reps)
    w = smoothstep(np.clip(np.minimum(ph % 1, 1 - ph % 1) * per / 10, 0, 1)) * (ph < reps)
    for s in range(2):
        sx = SIDE_SIGN[s]
        tgt = {"up": [sx * 0.12, 0.96, 0.08], "forward": [sx * 0.02, 0.0, 0.97], "side": [sx * 0.97, 0.05, 0.05]}[how]
        pole = {"up": [sx, 0, -1.0], "forward": [sx, -1.0, 0], "side": [0, -1.0, -1.0]}[how]
        _set_arm(pose, s, np.array(tgt) * L, np.array(pole), w)
        if how == "up":
            pose.collar[:, s] = 0.25 * w
    add_idle_noise(pose, rng)
    where = {"up": "above {his} head", "forward": "in front of {him}", "side": "out to the sides"}[how]
    rep = "" if reps == 1 else f" {_times(reps)}"
    clauses = [
        (f"raises both arms {where}{rep}", f"raising both arms {where}"),
        (f"lifts both of {{his}} arms {where} and puts them down{rep}", f"lifting both arms {where}"),
        (f"puts both hands {'up in the air' if how == 'up' else 'out'}{rep}", "holding both hands out" if how != "up" else "holding both hands up"),
        (f"raises {{his}} arms{rep}", "raising {his} arms"),
    ]
    return Action("raise_both_arms", pose, clauses, {"how": how, "reps": reps}, arms=(0, 1))


@family("arm", overlay=True)
def clap(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    reps = int(rng.integers(2, 9))
    per = rng.uniform(6, 9)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per + 16)
    L = _arm_len(ctx.subj)
    subj = ctx.subj
    pose = neutral(subj, T)
    up = window(T, a, b, 8)
    ph = rep_phase(T, a + 8, b - 8, reps)
    sh_x = abs(subj.offsets[13, 0] + subj.offsets[16, 0])
    gap = 0.5 * (0.5 - 0.5 * np.cos(2 * np.pi * ph)) * 0.25 * subj.scale
    for s in range(2):
        sx = SIDE_SIGN[s]
        x = -sx * (sh_x - 0.03 * subj.scale - gap)
        target = np.stack([x, np.full(T, -0.12 * L), np.full(T, 0.55 * L)], -1)
        _set_arm(pose, s, target, np.array([sx, -1.0, -0.3]), up)
    add_idle_noise(pose, rng)
    clauses = [
        (f"claps {{his}} hands {_times(reps)}" if reps <= 4 else "claps {his} hands several times", "clapping {his} hands"),
        ("claps in front of {his} chest", "clapping in front of {his} chest"),
        ("brings {his} hands together and claps", "clapping"),
        ("applauds by clapping", "applauding"),
    ]
    return Action("clap", pose, clauses, {"reps": reps}, arms=(0, 1))


@family("arm", overlay=True)
def punch(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    mode = str(rng.choice(["left", "right", "both"]))
    reps = int(rng.integers(1, 7)) if mode != "both" else int(rng.integers(2, 9))
    per = rng.uniform(7, 11)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per + 20)
    L = _arm_len(ctx.subj)
    pose = neutral(ctx.subj, T)
    guard = window(T, a, b, 10)
    ph = rep_phase(T, a + 10, b - 10, reps)
    k = np.minimum(np.floor(ph), reps - 1)
    u = ph - k
    ext = np.sin(np.pi * np.clip(u * 1.1, 0, 1)) ** 2 * (ph < reps) * (ph > 0)
    for s in range(2):
        sx = SIDE_SIGN[s]
        chamber = np.array([sx * 0.02, -0.35 * L, 0.3 * L])
        jab = np.array([-sx * 0.12 * L, 0.02 * L, 0.98 * L])
        if mode == "both":
            mine = (k % 2 == s) * ext
        else:
            mine = ext * (SIDES[s] == mode)
        target = _lerp(chamber[None], jab[None], mine)
        _set_arm(pose, s, target, np.array([sx, -1.0, -0.5]), guard)
        pose.spine[:, 2] += -sx * 0.25 * mine
    add_idle_noise(pose, rng)
    if mode == "both":
        clauses = [("punches with both fists, alternating", "punching with both fists"),
                   ("throws punches with {his} left and right hands", "throwing punches"),
                   (f"boxes, punching {COUNT_WORDS.get(reps, 'several')} times", "boxing"),
                   ("punches forward with alternating arms", "punching forward")]
    else:
        rep = _times(reps) if reps <= 3 else "repeatedly"
        clauses = [(f"punches with {{his}} {mode} hand", f"punching with {{his}} {mode} hand"),
                   (f"punches forward with {{his}} {mode} arm {rep}", f"punching forward with {{his}} {mode} arm"),
                   (f"throws a {mode} punch" if reps == 1 else f"throws {mode} punches", f"throwing {mode} punches"),
                   (f"jabs {{his}} {mode} fist forward {rep}", f"jabbing {{his}} {mode} fist forward")]
    return Action("punch", pose, clauses, {"side": mode, "reps": reps}, arms=(0, 1))


@family("arm", overlay=True)
def throw(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    s = int(rng.integers(0, 2))
    reps = int(rng.integers(1, 3))
    per = rng.uniform(24, 32)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    L = _arm_len(ctx.subj)
    pose = neutral(ctx.subj, T)
    sx = SIDE_SIGN[s]
    ph = rep_phase(T, a, b, reps)
    u = ph % 1 * (ph < reps)
    keys_u = np.array([0.0, 0.4, 0.55, 0.7, 1.0])
    keys = np.array([
        arm_hang(ctx.subj, s),
        [sx * 0.35 * L, 0.5 * L, -0.55 * L],
        [sx * 0.15 * L, 0.55 * L, 0.75 * L],
        [-sx * 0.2 * L, -0.5 * L, 0.6 * L],
        arm_hang(ctx.subj, s),
    ])
    target = np.stack([np.interp(u, keys_u, keys[:, i]) for i in range(3)], -1)
    from scipy.ndimage import gaussian_filter1d

    target = gaussian_filter1d(target, 1.5, axis=0, mode="nearest")
    _set_arm(pose, s, target, np.array([sx, -0.3, -1.0]), np.ones(T))
    twist = np.interp(u, [0, 0.4, 0.6, 0.8, 1.0], [0, sx * 0.45, -sx * 0.3, -sx * 0.2, 0])
    pose.spine[:, 2] += gaussian_filter1d(twist, 1.5, mode="nearest")
    pose.spine[:, 0] += gaussian_filter1d(np.interp(u, [0, 0.4, 0.65, 1.0], [0, -0.1, 0.3, 0]), 1.5, mode="nearest")
    add_idle_noise(pose, rng)
    side = SIDES[s]
    rep = "" if reps == 1 else f" {_times(reps)}"
    clauses = [(f"throws something with {{his}} {side} hand{rep}", f"throwing something with {{his}} {side} hand"),
               (f"throws a ball overhand with {{his}} {side} arm{rep}", f"throwing a ball with {{his}} {side} arm"),
               (f"winds up and throws with {{his}} {side} arm{rep}", "winding up and throwing"),
               (f"makes a throwing motion with {{his}} {side} hand{rep}", "making a throwing motion")]
    return Action("throw", pose, clauses, {"side": side, "reps": reps}, arms=(s,))


@family("arm", overlay=True)
def point(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    s = int(rng.integers(0, 2))
    where = str(rng.choice(["forward", "side", "up"]))
    hold = rng.uniform(10, 40)
    T, a, b = _gesture_frame(ctx, max_frames, hold + 20)
    L = _arm_len(ctx.subj)
    pose = neutral(ctx.subj, T)
    sx = SIDE_SIGN[s]
    w = window(T, a, b, 10)
    tgt = {"forward": [sx * 0.0, 0.12, 0.98], "side": [sx * 0.98, 0.12, 0.1], "up": [sx * 0.3, 0.9, 0.35]}[where]
    _set_arm(pose, s, np.array(tgt) * L, np.array([sx, -1.0, 0.0]), w)
    pose.neck[:, 2] += (sx * 0.5 if where == "side" else 0.0) * w
    pose.neck[:, 0] += (-0.3 if where == "up" else 0.0) * w
    add_idle_noise(pose, rng)
    side = SIDES[s]
    dir_txt = {"forward": "straight ahead", "side": f"to the {side}", "up": "up at the sky"}[where]
    clauses = [(f"points {dir_txt} with {{his}} {side} hand", f"pointing {dir_txt} with {{his}} {side} hand"),
               (f"points {dir_txt}", f"pointing {dir_txt}"),
               (f"extends {{his}} {side} arm and points {dir_txt}", f"pointing {dir_txt}"),
               (f"uses {{his}} {side} index finger to point {dir_txt}", f"pointing {dir_txt} with a finger")]
    return Action("point", pose, clauses, {"side": side, "where": where}, arms=(s,))


# --------------------------------------------------------------------------- lower body


@family("lower")
def squat(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    per = rng.uniform(26, 40)
    reps = _fit_reps(max_frames, 16, per, 1, 5, rng)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    pose = neutral(subj, T)
    depth = rng.uniform(0.25, 0.42)
    ph = rep_phase(T, a, b, reps)
    d = np.sin(np.pi * (ph % 1)) ** 2 * (ph < reps)
    h = subj.hip_height
    pose.pelvis[:, 1] -= depth * h * d
    pose.pelvis[:, 2] -= 0.25 * depth * h * d
    pose.pelvis_tilt[:, 0] += 0.7 * depth * 2 * d
    pose.spine[:, 0] += 0.2 * d
    arms_fwd = rng.random() < 0.6
    if arms_fwd:
        L = _arm_len(subj)
        for s in range(2):
            _set_arm(pose, s, np.array([SIDE_SIGN[s] * 0.05, -0.05, 0.97]) * L, np.array([SIDE_SIGN[s], -1.0, 0]), d)
    for s in range(2):
        pose.ankle[s][:, 0] *= 1.6
    add_idle_noise(pose, rng)
    deep = "deep " if depth > 0.36 else ""
    clauses = [(f"squats down {_times(reps)}" if reps > 1 else "squats down and stands back up", "squatting"),
               (f"does {COUNT_WORDS[reps]} {deep}squat{'s' if reps > 1 else ''}", f"doing {deep}squats"),
               (f"bends {{his}} knees and lowers {{him}}self {_times(reps)}", "bending {his} knees"),
               (f"performs {deep}squats{' with arms held out' if arms_fwd else ''}", "performing squats")]
    return Action("squat", pose, clauses, {"reps": reps, "depth": round(depth, 2), "arms_forward": arms_fwd}, arms=(0, 1))


def _step_foot(pose: Pose, s: int, t0: float, t1: float, new_xz, clearance: float):
    """Swing foot ``s`` to ``new_xz`` over frames [t0, t1] (stays there after)."""
    t = np.arange(pose.T, dtype=np.float64)
    u = np.clip((t - t0) / max(t1 - t0, 1e-6), 0, 1)
    e = smoothstep(u)
    start = pose.ankle[s][int(np.clip(np.floor(t0), 0, pose.T - 1))].copy()
    new = np.array([new_xz[0], start[1], new_xz[1]])
    path = start[None] + e[:, None] * (new - start)[None]
    path[:, 1] += clearance * np.sin(np.pi * u)
    sel = t >= t0
    pose.ankle[s][sel] = path[sel]


@family("lower", min_frames=60)
def lunge(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    mode = str(rng.choice(["left", "right", "alternate"]))
    per = rng.uniform(34, 46)
    reps = _fit_reps(max_frames, 16, per, 1, 4, rng)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    pose = neutral(subj, T)
    length = rng.uniform(0.5, 0.7) * subj.scale
    h = subj.hip_height
    for r in range(reps):
        s = r % 2 if mode == "alternate" else SIDES.index(mode)
        t0 = a + r * per
        x0 = pose.ankle[s][0, 0]
        _step_foot(pose, s, t0, t0 + 8, (x0, length), 0.06 * subj.scale)
        _step_foot(pose, s, t0 + per - 9, t0 + per - 1, (x0, 0.0), 0.06 * subj.scale)
        d = window(T, t0 + 6, t0 + per - 6, 9)
        pose.pelvis[:, 1] -= 0.22 * h * d
        pose.pelvis[:, 2] += 0.45 * length * d
    pose.spine[:, 0] += 0.05
    add_idle_noise(pose, rng)
    if mode == "alternate":
        clauses = [("does lunges, alternating legs", "doing alternating lunges"),
                   ("lunges forward with one leg then the other", "lunging forward"),
                   (f"performs {COUNT_WORDS.get(reps, 'several')} alternating forward lunges", "performing lunges"),
                   ("steps forward into a lunge with each leg", "lunging with each leg")]
    else:
        rep = _times(reps)
        clauses = [(f"lunges forward with {{his}} {mode} leg {rep}", f"lunging forward with {{his}} {mode} leg"),
                   (f"steps forward with the {mode} foot into a lunge and steps back", f"lunging with the {mode} foot"),
                   (f"does {COUNT_WORDS[reps]} {mode} leg lunge{'s' if reps > 1 else ''}", "doing lunges"),
                   (f"bends {{his}} knees in a lunge, {mode} foot in front", "lunging")]
    return Action("lunge", pose, clauses, {"side": mode, "reps": reps, "length": round(length, 2)})


@family("lower")
def kick(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    s = int(rng.integers(0, 2))
    height = str(rng.choice(["low", "medium", "high"]))
    per = rng.uniform(16, 24)
    reps = _fit_reps(max_frames, 22, per, 1, 4, rng)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per + 10)
    pose = neutral(subj, T)
    h = subj.hip_height
    l1, l2 = subj.leg
    ph = rep_phase(T, a + 5, b - 5, reps)
    u = ph % 1 * (ph < reps)
    ext = np.sin(np.pi * u)
    ext2 = np.sin(np.pi * np.clip((u - 0.2) / 0.6, 0, 1)) ** 2
    y = {"low": 0.15, "medium": 0.45, "high": 0.7}[height] * h
    sx = SIDE_SIGN[s]
    base = pose.ankle[s][0]
    target = np.stack([np.full(T, base[0]), base[1] + ext * 0.2 * h + ext2 * y, ext2 * 0.85 * (l1 + l2) - 0.05 * ext], -1)
    pose.ankle[s] = target
    pose.foot_pitch[s] = 0.5 * ext2
    # Shift weight over the standing foot and lean back while kicking.
    shift = window(T, a, b, 5)
    pose.pelvis[:, 0] += -sx * 0.05 * shift * subj.scale
    pose.pelvis_tilt[:, 0] -= 0.25 * ext2 * ({"low": 0.3, "medium": 0.7, "high": 1.0}[height])
    L = _arm_len(subj)
    for a_s in range(2):
        _set_arm(pose, a_s, np.array([SIDE_SIGN[a_s] * 0.6, -0.4, 0.3]) * L, np.array([SIDE_SIGN[a_s], -1.0, 0]), 0.6 * shift)
    add_idle_noise(pose, rng, 0.5)
    side = SIDES[s]
    rep = "" if reps == 1 else f" {_times(reps)}"
    clauses = [(f"kicks with {{his}} {side} leg{rep}", f"kicking with {{his}} {side} leg"),
               (f"kicks {{his}} {side} foot forward{rep}", f"kicking {{his}} {side} foot forward"),
               (f"does a {height} front kick with the {side} leg{rep}", f"doing {height} front kicks"),
               (f"lifts {{his}} {side} leg and kicks{rep}", f"kicking with the {side} leg")]
    return Action("kick", pose, clauses, {"side": side, "height": height, "reps": reps}, arms=(0, 1))


def _ballistic(pose: Pose, subj: Subject, t_off: float, t_land: float, apex: float, shift=(0.0, 0.0),
               feet=(0, 1), spread=None, dip=0.18, arms_swing=True):
    """One jump on the given feet: dip, take off, fly, land, recover (frames)."""
    T = pose.T
    t = np.arange(T, dtype=np.float64)
    h = subj.hip_height
    # Dip before and after; flight between.
    dip_w = window(T, t_off - 9, t_off + 1, 5) + window(T, t_land - 1, t_land + 10, 5)
    pose.pelvis[:, 1] -= dip * h * dip_w
    pose.pelvis_tilt[:, 0] += 0.35 * dip_w
    fly = (t > t_off) & (t < t_land)
    u = np.clip((t - t_off) / (t_land - t_off), 0, 1)
    rise = 4 * apex * u * (1 - u)
    pose.pelvis[:, 1] += np.where(fly, rise, 0.0)
    dx = np.array([shift[0], 0.0, shift[1]])
    pose.pelvis += u[:, None] * dx[None]
    for s in feet:
        start = pose.ankle[s][int(t_off)].copy()
        end = start + dx
        if spread is not None:
            end[0] = spread[s]
        pos = start[None] + u[:, None] * (end - start)[None]
        pos[:, 1] = start[1] + np.where(fly, rise * 0.9, 0.0)
        sel = t > t_off
        pose.ankle[s][sel] = pos[sel]
        pose.foot_pitch[s] += np.where(fly, 0.4 * np.sin(np.pi * u), 0.0)
    if arms_swing:
        L = subj.arm[0] + subj.arm[1]
        for s in range(2):
            back = np.array([SIDE_SIGN[s] * 0.1, -0.85, -0.45]) * L
            up = np.array([SIDE_SIGN[s] * 0.15, 0.3, 0.8]) * L
            wb = window(T, t_off - 9, t_off - 1, 4)
            wu = window(T, t_off - 1, t_land, 3)
            pose.wrist[s] = _lerp(_lerp(pose.wrist[s], back[None], wb), up[None], wu)


@family("lower")
def jump(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    mode = str(rng.choice(["in place", "forward", "forward", "up high"]))
    per = rng.uniform(26, 34)
    reps = _fit_reps(max_frames, 16, per, 1, 3, rng)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    pose = neutral(subj, T)
    apex = (0.35 if mode == "up high" else 0.18) * subj.scale * rng.uniform(0.8, 1.2)
    flight = 2 * np.sqrt(2 * apex / 9.81) * FPS
    dist = rng.uniform(0.4, 0.9) * subj.scale if mode == "forward" else 0.0
    for r in range(reps):
        t_off = a + r * per + 11
        _ballistic(pose, subj, t_off, t_off + flight, apex, shift=(0.0, dist))
    add_idle_noise(pose, rng, 0.5)
    rep = _times(reps)
    if mode == "forward":
        clauses = [(f"jumps forward {rep}", "jumping forward"),
                   (f"leaps forward with both feet {rep}", "leaping forward"),
                   (f"does {COUNT_WORDS[reps]} forward jump{'s' if reps > 1 else ''}", "doing forward jumps"),
                   ("hops forward on both feet" if reps > 1 else "jumps ahead", "jumping ahead")]
    else:
        high = " high" if mode == "up high" else ""
        clauses = [(f"jumps{high} in place {rep}", f"jumping{high} in place"),
                   (f"jumps straight up{high and ' as high as possible'} {rep}", "jumping straight up"),
                   (f"bends {{his}} knees and jumps up {rep}", "jumping up"),
                   (f"does {COUNT_WORDS[reps]} vertical jump{'s' if reps > 1 else ''}", "doing vertical jumps")]
    return Action("jump", pose, clauses, {"mode": mode, "reps": reps, "distance": round(dist, 2)}, arms=(0, 1))


@family("lower", min_frames=64)
def hop(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    s = int(rng.integers(0, 2))
    per = rng.uniform(10, 14)
    reps = _fit_reps(max_frames, 36, per, 2, 8, rng)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per + 24)
    pose = neutral(subj, T)
    h = subj.hip_height
    lift = window(T, a, b, 8)
    other = 1 - s
    pose.ankle[other][:, 1] += 0.3 * h * lift
    pose.ankle[other][:, 2] -= 0.15 * h * lift
    pose.pelvis[:, 0] += SIDE_SIGN[other] * -0.06 * subj.scale * lift
    fwd = rng.random() < 0.4
    apex = 0.08 * subj.scale
    flight = 2 * np.sqrt(2 * apex / 9.81) * FPS
    for r in range(reps):
        t_off = a + 12 + r * per + 3
        _ballistic(pose, subj, t_off, t_off + flight, apex, shift=(0.0, 0.15 * subj.scale if fwd else 0.0),
                   feet=(s,), dip=0.06, arms_swing=False)
    # The raised foot travels with the body.
    if fwd:
        travelled = pose.pelvis[:, 2] - pose.pelvis[0, 2]
        pose.ankle[other][:, 2] += travelled * lift
        # The lifted foot comes down next to the stance foot.
        end_z = pose.ankle[s][-1, 2]
        pose.ankle[other][:, 2] = np.where(np.arange(T) > b - 8, _lerp(pose.ankle[other][:, 2:3], np.full((T, 1), end_z), 1 - lift)[:, 0], pose.ankle[other][:, 2])
    L = _arm_len(subj)
    for a_s in range(2):
        _set_arm(pose, a_s, np.array([SIDE_SIGN[a_s] * 0.5, -0.6, 0.2]) * L, ELBOW, 0.7 * lift)
    add_idle_noise(pose, rng, 0.5)
    side = SIDES[s]
    clauses = [(f"hops on {{his}} {side} foot", f"hopping on {{his}} {side} foot"),
               (f"hops on {{his}} {side} leg {_times(reps) if reps <= 4 else 'several times'}", "hopping on one leg"),
               (f"stands on {{his}} {side} leg and hops{' forward' if fwd else ''}", f"hopping{' forward' if fwd else ''} on the {side} leg"),
               (f"lifts {{his}} {SIDES[other]} foot and hops on the {side} one", f"hopping on the {side} foot")]
    return Action("hop", pose, clauses, {"side": side, "reps": reps, "forward": fwd})


ELBOW = np.array([0.0, -1.0, -0.5])


@family("lower", min_frames=80)
def step_up(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    s = int(rng.integers(0, 2))
    height = rng.uniform(0.15, 0.35) * subj.scale
    hold = min(rng.uniform(6, 30), max_frames - 78)
    T, a, b = _gesture_frame(ctx, max_frames, 60 + hold)
    pose = neutral(subj, T)
    o = 1 - s
    dz = 0.45 * subj.scale
    ys, yo = pose.ankle[s][0, 1], pose.ankle[o][0, 1]
    t = np.arange(T, dtype=np.float64)

    def step(f, t0, t1, z0, z1, y0, y1, clear):
        u = np.clip((t - t0) / (t1 - t0), 0, 1)
        e = smoothstep(u)
        sel = t >= t0
        pose.ankle[f][sel, 2] = (z0 + (z1 - z0) * e)[sel]
        pose.ankle[f][sel, 1] = (y0 + (y1 - y0) * e + clear * np.sin(np.pi * u))[sel]

    # Up: lead foot, body, trailing foot; down in reverse.
    step(s, a, a + 10, 0.0, dz, ys, ys + height, 0.08)
    step(o, a + 16, a + 26, 0.0, dz, yo, yo + height, 0.08)
    t2 = a + 26 + hold
    step(o, t2, t2 + 10, dz, 0.0, yo + height, yo, 0.06)
    step(s, t2 + 16, t2 + 26, dz, 0.0, ys + height, ys, 0.06)
    up = smoothstep((t - a - 6) / 16) * (1 - smoothstep((t - t2 - 4) / 18))
    pose.pelvis[:, 1] += height * up
    pose.pelvis[:, 2] += dz * up
    pose.pelvis_tilt[:, 0] += 0.15 * (window(T, a, a + 26, 8) + window(T, t2, t2 + 26, 8))
    add_idle_noise(pose, rng, 0.5)
    side = SIDES[s]
    clauses = [("steps up onto something and steps back down", "stepping up and down"),
               (f"steps up onto a platform with {{his}} {side} foot first, then steps down", "stepping up onto a platform"),
               ("climbs onto a step and then gets back down", "climbing onto a step"),
               ("steps onto a box and back down again", "stepping onto a box")]
    return Action("step_up", pose, clauses, {"side": side, "height": round(height, 2)})


# --------------------------------------------------------------------------- whole body


@family("whole")
def jumping_jacks(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    per = rng.uniform(14, 20)
    reps = _fit_reps(max_frames, 16, per, 2, 8, rng)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    pose = neutral(subj, T)
    apex = 0.06 * subj.scale
    flight = 2 * np.sqrt(2 * apex / 9.81) * FPS
    w0 = pose.ankle[0][0, 0]
    wide = w0 + 0.22 * subj.scale
    L = _arm_len(subj)
    t = np.arange(T, dtype=np.float64)
    arms = np.zeros(T)
    for r in range(reps):
        t_out = a + r * per + 2
        t_in = t_out + per / 2
        _ballistic(pose, subj, t_out, t_out + flight, apex, spread=(wide, -wide), dip=0.05, arms_swing=False)
        _ballistic(pose, subj, t_in, t_in + flight, apex, spread=(w0, -w0), dip=0.05, arms_swing=False)
        arms += np.sin(np.pi * np.clip((t - t_out) / per, 0, 1))
    arms = np.clip(arms, 0, 1)
    for s in range(2):
        sx = SIDE_SIGN[s]
        side_up = np.array([sx * 0.97, 0.0, 0.05]) * L
        over = np.array([sx * 0.2, 0.95, 0.05]) * L
        tgt = np.where(arms[:, None] < 0.5, _lerp(pose.wrist[s], side_up[None], arms * 2),
                       _lerp(np.broadcast_to(side_up, (T, 3)), over[None], arms * 2 - 1))
        _set_arm(pose, s, tgt, np.array([0.0, -1.0, -1.0]), np.ones(T))
        pose.collar[:, s] = 0.25 * arms
    add_idle_noise(pose, rng, 0.5)
    clauses = [(f"does {COUNT_WORDS.get(reps, 'several')} jumping jacks", "doing jumping jacks"),
               ("does jumping jacks", "doing jumping jacks"),
               ("jumps while spreading {his} legs and raising {his} arms over {his} head", "doing star jumps"),
               ("performs star jumps", "performing star jumps")]
    return Action("jumping_jacks", pose, clauses, {"reps": reps}, arms=(0, 1))


@family("whole")
def bow(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    depth = rng.uniform(0.5, 1.2)
    hold = rng.uniform(6, 30)
    reps = int(rng.integers(1, 3))
    per = 24 + hold
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    pose = neutral(subj, T)
    ph = rep_phase(T, a, b, reps)
    w = smoothstep(np.clip(np.minimum(ph % 1, 1 - ph % 1) * per / 12, 0, 1)) * (ph < reps)
    pose.pelvis_tilt[:, 0] += 0.6 * depth * w
    pose.spine[:, 0] += 0.5 * depth * w
    pose.pelvis[:, 2] -= 0.12 * depth * subj.scale * w
    pose.neck[:, 0] += 0.2 * w
    add_idle_noise(pose, rng, 0.5)
    deep = "deeply " if depth > 0.9 else ""
    rep = "" if reps == 1 else f" {_times(reps)}"
    clauses = [(f"bows {deep}{rep}".rstrip(), "bowing"),
               (f"bends forward at the waist in a {'deep ' if deep else ''}bow{rep}", "bending forward in a bow"),
               (f"takes a {'deep ' if deep else ''}bow and straightens up{rep}", "taking a bow"),
               (f"leans {{his}} upper body forward and back up{rep}", "leaning forward")]
    return Action("bow", pose, clauses, {"depth": round(depth, 2), "reps": reps})


@family("whole", min_frames=80)
def sit_down(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    hold = min(rng.uniform(10, 50), max_frames - 78)
    T, a, b = _gesture_frame(ctx, max_frames, 60 + hold)
    pose = neutral(subj, T)
    h = subj.hip_height
    seat = rng.uniform(0.45, 0.55) * h
    t = np.arange(T, dtype=np.float64)
    down = smoothstep((t - a) / 26) * (1 - smoothstep((t - (b - 28)) / 26))
    trans = window(T, a, a + 28, 10) + window(T, b - 30, b, 10)
    pose.pelvis[:, 1] = pose.pelvis[:, 1] * (1 - down) + seat * down
    pose.pelvis[:, 2] -= 0.32 * h * down
    pose.pelvis_tilt[:, 0] += 0.55 * trans + 0.1 * down
    pose.spine[:, 0] += 0.2 * trans
    L = _arm_len(subj)
    for s in range(2):
        _set_arm(pose, s, np.array([SIDE_SIGN[s] * 0.05, -0.7, 0.5]) * L, np.array([SIDE_SIGN[s], -1.0, -0.5]), down)
    add_idle_noise(pose, rng, 0.7)
    clauses = [("sits down and then stands back up", "sitting down and standing up"),
               ("sits down on a chair, then gets up", "sitting down on a chair"),
               ("lowers {him}self into a seat and stands up again", "sitting down"),
               ("takes a seat, rests for a moment and rises", "taking a seat")]
    return Action("sit_down", pose, clauses, {"seat_height": round(seat, 2), "hold_frames": int(hold)})


@family("whole", min_frames=60)
def crouch(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    hold = min(rng.uniform(10, 50), max_frames - 62)
    T, a, b = _gesture_frame(ctx, max_frames, 44 + hold)
    pose = neutral(subj, T)
    h = subj.hip_height
    w = window(T, a, b, 20)
    pose.pelvis[:, 1] -= 0.5 * h * w
    pose.pelvis[:, 2] -= 0.12 * h * w
    pose.pelvis_tilt[:, 0] += 0.8 * w
    pose.spine[:, 0] += 0.35 * w
    pose.neck[:, 0] -= 0.4 * w
    for s in range(2):
        pose.ankle[s][:, 0] *= 1.5
    L = _arm_len(subj)
    for s in range(2):
        _set_arm(pose, s, np.array([SIDE_SIGN[s] * 0.1, -0.75, 0.55]) * L, np.array([SIDE_SIGN[s], -0.5, -1.0]), w)
    add_idle_noise(pose, rng, 0.6)
    clauses = [("crouches down and stands up again", "crouching down"),
               ("crouches low for a moment, then rises", "crouching low"),
               ("squats down low and stays there briefly before standing", "staying low"),
               ("gets down into a crouch and gets back up", "getting into a crouch")]
    return Action("crouch", pose, clauses, {"hold_frames": int(hold)})


@family("whole")
def dance(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    beat = rng.uniform(9, 14)
    beats = _fit_reps(max_frames, 16, beat, 4, 14, rng)
    T, a, b = _gesture_frame(ctx, max_frames, beats * beat)
    pose = neutral(subj, T)
    w = window(T, a, b, 8)
    ph = rep_phase(T, a, b, beats / 2)
    sway = np.sin(2 * np.pi * ph) * w
    bounce = (0.5 - 0.5 * np.cos(4 * np.pi * ph)) * w
    pose.pelvis[:, 0] += 0.06 * subj.scale * sway
    pose.pelvis[:, 1] -= 0.035 * subj.scale * bounce
    pose.pelvis_tilt[:, 1] += 0.06 * sway
    pose.spine[:, 1] -= 0.15 * sway
    pose.neck[:, 1] += 0.1 * sway
    for s in range(2):
        pose.ankle[s][:, 0] *= 1.5
    L = _arm_len(subj)
    arms_up = rng.random() < 0.5
    for s in range(2):
        sx = SIDE_SIGN[s]
        if arms_up:
            tgt = np.stack([sx * 0.3 + 0.15 * sway, np.full(T, 0.8), np.full(T, 0.15)], -1) * L
        else:
            tgt = np.stack([sx * 0.25 + 0.12 * sway, -0.35 + 0.1 * bounce, 0.45 + 0.1 * np.cos(2 * np.pi * ph + s)], -1) * L
        _set_arm(pose, s, tgt, np.array([sx, -1.0, 0]), w)
    add_idle_noise(pose, rng)
    clauses = [("dances, swaying from side to side", "dancing"),
               (f"sways {{his}} hips to the music{' with arms up' if arms_up else ''}", "swaying to the music"),
               ("dances in place, bouncing to a rhythm", "dancing in place"),
               ("moves {his} body side to side like dancing", "swaying side to side")]
    return Action("dance", pose, clauses, {"beats": beats, "arms_up": arms_up}, arms=(0, 1))


# --------------------------------------------------------------------------- fitness


@family("fitness", composable=False)
def push_up(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    per = rng.uniform(22, 32)
    reps = _fit_reps(max_frames, 14, per, 1, 6, rng)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    pose = neutral(subj, T)
    l1, l2 = subj.leg
    ph = rep_phase(T, a, b, reps)
    down = np.sin(np.pi * (ph % 1)) ** 2 * (ph < reps)
    # Body straight, pivoting about the toes; beta is its angle to the floor.
    beta = 0.42 - 0.27 * down
    reach = (l1 + l2) * 0.99 - subj.offsets[1, 1]
    for s in range(2):
        pose.ankle[s][:, 1] = 0.0
        pose.ankle[s][:, 2] = 0.0
        pose.foot_pitch[s] = 1.25
    pose.pelvis = np.stack([np.zeros(T), 0.1 * subj.scale + reach * np.sin(beta), reach * np.cos(beta)], -1)
    pose.pelvis_tilt[:, 0] = np.pi / 2 - beta
    pose.neck[:, 0] = -0.5
    # Hands on the floor below the shoulders at the top of the movement.
    top = pose.copy()
    top.pelvis_tilt[:, 0] = np.pi / 2 - 0.42
    top.pelvis = np.tile([0.0, 0.1 * subj.scale + reach * np.sin(0.42), reach * np.cos(0.42)], (T, 1))
    pos, _, _ = torso_frames(top, subj)
    pose.wrist_world = np.zeros((2, T, 3))
    pose.wrist_world_w = np.ones((2, T))
    width = rng.uniform(1.0, 1.5)
    for s, sh in ((0, 16), (1, 17)):
        hand = pos[0, sh].copy()
        hand[0] *= width
        hand[1] = 0.03 * subj.scale
        pose.wrist_world[s] = hand
        pose.elbow_pole[s] = np.array([SIDE_SIGN[s] * 0.7, -1.0, 0.0])
    add_idle_noise(pose, rng, 0.3)
    wide = " with hands wide apart" if width > 1.3 else ""
    clauses = [(f"does {COUNT_WORDS[reps]} push up{'s' if reps > 1 else ''}{wide}", "doing push ups"),
               (f"performs push ups on the floor{wide}", "performing push ups"),
               (f"lowers {{his}} chest to the ground and pushes back up {_times(reps)}", "pushing up from the floor"),
               ("is in a plank position doing push ups", "doing push ups in a plank")]
    return Action("push_up", pose, clauses, {"reps": reps, "hand_width": round(width, 2)})


@family("fitness")
def hinge(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    per = rng.uniform(28, 40)
    reps = _fit_reps(max_frames, 16, per, 1, 5, rng)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per)
    pose = neutral(subj, T)
    h = subj.hip_height
    ph = rep_phase(T, a, b, reps)
    d = np.sin(np.pi * (ph % 1)) ** 2 * (ph < reps)
    depth = rng.uniform(0.8, 1.25)
    pose.pelvis_tilt[:, 0] += depth * d
    pose.spine[:, 0] += 0.1 * d
    pose.pelvis[:, 2] -= 0.16 * h * d
    pose.pelvis[:, 1] -= 0.1 * h * d
    pose.neck[:, 0] -= 0.3 * d
    for s in range(2):
        pose.ankle[s][:, 0] *= 1.3
    # Arms hang straight down in the world, as if holding a bar.
    pos, _, _ = torso_frames(pose, subj)
    L = _arm_len(subj)
    pose.wrist_world = np.stack([pos[:, sh] + np.array([0.0, -0.97 * L, 0.03]) for sh in (16, 17)])
    pose.wrist_world_w = np.stack([d, d])
    add_idle_noise(pose, rng, 0.4)
    clauses = [(f"does {COUNT_WORDS[reps]} deadlift{'s' if reps > 1 else ''}", "doing deadlifts"),
               ("bends forward at the hips with a straight back and stands up", "hinging at the hips"),
               (f"picks up something heavy from the floor {_times(reps)}", "lifting something heavy"),
               ("performs a hip hinge exercise", "performing hip hinges")]
    return Action("hinge", pose, clauses, {"reps": reps, "depth": round(depth, 2)}, arms=(0, 1))


@family("fitness", overlay=True)
def arm_circles(ctx: Ctx, max_frames: int) -> Action:
    rng = ctx.rng
    subj = ctx.subj
    direction = str(rng.choice(["forward", "backward"]))
    size = str(rng.choice(["small", "big"]))
    per = rng.uniform(8, 12) if size == "small" else rng.uniform(14, 20)
    reps = _fit_reps(max_frames, 36, per, 3, 10, rng)
    T, a, b = _gesture_frame(ctx, max_frames, reps * per + 20)
    pose = neutral(subj, T)
    L = _arm_len(subj)
    w = window(T, a, b, 10)
    ph = rep_phase(T, a + 10, b - 10, reps)
    r = 0.18 if size == "small" else 0.55
    sgn = 1 if direction == "forward" else -1
    for s in range(2):
        sx = SIDE_SIGN[s]
        ang = 2 * np.pi * ph * sgn
        yy, zz = r * np.sin(ang), r * np.cos(ang)
        xx = np.sqrt(np.maximum(0.95**2 - yy**2 - zz**2, 0.05))
        tgt = np.stack([sx * xx, yy, zz], -1) * L
        _set_arm(pose, s, tgt, np.array([0.0, -1.0, -1.0]), w)
    add_idle_noise(pose, rng, 0.5)
    clauses = [(f"does {size} arm circles {direction}", f"doing {size} arm circles"),
               (f"circles both arms {direction}s", "circling both arms"),
               (f"holds {{his}} arms out to the sides and rotates them in {size} circles", "rotating {his} arms"),
               (f"makes {size} circles with {{his}} outstretched arms", "making circles with {his} arms")]
    return Action("arm_circles", pose, clauses, {"direction": direction, "size": size, "reps": reps}, arms=(0, 1))


def family_groups() -> dict[str, list[str]]:
    """Family names by group: locomotion, arm, lower, whole, fitness."""
    out: dict[str, list[str]] = {}
    for f in FAMILIES.values():
        out.setdefault(f.group, []).append(f.name)
    return out
