"""Prompt-following benchmark: ``python -m vmdm.eval prompts --checkpoint CKPT``.

Captions with a geometric signature, each with a check on the generated joints that a
person would agree with by looking at the motion: a right-hand wave raises the right
wrist above the right shoulder and moves it, "walks backwards" moves the root against
the facing direction, "turns around" changes the heading by about 180 degrees, and so
on. Every caption is sampled ``K`` times (seeded); the report gives each caption's pass
rate, the overall pass rate, and a *chance* reference: the pass rate of each caption's
check on the generations for the captions of the OTHER actions, which is what a model that
ignores the text scores. Writes ``prompts.json`` and ``prompts.md``.

Conventions: joints ``[T, 22, 3]`` in SMPL-22 order (:data:`vmdm.motion.skeleton.SMPL22`),
metres, y up, 20 fps. Headings come from :func:`vmdm.motion.representation.facing_yaw`
(the hip and shoulder lines, as HumanML3D's features measure them); a positive heading
change is a turn to the person's LEFT (counter-clockwise seen from above): the facing
direction ``(sin yaw, cos yaw)`` on the floor rotates towards the left shoulder, checked on
real CMU motion in ``tests/eval/test_prompts.py``.

The thresholds (``THRESHOLDS``) were chosen from the measures of the built-in corpus's own
clips (every single-action family of the default 3000-clip corpus, up to 30 clips each) and
of the real CMU walking, running and jumping trials in ``shared/data/cmu_humanml``: they
sit between the clips of the action and the clips of every other action (the measured
ranges are in ``docs/evaluation.md``, section "Prompt following").
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import sys
import time
from dataclasses import dataclass, field as dc_field
from pathlib import Path

import numpy as np
import torch

from vmdm.cli import field, run_main
from vmdm.data.build.fingerprint import short
from vmdm.motion.representation import facing_yaw
from vmdm.motion.skeleton import SMPL22
from vmdm.eval.geometry import FPS

__all__ = ["THRESHOLDS", "Prompt", "PROMPTS", "BANDAI_PROMPTS", "PROMPT_SETS", "PromptsConfig", "measure", "run_check",
           "check_clip", "chance_rates", "evaluate_prompts", "format_markdown", "main"]

log = logging.getLogger("vmdm.eval.prompts")

_J = {name: i for i, name in enumerate(SMPL22.joint_names)}
PELVIS = _J["pelvis"]
WRIST = {"left": _J["left_wrist"], "right": _J["right_wrist"]}
SHOULDER = {"left": _J["left_shoulder"], "right": _J["right_shoulder"]}
FOOT_JOINTS = (_J["left_ankle"], _J["right_ankle"], _J["left_foot"], _J["right_foot"])

# Every threshold of every check, in one place (see the module docstring for their origin).
THRESHOLDS = {
    # wave: the wrist is above its shoulder in at least this fraction of the frames, and moves
    # side to side (along the body's left-right axis, relative to the shoulder) at least this fast
    # (m/s, mean over its raised frames) and faster than up and down (raising an arm, throwing,
    # arm circles and jumping jacks move it mostly vertically).
    "wave_raised_frac": 0.25,
    "wave_lateral_speed": 0.2,
    # walking backwards: root velocity along the facing direction at most this (m/s, mean over the clip).
    "backward_speed": -0.2,
    # walking / running forward: median of the root's ground speed (m/s, 0.5 s windows) in range,
    # and moving along the facing direction at at least half that speed.
    "walk_speed": (0.6, 2.0),
    "run_speed": (2.2, 6.0),
    # "in a straight line": net ground displacement over path length (0.5 s steps) at least this,
    # and the heading changes by less than this many degrees.
    "straight_ratio": 0.9,
    "straight_heading_deg": 45.0,
    # jump: at least one run of 2..jump_max_frames frames with the pelvis this far above its
    # standing (median) height AND the lowest foot joint this far above the floor (its 10th
    # percentile), metres, while the root's median ground speed stays below jump_max_speed (m/s:
    # the flight phases of running are not jumps).
    "jump_rise": 0.08,
    "jump_feet": 0.05,
    "jump_max_frames": 16,
    "jump_max_speed": 0.6,
    # turn: heading change (last 10 frames vs first 10) within this many degrees of the caption's.
    "turn_tolerance_deg": 30.0,
}


# --------------------------------------------------------------------------- measures


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (SMPL22.num_joints, 3):
        raise ValueError(f"joints: expected [T, {SMPL22.num_joints}, 3] (SMPL-22), got {x.shape}")
    if x.shape[0] < 20:
        raise ValueError(f"joints: the checks need at least 20 frames (1 s at 20 fps), got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("joints: contains NaN or inf")
    return x


def _smooth(x: np.ndarray, w: int) -> np.ndarray:
    """Centred moving average along axis 0 (edges: the mean over the frames that exist)."""
    if w <= 1:
        return x
    k = np.ones(w)
    pad = [(w // 2, w - 1 - w // 2)] + [(0, 0)] * (x.ndim - 1)
    num = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, np.pad(x, pad))
    den = np.convolve(np.pad(np.ones(len(x)), pad[0]), k, mode="valid")
    return num / den.reshape((-1,) + (1,) * (x.ndim - 1))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of every run of True in a boolean vector."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def headings(joints) -> np.ndarray:
    """Unwrapped facing yaw per frame ``[T]`` (radians; increasing = turning left)."""
    j = _np(joints)
    yaw = facing_yaw(torch.from_numpy(j), SMPL22).numpy().astype(np.float64)
    return np.unwrap(yaw)


def measure(joints, fps: float = FPS) -> dict[str, float]:
    """Every quantity the checks read, for one clip ``[T, 22, 3]``."""
    j = _np(joints)
    T = j.shape[0]
    dur = (T - 1) / fps
    yaw = headings(j)
    n = min(10, T // 4)
    turn = float(np.degrees(yaw[-n:].mean() - yaw[:n].mean()))
    root = j[:, PELVIS, :][:, [0, 2]]
    facing = np.stack([np.sin(yaw), np.cos(yaw)], -1)
    step = root[1:] - root[:-1]
    along = float((step * (facing[1:] + facing[:-1]) / 2).sum(-1).sum())
    w = int(round(fps / 2))  # 0.5 s
    coarse = root[::w] if T > 2 * w else root[[0, -1]]
    if len(coarse) < 2 or (T - 1) % w:
        coarse = np.concatenate([coarse, root[-1:]])
    path = float(np.linalg.norm(np.diff(coarse, axis=0), axis=-1).sum())
    net = float(np.linalg.norm(root[-1] - root[0]))
    ground_speed = np.linalg.norm(root[w:] - root[:-w], axis=-1) * fps / w if T > w else np.zeros(1)
    out = {
        "frames": T,
        "turn_deg": turn,
        "along_speed": along / dur,
        "net_m": net,
        "path_m": path,
        "straightness": net / path if path > 1e-6 else 1.0,
        "speed_median": float(np.median(ground_speed)),
    }
    # Jumps: frames where the pelvis is above its standing (median) height AND the lowest foot
    # joint above the floor (its 10th percentile); a jump is a run of such frames no longer
    # than a flight (stepping onto a box stays up).
    pel = _smooth(j[:, PELVIS, 1], 3)
    feet = _smooth(j[:, FOOT_JOINTS, 1].min(axis=1), 3)
    rise, lift = pel - float(np.median(pel)), feet - float(np.percentile(feet, 10))
    airborne = (rise >= THRESHOLDS["jump_rise"]) & (lift >= THRESHOLDS["jump_feet"])
    out["jump_rise"] = float(rise.max())
    out["jump_feet"] = float(lift.max())
    out["jumps"] = sum(1 for a, b in _runs(airborne) if 2 <= b - a <= THRESHOLDS["jump_max_frames"] * fps / FPS)
    # Waves: the wrist relative to its shoulder in the body's frame (lateral = along the body's
    # left-right axis, up x facing); waving is a side-to-side motion with the hand up.
    left_dir = np.stack([np.cos(yaw), -np.sin(yaw)], -1)  # [T, 2] on the (x, z) floor
    for side in ("right", "left"):
        rel = j[:, WRIST[side]] - j[:, SHOULDER[side]]
        raised = rel[:, 1] > 0
        lat = _smooth((rel[:, [0, 2]] * left_dir).sum(-1), 3)
        vert = _smooth(rel[:, 1], 3)
        up = raised[1:] & raised[:-1]
        out[f"{side}_raised_frac"] = float(raised.mean())
        ok = up.sum() >= 5
        out[f"{side}_lateral_speed"] = float((np.abs(np.diff(lat)) * fps)[up].mean()) if ok else 0.0
        out[f"{side}_vertical_speed"] = float((np.abs(np.diff(vert)) * fps)[up].mean()) if ok else 0.0
    return out


# --------------------------------------------------------------------------- checks


def _waving(m: dict, side: str) -> bool:
    lat = m[f"{side}_lateral_speed"]
    return (m[f"{side}_raised_frac"] >= THRESHOLDS["wave_raised_frac"] and lat >= THRESHOLDS["wave_lateral_speed"]
            and lat >= m[f"{side}_vertical_speed"])


def _straight(m: dict) -> bool:
    return m["straightness"] >= THRESHOLDS["straight_ratio"] and abs(m["turn_deg"]) < THRESHOLDS["straight_heading_deg"]


def _forward(m: dict, lo: float, hi: float) -> bool:
    return lo <= m["speed_median"] <= hi and m["along_speed"] >= 0.5 * lo


def run_check(check: str, params: dict, m: dict) -> bool:
    """Whether the measures ``m`` of a clip pass ``check`` with ``params``."""
    if check == "wave":
        other = "left" if params["side"] == "right" else "right"
        return _waving(m, params["side"]) and not _waving(m, other)
    if check == "backward":
        return m["along_speed"] <= THRESHOLDS["backward_speed"] and (not params.get("straight") or _straight(m))
    if check in ("walk", "run"):
        lo, hi = THRESHOLDS[f"{check}_speed"]
        return _forward(m, lo, hi) and (not params.get("straight") or _straight(m))
    if check == "jump":
        return m["jumps"] >= 1 and m["speed_median"] < THRESHOLDS["jump_max_speed"]
    if check == "turn":
        d = m["turn_deg"]
        want = params["deg"]
        if params.get("either_side"):
            d = abs(d)
        return abs(d - want) <= THRESHOLDS["turn_tolerance_deg"]
    raise ValueError(f"unknown check {check!r}")


def check_clip(check: str, joints, **params) -> bool:
    """``run_check`` on one clip's joints ``[T, 22, 3]``."""
    return run_check(check, params, measure(joints))


