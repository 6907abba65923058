import logging

import numpy as np
import pytest
import torch

from vmdm.data.formats.humanml3d import (
    Caption,
    HumanML3DFormatError,
    HumanML3DIndex,
    crop_to_unit,
    load_split,
    parse_text_line,
    read_texts,
    tokenize,
    write_clip,
    write_ids,
    write_normalizer,
)
from vmdm.motion.kinematics import axis_angle_to_matrix
from vmdm.motion.representation import Normalizer, canonicalize, decode
from vmdm.motion.skeleton import KIT21, SMPL22, forward_kinematics


def motion(T, seed=0, skeleton=SMPL22):
    g = torch.Generator().manual_seed(seed)
    J = skeleton.num_joints
    t = torch.linspace(0, 1, T, dtype=torch.float64)[:, None, None]
    aa = torch.randn(1, J, 3, generator=g, dtype=torch.float64) * 0.3 * torch.sin(6 * t)
    root = torch.cat([t[:, 0] * 2, 0.9 + 0 * t[:, 0], t[:, 0]], -1)
    return forward_kinematics(axis_angle_to_matrix(aa), root, skeleton).numpy().astype(np.float32)


@pytest.fixture
def corpus(tmp_path):
    write_clip(tmp_path, "000001", motion(81), ["a person walks forward.", "someone walks ahead."])
    # 30 frames: too short for the whole-clip filter.
    write_clip(tmp_path, "000002", motion(31, 1), ["a person waves."])
    # A long clip with a captioned sub-segment (seconds 1..4 -> frames 20..80).
    write_clip(tmp_path, "000003", motion(221, 2), [
        "a person jumps.",
        Caption("the person squats.", tuple(tokenize("the person squats.")), 1.0, 4.0),
        Caption("too short a bit.", tuple(tokenize("too short a bit.")), 1.0, 2.0),
    ])
    write_ids(tmp_path, "train", ["000001", "000002", "000003"])
    write_ids(tmp_path, "test", ["000001"])
    write_normalizer(tmp_path, ["000001", "000003"])
    return tmp_path


def test_round_trip_and_filters(corpus):
    recs = load_split(corpus, "train")
    ids = [r["id"] for r in recs]
    # 000002 is under 40 frames; 000003 is 220 feature frames (>= 200), so only its
    # 60-frame sub-segment survives, and the 20-frame one does not.
    assert ids == ["000001", "000003#1"]
    r1, r3 = recs
    assert r1["features"].shape == (80, 263) and r1["features"].dtype == np.float32
    assert [c for c, _ in r1["captions"]] == ["a person walks forward.", "someone walks ahead."]
    assert r1["captions"][0][1][:3] == ["a/DET", "person/NOUN", "walk/VERB"]
    assert (r3["start_frame"], r3["end_frame"], r3["length"]) == (20, 80, 60)
    full = np.load(corpus / "new_joint_vecs" / "000003.npy")
    assert np.array_equal(r3["features"], full[20:80])
    # Joints load lazily, cropped like the features, and match the features.
    assert "joints" not in r1
    j = r1["joints"]
    assert j.shape == (80, 22, 3)
    canon, _ = canonicalize(j.astype(np.float64), SMPL22)
    rec = decode(r1["features"].astype(np.float64), SMPL22)
    assert np.abs(rec - canon).max() < 1e-4
    norm = HumanML3DIndex(corpus).normalizer()
    assert isinstance(norm, Normalizer) and norm.dim == 263
    assert load_split(corpus, "test", load_joints=True)[0]["joints"].shape == (80, 22, 3)


def test_text_lines_tolerate_real_files():
    c = parse_text_line("a man kicks with his left leg.#a/DET man/NOUN kick/VERB#0.0#nan\n")
    assert c == Caption("a man kicks with his left leg.", ("a/DET", "man/NOUN", "kick/VERB"), 0.0, 0.0)
    assert c.whole_clip
    c = parse_text_line("a person sits.#a/DET person/NOUN sit/VERB#2.5#7.0")
    assert (c.start, c.end) == (2.5, 7.0)
    # Missing tags and tokens are filled in.
    c = parse_text_line("someone jumps twice")
    assert c.tokens == ("someone/PRON", "jump/VERB", "twice/ADV") and c.whole_clip
    with pytest.raises(HumanML3DFormatError, match="empty caption"):
        parse_text_line("#a/DET#0.0#0.0", where="x.txt:1")
    with pytest.raises(HumanML3DFormatError, match="start tag 'abc' is not a number"):
        parse_text_line("a person jumps.#a/DET#abc#0.0")


