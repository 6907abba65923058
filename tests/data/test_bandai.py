"""``python -m vmdm.data.build.prepare bandai``: a HumanML3D-format folder from Bandai-Namco
BVH clips, read back by MotionDataset; captions, splits, Mean/Std, short and long clips.

The real-data tests build from a handful of the shared clips into tmp_path (skipped
without them); nothing of the data set is stored in the repository."""

import gzip
import json
import re

import numpy as np
import pytest
import torch

from vmdm.data.build.bandai import (BandaiClip, BandaiConfig, build_bandai, find_clips, make_captions, split_clips,
                                    tag_caption)
from vmdm.data.formats.bvh import default_bandai_dir
from vmdm.data.formats.humanml3d import parse_text_line, read_ids
from vmdm.motion.representation import compute_mean_std, facing_yaw
from vmdm.motion.retarget import HUMANML3D_BONE_LENGTHS
from vmdm.motion.skeleton import SMPL22

BANDAI = default_bandai_dir()
needs_bandai = pytest.mark.skipif(
    BANDAI is None, reason="Bandai-Namco data not found: set VMDM_BANDAI_DIR or place bandai_namco_2 under "
                           "shared/data/ in or beside the repository")
# Walks (one longer than 10 s, so cut), raise-hand clips under 2 s (so padded), waves.
PATTERNS = "walk_normal_00?,walk_elderly_001,raise-up-left-hand_normal_00?,wave-right-hand_youthful_00?"
# HumanML3D's own text line (texts/000000.txt in its release) for the structure.
HUMANML3D_LINE = ("a man kicks something or someone with his left leg.#a/DET man/NOUN kick/VERB something/PRON "
                  "or/CCONJ someone/PRON with/ADP his/DET left/ADJ leg/NOUN#0.0#0.0")
UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "SCONJ", "VERB"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if BANDAI is None:
        pytest.skip("Bandai-Namco data not found (VMDM_BANDAI_DIR or shared/data/bandai_namco_2)")
    from vmdm.data.build.prepare import main

    out = tmp_path_factory.mktemp("bandai") / "hml"
    assert main(["bandai", "--root", str(BANDAI), "--out", str(out), "--clips", PATTERNS, "--no-progress"]) == 0
    return out


def _meta(root):
    return json.loads((root / "bandai_meta.json").read_text())


def test_motion_dataset_reads_the_folder_unchanged(built):
    from vmdm.data.dataset import MotionDataset, collate

    meta = _meta(built)
    assert meta["split"]["counts"]["train"] == len(read_ids(built, "train"))
    ds = MotionDataset(built, "train", mode="3d", seed=0)
    # Every training clip survives HumanML3D's length filter (40 <= frames < 200).
    assert sorted(ds.ids) == sorted(read_ids(built, "train"))
    batch = collate([ds[i] for i in range(4)])
    assert batch["motion"].shape[-1] == 263 and torch.isfinite(batch["motion"]).all()
    for split in ("val", "test"):
        if read_ids(built, split):
            assert len(MotionDataset(built, split, mode="3d")) == len(read_ids(built, split))


def test_joints_are_canonical_on_the_humanml3d_skeleton(built):
    for path in sorted((built / "new_joints").glob("*.npy")):
        j = np.load(path).astype(np.float64)
        f = np.load(built / "new_joint_vecs" / path.name)
        assert j.shape[1:] == (22, 3) and f.shape == (len(j) - 1, 263), path.name
        assert abs(j[..., 1].min()) < 1e-4  # floor at y = 0
        np.testing.assert_allclose(j[0, 0, [0, 2]], 0.0, atol=1e-4)  # root at the xz origin at frame 0
        assert abs(facing_yaw(torch.from_numpy(j[0]), SMPL22)) < 1e-3  # facing +z at frame 0
        bones = np.linalg.norm(j[:, 1:] - j[:, list(SMPL22.parents[1:])], axis=-1)
        np.testing.assert_allclose(bones, np.broadcast_to(HUMANML3D_BONE_LENGTHS, bones.shape), atol=1e-4)
        assert (j[:, SMPL22.index("head"), 1] > j[:, 0, 1]).all()