@dataclass(frozen=True)
class Prompt:
    caption: str
    check: str
    params: dict = dc_field(default_factory=dict)
    # The action asked for: captions of one group are alternatives for the same motion (a
    # straight walk is also a walk), so none of them counts towards another's chance rate.
    group: str = ""

    @property
    def key(self) -> str:
        """The check with its parameters, as the report names it."""
        return self.check + "".join(f" {k}={v}" for k, v in sorted(self.params.items()))


# Wordings the built-in corpus itself uses (vmdm/data/build/synth/families.py: wave, walk_backward,
# walk, run, jump, turn_around), so a model trained on it can be asked for them.
PROMPTS: tuple[Prompt, ...] = (
    Prompt("a person waves with his right hand.", "wave", {"side": "right"}, "wave right"),
    Prompt("a person waves with his left hand.", "wave", {"side": "left"}, "wave left"),
    Prompt("a person walks backwards.", "backward", {}, "walk backwards"),
    Prompt("a person walks backward in a straight line.", "backward", {"straight": True}, "walk backwards"),
    Prompt("a person walks forward.", "walk", {}, "walk"),
    Prompt("a person walks in a straight line.", "walk", {"straight": True}, "walk"),
    Prompt("a person runs forward.", "run", {}, "run"),
    Prompt("a person jumps in place twice.", "jump", {}, "jump"),
    Prompt("a person does two forward jumps.", "jump", {}, "jump"),
    Prompt("a person turns around.", "turn", {"deg": 180, "either_side": True}, "turn around"),
    Prompt("a person turns to the left.", "turn", {"deg": 90}, "turn left"),
    Prompt("a person turns to the right.", "turn", {"deg": -90}, "turn right"),
)