def test_tokenizer_is_deterministic_and_tags_pos():
    toks = tokenize("The person waves with his left hand, then walks backwards in a circle.")
    assert toks == tokenize("The person waves with his left hand, then walks backwards in a circle.")
    assert toks == ["the/DET", "person/NOUN", "wave/VERB", "with/ADP", "his/DET", "left/ADJ", "hand/NOUN",
                    "then/ADV", "walk/VERB", "backwards/ADV", "in/ADP", "a/DET", "circle/NOUN"]
    assert tokenize("zig-zag 3 times!") == ["zigzag/NOUN", "time/NOUN"]


def test_bad_files_are_named(corpus, caplog):
    np.save(corpus / "new_joint_vecs" / "000001.npy", np.zeros((80, 250), np.float32))
    with pytest.raises(HumanML3DFormatError, match=r"000001.npy: expected shape \[F, 263\].*\(80, 250\)"):
        load_split(corpus, "train")
    with caplog.at_level(logging.WARNING):
        recs = load_split(corpus, "train", skip_bad=True)
    assert [r["id"] for r in recs] == ["000003#1"]
    assert "000001" in caplog.text
    bad = np.zeros((80, 263), np.float32)
    bad[3, 7] = np.nan
    np.save(corpus / "new_joint_vecs" / "000001.npy", bad)
    with pytest.raises(HumanML3DFormatError, match="000001.npy: contains NaN"):
        load_split(corpus, "train")
    np.save(corpus / "new_joint_vecs" / "000001.npy", np.zeros((80, 263), np.float32))
    (corpus / "texts" / "000001.txt").unlink()
    with pytest.raises(HumanML3DFormatError, match="000001.txt: text file missing"):
        load_split(corpus, "train")
    (corpus / "texts" / "000001.txt").write_text("\n\n")
    with pytest.raises(HumanML3DFormatError, match="000001.txt: no captions"):
        read_texts(corpus / "texts" / "000001.txt")
    np.save(corpus / "new_joints" / "000003.npy", np.zeros((221, 21, 3), np.float32))
    with pytest.raises(HumanML3DFormatError, match=r"000003.npy: expected shape \[T, 22, 3\]"):
        HumanML3DIndex(corpus).joints("000003")
    with pytest.raises(HumanML3DFormatError, match="val.txt: split file missing"):
        load_split(corpus, "val")


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(HumanML3DFormatError, match=r"expected shape \[T, 22, 3\]"):
        write_clip(tmp_path, "a", np.zeros((50, 21, 3)), ["x"])
    with pytest.raises(ValueError, match="empty caption"):
        write_clip(tmp_path, "a", motion(50), ["  "])
    with pytest.raises(ValueError, match="clip_id"):
        write_clip(tmp_path, "../a", motion(50), ["x"])


def test_crop_to_unit_length():
    rng = np.random.default_rng(0)
    feats = np.arange(103)[:, None] * np.ones((1, 3))
    lengths = set()
    for _ in range(50):
        out = crop_to_unit(feats, rng)
        assert len(out) % 4 == 0
        assert np.array_equal(out[:, 0], np.arange(out[0, 0], out[0, 0] + len(out)))
        lengths.add(len(out))
    assert lengths == {100, 96}


def test_kit_format(tmp_path):
    write_clip(tmp_path, "k1", motion(40, skeleton=KIT21), ["a person walks."], skeleton=KIT21)
    write_ids(tmp_path, "train", ["k1"])
    recs = HumanML3DIndex(tmp_path, skeleton="kit21").load_split("train")
    # KIT's minimum is 24 frames; 39 feature frames pass.
    assert len(recs) == 1 and recs[0]["features"].shape == (39, 251)
