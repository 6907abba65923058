import filecmp
import json

import numpy as np
import pytest
import torch

from vmdm.data.formats.humanml3d import load_split, read_ids
from vmdm.motion.kinematics import bone_lengths, inverse_kinematics, offsets_from_lengths
from vmdm.motion.representation import Normalizer, canonicalize, decode, encode
from vmdm.motion.skeleton import SMPL22, forward_kinematics
from vmdm.data.build.synth import FAMILIES, family_groups, generate_clip, generate_corpus, plan_corpus, read_meta

FEET = [7, 8, 10, 11]
# Words every caption of a family must contain (one of).
KEYWORDS = {
    "walk": ["walk", "steps"], "walk_backward": ["backward"], "sidestep": ["side", "to the"],
    "jog": ["jog", "run"], "run": ["run", "sprint"], "circle": ["circle", "curve"],
    "turn_while_walking": ["turn"], "zigzag": ["zig", "side to side", "diagonal"],
    "stop_and_go": ["stop", "pause"], "turn_around": ["turn", "spin", "face", "rotat"],
    "march_in_place": ["march", "in place", "spot"], "wave": ["wav"], "raise_arm": ["arm", "hand"],
    "raise_both_arms": ["arms", "hands"], "clap": ["clap", "applau"], "punch": ["punch", "box", "jab"],
    "throw": ["throw"], "point": ["point"], "squat": ["squat", "knees"], "lunge": ["lunge"],
    "kick": ["kick"], "jump": ["jump", "leap", "hop"], "hop": ["hop"], "step_up": ["step", "climb"],
    "jumping_jacks": ["jumping jack", "star jump", "jumps"], "bow": ["bow", "lean"],
    "sit_down": ["sit", "seat"], "crouch": ["crouch", "squat"], "dance": ["danc", "sway"],
    "push_up": ["push"], "hinge": ["deadlift", "hip", "lift", "picks up"], "arm_circles": ["circl", "rotat"],
}


def test_family_catalogue():
    groups = family_groups()
    assert set(groups) == {"locomotion", "arm", "lower", "whole", "fitness"}
    assert len(FAMILIES) >= 30
    assert sorted(f for fs in groups.values() for f in fs) == sorted(FAMILIES)
    assert set(KEYWORDS) == set(FAMILIES)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_makes_valid_motion(name):
    for seed in range(2):
        joints, captions, meta = generate_clip(name, np.random.default_rng(seed))
        assert joints.dtype == np.float32 and joints.shape[1:] == (22, 3)
        assert 41 <= len(joints) <= 196 and np.isfinite(joints).all()
        assert meta["families"] == [name] and meta["length"] == len(joints)
        json.dumps(meta)
        # On the floor, never through it.
        assert abs(joints[:, FEET, 1].min()) < 0.02
        assert joints[..., 1].min() > -0.02
        # Rigid bones: IK + FK with the clip's bone lengths reproduces the joints.
        j = torch.from_numpy(joints).double()
        lengths = (j - j[:, list(max(p, 0) for p in SMPL22.parents)]).norm(dim=-1)
        assert (lengths.max(0).values - lengths.min(0).values).max() < 1e-4
        R = inverse_kinematics(j, SMPL22)
        rebuilt = forward_kinematics(R, j[:, 0], SMPL22, offsets_from_lengths(bone_lengths(j, SMPL22), SMPL22))
        assert (rebuilt - j).abs().max() < 1e-4
        # Captions: several distinct, non-empty, about this family.
        assert len(captions) >= 3 and len(set(captions)) == len(captions)
        for c in captions:
            assert c.strip() and c.endswith(".") and "{" not in c
            assert any(k in c.lower() for k in KEYWORDS[name]), (name, c)


LOCOMOTION = ["walk", "walk_backward", "sidestep", "jog", "run", "circle", "turn_while_walking", "zigzag",
              "stop_and_go", "turn_around", "march_in_place"]


@pytest.mark.parametrize("name", LOCOMOTION)
def test_locomotion_has_planted_feet(name):
    joints, _, _ = generate_clip(name, np.random.default_rng(3))
    feet = joints[:, FEET]
    speed = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=0), axis=-1) * 20.0  # m/s
    on_floor = (feet[1:, :, 1] < 0.025) & (feet[:-1, :, 1] < 0.025)
    assert on_floor.mean() > 0.1
    # Soles on the floor barely move: under 15 cm/s for 95% of floor frames.
    assert np.percentile(speed[on_floor], 95) < 0.15
    if name not in ("turn_around", "march_in_place"):
        travelled = np.linalg.norm(joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]])
        assert travelled > 0.5