def test_short_clips_are_padded_and_long_ones_cut(built):
    meta = _meta(built)
    padded = {k: v for k, v in meta["clips"].items() if sum(v["pad_frames"])}
    assert padded and all("raise-up-left-hand" in k for k in padded)
    for k, v in padded.items():
        j = np.load(built / "new_joints" / f"{k}.npy")
        assert len(j) == 41 == v["frames"]  # 2 s at 20 fps
        before, after = v["pad_frames"]
        # Held poses: still frames before and after the captured motion.
        assert np.abs(np.diff(j[: before + 1], axis=0)).max(initial=0) < 1e-6
        assert np.abs(np.diff(j[len(j) - after - 1 :], axis=0)).max(initial=0) < 1e-6
    cut = meta["clips"]["dataset-2_walk_elderly_001"]
    assert cut["cut_frames"] > 0 and cut["frames"] == 200
    assert meta["short_clips"]["policy"] == "pad" and meta["licence"].startswith("Bandai") and "CC BY-NC" in meta[
        "licence"]


def test_captions_have_humanml3d_line_structure(built):
    ref = HUMANML3D_LINE.split("#")
    for path in sorted((built / "texts").glob("*.txt")):
        lines = path.read_text().splitlines()
        assert len(lines) == 3 and len(set(lines)) == 3, path.name
        for line in lines:
            parts = line.split("#")
            assert len(parts) == len(ref) == 4
            caption, tokens, start, end = parts
            assert (start, end) == (ref[2], ref[3]) == ("0.0", "0.0")
            assert caption == caption.lower() and caption.endswith(".")
            toks = tokens.split()
            # One word/POS token per word, as HumanML3D (punctuation dropped).
            assert len(toks) == len(re.findall(r"[a-z]+", caption)), line
            for t in toks:
                word, pos = t.split("/")
                assert re.fullmatch(r"[a-z]+", word) and pos in UPOS, t
            cap = parse_text_line(line, where=str(path))
            assert cap.whole_clip and cap.tokens == tuple(toks)
    # The reference line parses the same way.
    assert parse_text_line(HUMANML3D_LINE).tokens[-1] == "leg/NOUN"


def test_captions_follow_the_labels_and_vary(built):
    meta = _meta(built)
    by_label: dict = {}
    for k, v in meta["clips"].items():
        caps = (built / "texts" / f"{k}.txt").read_text().splitlines()
        text = " ".join(c.split("#")[0] for c in caps)
        if v["content"] == "walk":
            assert "walk" in text
        if v["content"] == "wave-right-hand":
            assert "wave" in text and "right" in text and "left" not in text
        if v["content"] == "raise-up-left-hand":
            assert "left" in text and "right" not in text
        by_label.setdefault((v["content"], v["style"]), set()).update(c.split("#")[0] for c in caps)
    # Never one fixed sentence per label: many distinct captions per (content, style) of 9 clips.
    counts = {k: len(s) for k, s in by_label.items() if k != ("walk", "elderly")}
    assert len(counts) == 3 and all(n > 9 for n in counts.values()), counts


def test_splits_are_disjoint_stratified_and_seeded(built):
    meta = _meta(built)
    ids = {s: read_ids(built, s) for s in ("train", "val", "test")}
    sets = [set(v) for v in ids.values()]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == set(meta["clips"])
    for k, v in meta["clips"].items():
        assert k in ids[v["split"]]
    # Stratified: every (content, style) group holds round(10 %) val and test clips.
    groups: dict = {}
    for k, v in meta["clips"].items():
        groups.setdefault((v["content"], v["style"]), []).append(v["split"])
    for key, splits in groups.items():
        n = len(splits)
        assert splits.count("val") == round(0.1 * n) and splits.count("test") == round(0.1 * n), key
    # Stable under the seed, and the build wrote exactly split_clips' assignment.
    clips = find_clips(BANDAI, PATTERNS.split(","))
    a, b = split_clips(clips, seed=0), split_clips(clips, seed=0)
    assert a == b == {k: v["split"] for k, v in meta["clips"].items()}
    assert split_clips(clips, seed=1) != a
    # A group's split does not depend on the other groups selected.
    walks = [c for c in clips if c.content == "walk" and c.style == "normal"]
    assert split_clips(walks, seed=0) == {c.id: a[c.id] for c in walks}


