"""The prompt-following benchmark (vmdm.eval.prompts): each check passes on clips of its action
and fails on clips of other actions, on the built-in corpus's generator and on real CMU motion
capture; the command runs end to end on a tiny checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vmdm.eval.prompts import PROMPTS, chance_rates, check_clip, headings, measure, run_check

ROOT = Path(__file__).resolve().parents[2]
N = 6  # clips per action


def _clips(plan: str, n: int = N, **want) -> list[np.ndarray]:
    """``n`` clips of one family of the built-in corpus whose parameters match ``want``."""
    from vmdm.data.build.synth import generate_clip

    out, seed = [], 0
    while len(out) < n:
        joints, _, meta = generate_clip(plan, np.random.default_rng([1234, seed]))
        seed += 1
        assert seed < 400, f"no {plan} clip with {want}"
        p = meta["params"][0]
        if all(p.get(k) == v for k, v in want.items()):
            out.append(joints.astype(np.float64))
    return out


def _rate(check, clips, **params) -> float:
    return float(np.mean([check_clip(check, c, **params) for c in clips]))


@pytest.fixture(scope="module")
def corpus():
    c = {
        "wave_right": _clips("wave", side="right"), "wave_left": _clips("wave", side="left"),
        "walk": _clips("walk"), "walk_backward": _clips("walk_backward"), "run": _clips("run"), "jog": _clips("jog"),
        "jump": _clips("jump"), "turn_left_90": _clips("turn_around", 3, side="left", angle_deg=90),
        "turn_right_90": _clips("turn_around", 3, side="right", angle_deg=90),
        "turn_180": _clips("turn_around", 4, angle_deg=180), "circle": _clips("circle", 4),
    }
    for plan in ("raise_arm", "throw", "point", "jumping_jacks", "clap", "march_in_place", "squat", "step_up",
                 "sit_down", "sidestep", "hop", "arm_circles"):
        c[plan] = _clips(plan, 4)
    return c


OTHERS = {  # for each check: actions whose clips must fail it
    "wave": ["raise_arm", "throw", "point", "jumping_jacks", "clap", "arm_circles", "walk", "jump"],
    "backward": ["walk", "run", "jog", "turn_180", "march_in_place", "sidestep", "wave_right", "circle"],
    "walk": ["walk_backward", "run", "march_in_place", "turn_180", "wave_left", "jump", "sidestep"],
    "run": ["walk", "walk_backward", "jump", "march_in_place", "wave_right"],
    "jump": ["walk", "walk_backward", "run", "squat", "step_up", "sit_down", "march_in_place", "wave_right",
             "turn_180", "hop"],
    "turn": ["walk", "walk_backward", "run", "wave_right", "jump", "march_in_place", "squat"],
}


def test_wave_checks_tell_the_waving_hand(corpus):
    for side, other in (("right", "left"), ("left", "right")):
        assert _rate("wave", corpus[f"wave_{side}"], side=side) == 1.0
        assert _rate("wave", corpus[f"wave_{other}"], side=side) == 0.0  # the other hand waves
        for name in OTHERS["wave"]:
            assert _rate("wave", corpus[name], side=side) == 0.0, (side, name)


def test_backward_check(corpus):
    assert _rate("backward", corpus["walk_backward"]) == 1.0
    assert _rate("backward", corpus["walk_backward"], straight=True) == 1.0
    for name in OTHERS["backward"]:
        assert _rate("backward", corpus[name]) == 0.0, name


def _bend(joints: np.ndarray, degrees: float) -> np.ndarray:
    """The clip with frame t turned by degrees * t / T about the vertical through its start:
    the same steps along a curve, the body turning with the path."""
    T = len(joints)
    out = joints.copy()
    o = joints[0, 0].copy()
    for t in range(T):
        a = np.radians(degrees) * t / (T - 1)
        R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        out[t] = (joints[t] - o) @ R.T + o
    return out


def test_straight_line_variants_reject_a_curve(corpus):
    for c in corpus["walk_backward"][:3]:
        bent = _bend(c, 120)
        assert check_clip("backward", bent)  # still backwards ...
        assert not check_clip("backward", bent, straight=True)  # ... but not in a straight line
    for c in corpus["walk"][:3]:
        assert check_clip("walk", c, straight=True)
        assert not check_clip("walk", _bend(c, 120), straight=True)
    assert _rate("walk", corpus["circle"], straight=True) == 0.0


def test_walk_and_run_speed_checks(corpus):
    assert _rate("walk", corpus["walk"]) == 1.0
    assert _rate("run", corpus["run"]) == 1.0
    for name in OTHERS["walk"]:
        assert _rate("walk", corpus[name]) == 0.0, name
    for name in OTHERS["run"]:
        assert _rate("run", corpus[name]) == 0.0, name


def test_jump_check(corpus):
    assert _rate("jump", corpus["jump"]) == 1.0
    for name in OTHERS["jump"]:
        assert _rate("jump", corpus[name]) == 0.0, name


def test_turn_checks_read_the_angle_and_its_side(corpus):
    assert _rate("turn", corpus["turn_left_90"], deg=90) == 1.0
    assert _rate("turn", corpus["turn_right_90"], deg=-90) == 1.0
    assert _rate("turn", corpus["turn_left_90"], deg=-90) == 0.0
    assert _rate("turn", corpus["turn_right_90"], deg=90) == 0.0
    assert _rate("turn", corpus["turn_180"], deg=180, either_side=True) == 1.0
    assert _rate("turn", corpus["turn_left_90"] + corpus["turn_right_90"], deg=180, either_side=True) == 0.0
    for name in OTHERS["turn"]:
        for params in ({"deg": 90}, {"deg": -90}, {"deg": 180, "either_side": True}):
            assert _rate("turn", corpus[name], **params) == 0.0, (name, params)


def test_checks_are_invariant_to_where_the_clip_is_and_which_way_it_faces(corpus):
    c = corpus["walk_backward"][0]
    a = np.radians(130)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    moved = c @ R.T + np.array([3.0, 0.0, -5.0])
    m0, m1 = measure(c), measure(moved)
    for k in m0:
        assert m0[k] == pytest.approx(m1[k], abs=1e-6), k


# --------------------------------------------------------------------------- real motion (CMU)


@pytest.fixture(scope="module")
def cmu():
    from vmdm.data.formats.cmu import default_cmu_dir, load_cmu_clip, parse_asf

    root = default_cmu_dir()
    if root is None:
        pytest.skip("shared/data/cmu_humanml not found")
    asf = {s: parse_asf(root / "asfamc" / s / f"{s}.asf.gz") for s in ("01", "02")}
    # 02_01/02_02 walk, 02_03 run, 02_04 jump, 02_05 punching, 02_06 bending, 01_01 playground
    # (forward jumps, turning around).
    out = {}
    for name in ("02_01", "02_02", "02_03", "02_04", "02_05", "02_06", "01_01"):
        s = name[:2]
        j = load_cmu_clip(root / "asfamc" / s / f"{s}.asf.gz", root / "asfamc" / s / f"{name}.amc.gz", asf=asf[s])
        out[name] = j.astype(np.float64)
    return out


def test_checks_on_real_walking_running_and_jumping(cmu):
    walks, run, jump = [cmu["02_01"], cmu["02_02"]], cmu["02_03"], cmu["02_04"]
    others = [cmu["02_05"][:120], cmu["02_06"][:120]]  # punching, bending: in place
    for w in walks:
        assert check_clip("walk", w) and check_clip("walk", w, straight=True)
        assert not check_clip("run", w) and not check_clip("jump", w) and not check_clip("backward", w)
        # Played backwards in time, a real forward walk moves against the facing direction.
        assert check_clip("backward", w[::-1].copy(), straight=True)
    assert check_clip("run", run) and not check_clip("walk", run) and not check_clip("backward", run)
    assert check_clip("jump", jump) and not check_clip("walk", jump) and not check_clip("run", jump)
    for o in others:
        for check in ("walk", "run", "jump", "backward"):
            assert not check_clip(check, o), check
        for side in ("left", "right"):
            assert not check_clip("wave", o, side=side)


def test_heading_sign_on_real_motion_positive_is_towards_the_left_shoulder(cmu):
    """A heading that increases turns the facing direction towards the person's left, as given
    by the real shoulder joints (not by the heading itself)."""
    j = cmu["01_01"]  # turns around several times
    yaw = headings(j)
    f = np.stack([np.sin(yaw), np.cos(yaw)], -1)
    left = j[:, 16, [0, 2]] - j[:, 17, [0, 2]]  # right shoulder -> left shoulder, on the floor
    left /= np.linalg.norm(left, axis=-1, keepdims=True)
    turning = np.abs(np.diff(yaw)) > np.radians(2)
    assert turning.sum() > 20
    d_f = f[1:] - f[:-1]
    towards_left = (d_f * left[:-1]).sum(-1)
    agree = np.sign(towards_left[turning]) == np.sign(np.diff(yaw)[turning])
    assert agree.mean() > 0.95
    # On the real forward walks the facing direction is the walking direction.
    for name in ("02_01", "02_02"):
        assert measure(cmu[name])["along_speed"] > 0.9 * measure(cmu[name])["speed_median"]


# --------------------------------------------------------------------------- chance and the command


def test_chance_is_the_pass_rate_on_the_other_actions_generations(corpus):
    prompts = [p for p in PROMPTS if p.group in ("wave right", "walk backwards", "walk")]
    clips = {"wave right": corpus["wave_right"][:2], "walk backwards": corpus["walk_backward"][:2],
             "walk": corpus["walk"][:2]}
    measures = [[measure(c) for c in clips[p.group]] for p in prompts]
    chance = chance_rates(prompts, measures)
    # Clips of other actions fail each check; a model ignoring the text would give each caption
    # the same mixture of motions, which the checks then pass at the mixture's rate.
    assert chance == [0.0] * len(prompts)
    mixed = [[m for row in measures for m in row]] * len(prompts)
    for p, ch in zip(prompts, chance_rates(prompts, mixed)):
        own = np.mean([run_check(p.check, p.params, m) for m in mixed[0]])
        assert ch == pytest.approx(own)


@pytest.fixture(scope="module")
def tiny_prompt_checkpoint(quick_data, tmp_path_factory):
    from vmdm.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("prompts_ckpt")
    return train(TrainConfig.of(supervision="2d", data=str(quick_data.dataset_2d), out=str(out), text_encoder="bow",
                             model="tiny", steps=5, batch_size=4, max_frames=40, lr=1e-3, warmup=1, ckpt_every=5,
                             log_every=5, progress=False, body_scale_windows=0))


def test_cli_end_to_end_writes_consistent_json(tiny_prompt_checkpoint, tmp_path):
    out = tmp_path / "prompts"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "vmdm.eval", "prompts", "--checkpoint", str(tiny_prompt_checkpoint),
                          "--samples", "3", "--sample-steps", "2", "--length", "40", "--out", str(out),
                          "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads((out / "prompts.json").read_text())
    assert r["checkpoint"] == str(tiny_prompt_checkpoint) and r["step"] == 5
    assert [p["caption"] for p in r["prompts"]] == [p.caption for p in PROMPTS]
    for p in r["prompts"]:
        assert len(p["passed"]) == 3 and len(p["measures"]) == 3
        assert 0.0 <= p["pass_rate"] <= 1.0 and 0.0 <= p["chance"] <= 1.0
        assert p["pass_rate"] == pytest.approx(np.mean(p["passed"]))
    assert 0.0 <= r["pass_rate"] <= 1.0
    assert r["pass_rate"] == pytest.approx(np.mean([p["pass_rate"] for p in r["prompts"]]))
    assert len(r["data_hash"]) == 64  # the training data's content hash, from the checkpoint
    assert r["chance"] == pytest.approx(np.mean([p["chance"] for p in r["prompts"]]))
    # The recorded measures reproduce the recorded verdicts and chance rates.
    for p, q in zip(r["prompts"], PROMPTS):
        assert [run_check(q.check, q.params, m) for m in p["measures"]] == p["passed"]
    assert chance_rates(PROMPTS, [p["measures"] for p in r["prompts"]]) == pytest.approx(
        [p["chance"] for p in r["prompts"]])
    md = (out / "prompts.md").read_text()
    assert "a person waves with his right hand." in md and f"{r['pass_rate']:.2f}" in md
    assert "prompts.json" in res.stdout


def test_cli_refuses_bad_options(tiny_prompt_checkpoint, tmp_path):
    from vmdm.eval.prompts import main

    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tiny_prompt_checkpoint), "--length", "5000", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tiny_prompt_checkpoint), "--prompts", "nope", "--out", str(tmp_path)])


def test_the_bandai_caption_set_is_asked_when_chosen(tiny_prompt_checkpoint):
    from vmdm.eval.prompts import BANDAI_PROMPTS, PromptsConfig, evaluate_prompts

    cfg = PromptsConfig(checkpoint=str(tiny_prompt_checkpoint), prompts="bandai", samples=2, sample_steps=2,
                        length=40, out="", progress=False)
    r = evaluate_prompts(cfg)
    assert [p["caption"] for p in r["prompts"]] == [p.caption for p in BANDAI_PROMPTS]
    assert r["settings"]["prompts"] == "bandai"
    with pytest.raises(ValueError, match="--prompts"):
        evaluate_prompts(PromptsConfig(checkpoint=str(tiny_prompt_checkpoint), prompts="nope", out=""))


def test_a_real_tennis_serve_neither_walks_nor_waves_nor_turns_a_quarter():
    """HumanML3D's own clip 012314 (a tennis serve, shared/data/humanml3d_sample): the body
    rotates by about 50 degrees and the root shuffles back and forth, which must not pass for
    walking, running, walking backwards, waving or a 90/180 degree turn."""
    path = ROOT.parent / "shared" / "data" / "humanml3d_sample" / "new_joints" / "012314.npy"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    m = measure(np.load(path))
    assert 30 < abs(m["turn_deg"]) < 60
    for p in PROMPTS:
        if p.check != "jump":  # a serve may leave the ground
            assert not run_check(p.check, p.params, m), p.caption


def test_bandai_caption_set_checks_pass_on_real_bandai_clips_of_their_content():
    """Every check of the Bandai caption set passes on most real Bandai-Namco clips of its
    content (every style, every twelfth file) and on few clips of the other contents; the
    turning walks are walks too, so the walk check is not asked to fail on them."""
    import glob

    from vmdm.data.formats.bvh import default_bandai_dir, load_bvh_smpl22
    from vmdm.eval.prompts import BANDAI_PROMPTS

    root = default_bandai_dir()
    if root is None:
        pytest.skip("Bandai-Namco data not found (VMDM_BANDAI_DIR or shared/data/bandai_namco_2)")
    content = {"wave right": "wave-right-hand", "wave left": "wave-left-hand", "walk": "walk", "run": "run",
               "turn left": "walk-turn-left", "turn right": "walk-turn-right"}
    contents = sorted(set(content.values()) | {"raise-up-right-hand", "wave-both-hands"})
    measures = {}
    for c in contents:
        files = sorted(glob.glob(os.path.join(root, "data", f"dataset-2_{c}_*.bvh*")))[::12]
        assert len(files) >= 8, c
        measures[c] = [measure(load_bvh_smpl22(f, joint_map="bandai")) for f in files]
    assert [p.group for p in BANDAI_PROMPTS] == list(content)
    for p in BANDAI_PROMPTS:
        own = np.mean([run_check(p.check, p.params, m) for m in measures[content[p.group]]])
        assert own >= 0.75, (p.caption, own)
        for c in contents:
            if c == content[p.group] or (p.check == "walk" and c.startswith("walk-turn")):
                continue
            other = np.mean([run_check(p.check, p.params, m) for m in measures[c]])
            assert other <= 0.15, (p.caption, c, other)