# Bandai-Namco-2's contents with a check, in the wordings its captions use
# (vmdm/data/build/bandai.py: _CONTENT, subject "a person", normal style). Its raise-hand
# contents have no check here, and it has no backward walks, jumps or turns on the spot.
BANDAI_PROMPTS: tuple[Prompt, ...] = (
    Prompt("a person waves with his right hand.", "wave", {"side": "right"}, "wave right"),
    Prompt("a person waves with his left hand.", "wave", {"side": "left"}, "wave left"),
    Prompt("a person walks forward.", "walk", {}, "walk"),
    Prompt("a person runs forward.", "run", {}, "run"),
    Prompt("a person walks forward and turns left.", "turn", {"deg": 90}, "turn left"),
    Prompt("a person walks forward and turns right.", "turn", {"deg": -90}, "turn right"),
)

PROMPT_SETS: dict[str, tuple[Prompt, ...]] = {"builtin": PROMPTS, "bandai": BANDAI_PROMPTS}


def chance_rates(prompts, measures: list[list[dict]]) -> list[float]:
    """For each prompt, the pass rate of its check on the generations for the prompts of the
    other groups (other actions): what a model that ignores the text would score."""
    out = []
    for p in prompts:
        ms = [m for q, row in zip(prompts, measures) if (q.group or q.key) != (p.group or p.key) for m in row]
        out.append(float(np.mean([run_check(p.check, p.params, m) for m in ms])) if ms else float("nan"))
    return out