def test_mean_std_come_from_the_train_split_only(built):
    train = read_ids(built, "train")
    feats = [np.load(built / "new_joint_vecs" / f"{i}.npy") for i in train]
    mean, std = compute_mean_std(feats, SMPL22)
    np.testing.assert_allclose(np.load(built / "Mean.npy"), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(built / "Std.npy"), std, rtol=1e-5, atol=1e-6)
    every = [np.load(p) for p in sorted((built / "new_joint_vecs").glob("*.npy"))]
    assert len(every) > len(train)
    assert not np.allclose(compute_mean_std(every, SMPL22)[0], mean, rtol=1e-5, atol=1e-6)


@needs_bandai
def test_refuses_to_overwrite_and_selects_nothing_loudly(built, tmp_path, capsys):
    from vmdm.data.build.prepare import main

    with pytest.raises(SystemExit) as e:
        main(["bandai", "--root", str(BANDAI), "--out", str(built), "--clips", "walk_normal_001", "--no-progress"])
    assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no clip matches"):
        build_bandai(BandaiConfig(root=str(BANDAI), out=str(tmp_path / "x"), clips=["nothing_*"], progress=False))


@needs_bandai
def test_dataset_1_names_plain_bvh_and_repository_layout(tmp_path):
    # A clone-like layout: dataset-1 names, plain .bvh, its own label files; and a clip
    # without the prefix. The BVH text is a real clip decompressed into tmp_path.
    text = gzip.decompress((BANDAI / "data" / "dataset-2_walk_normal_001.bvh.gz").read_bytes())
    d1 = tmp_path / "clone" / "dataset" / "Bandai-Namco-Research-Motiondataset-1"
    (d1 / "data").mkdir(parents=True)
    (d1 / "cfg").mkdir()
    (d1 / "cfg" / "content_label.txt").write_text("dataset-1_walk\ndataset-1_bow\n")
    (d1 / "cfg" / "style_label.txt").write_text("dataset-1_normal\ndataset-1_happy\n")
    (d1 / "data" / "dataset-1_bow_happy_001.bvh").write_bytes(text)
    (d1 / "data" / "dataset-1_bow_happy_001.json").write_text('{"content": 1, "style": 1}')
    (d1 / "data" / "walk_normal_002.bvh").write_bytes(text)
    # The same clip plain and compressed: read once, from the .gz.
    (d1 / "data" / "dataset-1_walk_normal_003.bvh").write_bytes(text)
    (d1 / "data" / "dataset-1_walk_normal_003.bvh.gz").write_bytes(gzip.compress(text))
    clips = find_clips(tmp_path / "clone")
    assert [(c.id, c.dataset, c.content, c.style, c.take) for c in clips] == [
        ("dataset-1_bow_happy_001", "dataset-1", "bow", "happy", "001"),
        ("dataset-1_walk_normal_003", "dataset-1", "walk", "normal", "003"),
        ("walk_normal_002", "", "walk", "normal", "002")]
    assert clips[1].path.name.endswith(".gz")
    assert [c.id for c in find_clips(d1, ["bow_*"])] == ["dataset-1_bow_happy_001"]
    (d1 / "data" / "dataset-1_bow_happy_001.json").write_text('{"content": 0, "style": 1}')
    with pytest.raises(ValueError, match="differ from the file name"):
        find_clips(d1)
    (d1 / "data" / "dataset-1_bow_happy_001.json").unlink()
    summary = build_bandai(BandaiConfig(root=str(tmp_path / "clone"), out=str(tmp_path / "out"), progress=False))
    assert summary["clips_read"] == 3 and sum(summary["split"]["counts"].values()) == 3
    texts = (tmp_path / "out" / "texts" / "dataset-1_bow_happy_001.txt").read_text()
    assert "bow" in texts and ("happ" in texts or "cheerful" in texts)


# --------------------------------------------------------------------------- without the data


def _clip(content, style, take):
    return BandaiClip(f"dataset-2_{content}_{style}_{take:03d}", None, "dataset-2", content, style, f"{take:03d}")


def test_split_clips_without_files():
    clips = [_clip(c, s, k) for c in ("walk", "run") for s in ("normal", "elderly") for k in range(1, 21)]
    a = split_clips(clips, seed=3)
    assert a == split_clips(list(reversed(clips)), seed=3)  # order of discovery does not matter
    for c in ("walk", "run"):
        for s in ("normal", "elderly"):
            got = [a[x.id] for x in clips if (x.content, x.style) == (c, s)]
            assert got.count("val") == got.count("test") == 2
    with pytest.raises(ValueError, match="fractions"):
        split_clips(clips, val=0.6, test=0.5)