def test_clip_is_deterministic_and_seed_dependent():
    a = generate_clip("walk>wave", np.random.default_rng(7))
    b = generate_clip("walk>wave", np.random.default_rng(7))
    c = generate_clip("walk>wave", np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    assert a[0].shape != c[0].shape or not np.allclose(a[0], c[0])


def test_compositions():
    joints, captions, meta = generate_clip("squat>walk>clap", np.random.default_rng(0))
    assert meta["composition"] == "sequence" and meta["families"] == ["squat", "walk", "clap"]
    assert len(joints) <= 196
    assert all(("squat" in c or "knees" in c) for c in captions)
    joints, captions, meta = generate_clip("walk+wave", np.random.default_rng(0))
    assert meta["composition"] == "simultaneous"
    assert all("wav" in c and ("walk" in c or "step" in c) for c in captions)
    # The waving hand rises above the head while the other arm swings low.
    side = meta["params"][1]["side"]
    wrist, other = (20, 21) if side == "left" else (21, 20)
    assert (joints[:, wrist, 1] > joints[:, 15, 1]).any()
    assert not (joints[:, other, 1] > joints[:, 15, 1]).any()
    with pytest.raises(ValueError, match="unknown family 'flying'"):
        generate_clip("walk>flying", np.random.default_rng(0))
    with pytest.raises(ValueError, match="cannot be chained"):
        generate_clip("walk>push_up", np.random.default_rng(0))
    with pytest.raises(ValueError, match="cannot carry a gesture"):
        generate_clip("squat+wave", np.random.default_rng(0))


def test_plans_are_balanced_and_valid():
    plans = plan_corpus(600, seed=1)
    assert plans == plan_corpus(600, seed=1) and plans != plan_corpus(600, seed=2)
    singles = [p for p in plans if ">" not in p and "+" not in p]
    counts = {f: singles.count(f) for f in FAMILIES}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert any(">" in p for p in plans) and any("+" in p for p in plans)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return generate_corpus(root / "a", num_clips=40, seed=3, workers=1, progress=False)


def test_corpus_is_readable_and_consistent(small_corpus):
    root = small_corpus
    meta = read_meta(root)
    assert [m["id"] for m in meta] == [f"{i:06d}" for i in range(40)]
    splits = {s: read_ids(root, s) for s in ("train", "val", "test")}
    assert sum(map(len, splits.values())) == 40 and len(splits["train"]) >= 28
    for m in meta:
        assert m["id"] in splits[m["split"]]
    recs = load_split(root, "train")
    assert len(recs) == len(splits["train"])
    norm = Normalizer.load(root)
    assert np.isfinite(norm.mean).all() and (norm.std > 0).all()
    groups = json.loads((root / "families.json").read_text())
    assert set(groups["family_group"]) == set(FAMILIES)
    for r in recs[:5]:
        j = r["joints"].astype(np.float64)
        # Stored joints are canonical and the features decode back to them.
        canon, _ = canonicalize(j, SMPL22)
        assert np.abs(canon - j).max() < 1e-4
        assert np.abs(decode(r["features"].astype(np.float64), SMPL22) - j).max() < 1e-4
        full = np.load(root / "new_joints" / f"{r['id']}.npy").astype(np.float64)
        assert np.abs(encode(full, SMPL22) - r["features"]).max() < 1e-4
        assert 40 <= len(r["features"]) <= 195


def test_corpus_is_deterministic_across_workers(small_corpus, tmp_path):
    again = generate_corpus(tmp_path / "b", num_clips=40, seed=3, workers=2, progress=False)
    files = [p.relative_to(small_corpus) for p in small_corpus.rglob("*") if p.is_file()]
    # Three files per clip, plus the splits, statistics, labels and the feature convention.
    assert len(files) == 40 * 3 + 8
    assert "features.json" in {str(f) for f in files}
    _, mismatch, errors = filecmp.cmpfiles(small_corpus, again, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