# --------------------------------------------------------------------------- the command


@dataclass
class PromptsConfig:
    checkpoint: str | None = field(None, "model checkpoint to evaluate (required)")
    prompts: str = field("builtin", "caption set: builtin (the built-in corpus's wordings) or bandai (Bandai-Namco's "
                                    "contents with a check, in its captions' wordings)", choices=list(PROMPT_SETS))
    samples: int = field(8, "generations per caption (seeds seed, seed+1, ...)")
    length: int = field(120, "frames per generation at 20 fps (at most the model's maximum)")
    guidance: float = field(2.5, "classifier-free guidance scale")
    sampler: str = field("ddim", "sampler", choices=["ddim", "ddpm"])
    sample_steps: int | None = field(None, "DDIM steps (default: all diffusion steps)")
    batch_size: int = field(64, "generation batch size")
    seed: int = field(0, "random seed of the sampling noise")
    out: str | None = field(None, "output folder (default: <checkpoint folder>/eval)")
    device: str | None = field(None, "device (default cuda if available)")
    threads: int | None = field(None, "torch CPU threads")
    progress: bool = field(True, "progress bars")


def evaluate_prompts(cfg: PromptsConfig, prompts=None, lm=None) -> dict:
    """Generate ``cfg.samples`` motions per prompt (``prompts``; default: the set
    ``cfg.prompts`` names), check them and return (and write, unless ``cfg.out == ""``) the
    results."""
    from vmdm.training.checkpoint import load_checkpoint
    from vmdm.eval.run import _jsonable, machine_description
    from vmdm.inference.loading import load_model

    if not cfg.checkpoint:
        raise ValueError("--checkpoint is required")
    if cfg.samples < 1:
        raise ValueError(f"--samples: expected >= 1, got {cfg.samples}")
    if prompts is None:
        if cfg.prompts not in PROMPT_SETS:
            raise ValueError(f"--prompts: expected one of {', '.join(PROMPT_SETS)}, got {cfg.prompts!r}")
        prompts = PROMPT_SETS[cfg.prompts]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    device = torch.device(cfg.device) if cfg.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lm = lm if lm is not None else load_model(cfg.checkpoint, device)
    if not 20 <= cfg.length <= lm.model.cfg.max_frames:
        raise ValueError(f"--length: expected 20..{lm.model.cfg.max_frames} frames for this checkpoint, got {cfg.length}")
    step = load_checkpoint(cfg.checkpoint).get("step")
    K = cfg.samples
    texts = [p.caption for p in prompts for _ in range(K)]
    # One seed per repetition: repetition k of every caption starts from the same noise.
    joints = torch.zeros(len(texts), cfg.length, SMPL22.num_joints, 3)
    for k in range(K):
        idx = list(range(k, len(texts), K))
        gen = lm.generate([texts[i] for i in idx], cfg.length, guidance=cfg.guidance, sampler=cfg.sampler,
                          sample_steps=cfg.sample_steps, seed=cfg.seed + k, batch_size=cfg.batch_size,
                          progress=cfg.progress and k == 0)
        joints[idx] = gen["joints"].float()
    measures = [[measure(joints[i * K + k]) for k in range(K)] for i in range(len(prompts))]
    passed = [[run_check(p.check, p.params, m) for m in row] for p, row in zip(prompts, measures)]
    chance = chance_rates(prompts, measures)
    per = []
    for p, row, ok, ch in zip(prompts, measures, passed, chance):
        per.append({"caption": p.caption, "check": p.check, "params": dict(p.params), "key": p.key, "group": p.group,
                    "pass_rate": float(np.mean(ok)), "passed": [bool(x) for x in ok], "chance": ch,
                    "measures": row})
    res = {
        "checkpoint": str(cfg.checkpoint),
        "step": step,
        "supervision": lm.config.get("supervision"),
        "data_hash": lm.data_hash,  # of the data the model was trained on
        "settings": dataclasses.asdict(cfg),
        "thresholds": THRESHOLDS,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_description(device),
        "prompts": per,
        "pass_rate": float(np.mean([r["pass_rate"] for r in per])),
        "chance": float(np.mean([r["chance"] for r in per])),
        "seconds": round(time.time() - t0, 1),
    }
    if cfg.out != "":
        out = Path(cfg.out) if cfg.out else Path(cfg.checkpoint).parent / "eval"
        out.mkdir(parents=True, exist_ok=True)
        (out / "prompts.json").write_text(json.dumps(_jsonable(res), indent=1) + "\n")
        (out / "prompts.md").write_text(format_markdown(res))
        res["out"] = str(out)
    return res