@pytest.mark.parametrize("content", ["walk", "walk-turn-left", "walk-turn-right", "run", "wave-both-hands",
                                     "wave-left-hand", "wave-right-hand", "raise-up-both-hands",
                                     "raise-up-left-hand", "raise-up-right-hand", "bow", "unknown-move"])
def test_make_captions_varies_and_tags_every_word(content):
    styles = ["active", "elderly", "exhausted", "feminine", "masculine", "normal", "youthful", "not-confident",
              "strange"]
    for style in styles:
        seen = set()
        for seed in range(12):
            caps = make_captions(content, style, np.random.default_rng(seed))
            assert len(caps) == len(set(caps)) == 3
            assert caps == make_captions(content, style, np.random.default_rng(seed))
            for c in caps:
                assert "{" not in c and c.endswith(".") and "  " not in c
                toks = tag_caption(c)
                assert len(toks) == len(re.findall(r"[a-z]+", c.replace("-", " ")))
                assert all(t.split("/")[1] in UPOS for t in toks)
            seen.update(caps)
        assert len(seen) >= 8, (content, style, seen)


def test_tagger_on_known_phrases():
    assert tag_caption("a person waves with his right hand.") == [
        "a/DET", "person/NOUN", "wave/VERB", "with/ADP", "his/DET", "right/ADJ", "hand/NOUN"]
    assert tag_caption("someone who looks exhausted raises both hands.") == [
        "someone/PRON", "who/PRON", "look/VERB", "exhausted/ADJ", "raise/VERB", "both/DET", "hand/NOUN"]
    assert tag_caption("a man walks and then turns to the left.")[-1] == "left/NOUN"
    assert tag_caption("a man walks ahead, then turns left.")[-1] == "left/ADV"


@needs_bandai
def test_its_2d_only_version_is_observed_by_a_teacher_that_never_saw_it(built, quick_data, tmp_path):
    """build_2d on the Bandai folder: every clip of its own splits observed (no family split),
    teacher lifts from the built-in teacher, the teacher's error recorded, read back by
    MotionDataset in the 2D mode."""
    from vmdm.data.build.build_2d import main as build_2d_main
    from vmdm.data.dataset import MotionDataset

    out = tmp_path / "bandai_2d"
    assert build_2d_main(["--corpus", str(built), "--out", str(out), "--lifter", str(quick_data.lifter),
                          "--workers", "1", "--no-progress"]) == 0
    meta = json.loads((out / "vmdm_2d.json").read_text())
    assert meta["splits"] == {s: len(read_ids(built, s)) for s in ("train", "val", "test")}
    assert meta["lifter_families"] == [] and meta["teacher"] == "learned"
    err = meta["teacher_error"]["train"]
    # A teacher from the procedural corpus is wrong on real motion, but not absurdly so.
    assert 20 < err["mpjpe_mm"] < 400 and err["pa_mpjpe_mm"] <= err["mpjpe_mm"] and err["frames"] > 0
    ds = MotionDataset(str(out), "train", mode="2d", max_frames=120)
    item = ds[0]
    assert "gt_joints" not in item and item["keypoints"].shape[1:] == (22, 2)
    assert set(ds.ids) == set(read_ids(built, "train"))


@needs_bandai
def test_stats_set_each_family_beside_its_bandai_counterpart(built, quick_data):
    from vmdm.data.build.stats import collect, counterpart_statistics, counterpart_table, markdown_table

    rows = counterpart_statistics(quick_data.corpus, built, per_source=8)
    assert {"walk", "wave", "raise_arm"} <= set(rows)  # the contents the test build holds
    walk = rows["walk"]
    # Real walks move forward at a walking pace; the measure is the same function for both.
    assert 0.6 < walk["real"]["root_speed_m_s"] < 2.0 and 0.3 < walk["corpus"]["root_speed_m_s"] < 2.5
    assert rows["wave"]["real"]["root_speed_m_s"] < 0.3 * walk["real"]["root_speed_m_s"]
    table = counterpart_table(rows)
    assert table.count("\n") == len(rows) + 1 and "walk (walk)" in table
    stats = collect(quick_data.corpus, None, None, max_clips=20, bandai=built)
    (name,) = [n for n in stats if n.startswith("Bandai-Namco mocap (")]
    assert stats[name]["clips"] > 0 and name in markdown_table(stats)