def format_markdown(res: dict) -> str:
    s = res["settings"]
    lines = [f"# Prompt following of `{res['checkpoint']}` (step {res['step']}, {res.get('supervision')})", "",
             f"{res['created']} on {res['machine']}. Caption set {s.get('prompts', 'builtin')}; "
             f"{s['samples']} generations per caption of {s['length']} frames, "
             f"seeds {s['seed']}..{s['seed'] + s['samples'] - 1}, sampler {s['sampler']}, "
             f"{s['sample_steps'] or 'all'} steps, guidance {s['guidance']}. Chance: the pass rate of the caption's "
             f"check on the generations for the captions of the other actions (what a model that ignores the "
             f"text scores).", "",
             "| caption | check | pass rate | chance |", "|---|---|---|---|"]
    for r in res["prompts"]:
        lines.append(f"| {r['caption']} | {r['key']} | {r['pass_rate']:.2f} | {r['chance']:.2f} |")
    lines += [f"| **all** | | **{res['pass_rate']:.2f}** | {res['chance']:.2f} |", "",
              f"Thresholds: {res['thresholds']}. The model was trained on data with hash "
              f"{short(res.get('data_hash'))}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    def run(cfg: PromptsConfig) -> None:
        res = evaluate_prompts(cfg)
        print(format_markdown(res))
        print(f"results: {res['out']}/prompts.json")

    return run_main(PromptsConfig, "python -m vmdm.eval prompts", __doc__.split("\n\n")[0], run, argv,
                    required=("checkpoint",), errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
