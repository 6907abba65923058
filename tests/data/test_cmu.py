import gzip

import numpy as np
import pytest

from vmdm.data.formats.cmu import (
    SMPL22_FROM_CMU,
    amc_bone_positions,
    default_cmu_dir,
    load_cmu_clip,
    load_cmu_testset,
    load_humanml3d_segments,
    parse_amc,
    parse_asf,
)
from vmdm.motion.skeleton import SMPL22

TINY_ASF = """# tiny test skeleton
:version 1.10
:name TEST
:units
  mass 1.0
  length 0.45
  angle deg
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name femur
     direction 0 -1 0
     length 10
     axis 0 0 0 XYZ
    dof rx ry rz
  end
  begin
     id 2
     name tibia
     direction 0 -1 0
     length 10
     axis 0 0 90 XYZ
    dof rx
  end
:hierarchy
  begin
    root femur
    femur tibia
  end
"""

# Frame 1: rest. Frame 2: root moved 10 units along x, femur flexed 90 deg about x.
# Frame 3: tibia rotated 90 deg about its own local x, which the axis (90 deg about z)
# turns into the world y axis, so a vertical shin does not move.
TINY_AMC = """:FULLY-SPECIFIED
:DEGREES
1
root 0 0 0 0 0 0
femur 0 0 0
tibia 0
2
root 10 0 0 0 0 0
femur -90 0 0
tibia 0
3
root 0 0 0 0 0 0
femur 0 0 0
tibia 90
"""


@pytest.fixture()
def tiny(tmp_path):
    asf = tmp_path / "t.asf.gz"
    with gzip.open(asf, "wt") as f:
        f.write(TINY_ASF)
    amc = tmp_path / "t_01.amc"
    amc.write_text(TINY_AMC)
    return asf, amc


def test_tiny_skeleton_forward_kinematics(tiny):
    asf_path, amc_path = tiny
    asf = parse_asf(asf_path)
    unit = 0.0254 / 0.45
    assert asf.bones["femur"].length == pytest.approx(10 * unit)
    pos = amc_bone_positions(asf, parse_amc(amc_path, asf))
    L = 10 * unit
    knee = pos["femur"][1]
    ankle = pos["tibia"][1]
    np.testing.assert_allclose(knee[0], [0, -L, 0], atol=1e-9)
    np.testing.assert_allclose(ankle[0], [0, -2 * L, 0], atol=1e-9)
    # -90 deg about x swings a downward bone to +z (right-handed rotation).
    np.testing.assert_allclose(knee[1], [10 * unit, 0, L], atol=1e-9)
    np.testing.assert_allclose(ankle[1], [10 * unit, 0, 2 * L], atol=1e-9)
    np.testing.assert_allclose(ankle[2], [0, -2 * L, 0], atol=1e-9)
    np.testing.assert_allclose(pos["tibia"][0], knee, atol=1e-12)


def test_parse_errors_name_the_file(tiny, tmp_path):
    asf_path, amc_path = tiny
    asf = parse_asf(asf_path)
    bad = tmp_path / "bad.amc"
    bad.write_text(TINY_AMC.replace("tibia 90", "tibia 90 1"))
    with pytest.raises(ValueError, match="bad.amc.*tibia"):
        parse_amc(bad, asf)
    with pytest.raises(FileNotFoundError, match="nope.asf"):
        parse_asf(tmp_path / "nope.asf")
    with pytest.raises(ValueError, match="fps"):
        load_cmu_clip(asf_path, amc_path, source_fps=120, fps=50)


def test_joint_map_covers_smpl22():
    assert set(SMPL22_FROM_CMU) == set(SMPL22.joint_names)


CMU = default_cmu_dir()
needs_cmu = pytest.mark.skipif(CMU is None, reason="CMU test data (shared/data/cmu_humanml) not present")


@pytest.fixture(scope="module")
def cmu_clips():
    root = CMU
    # Three clips are enough to check the geometry; the full set loads in stats.
    from vmdm.data.formats.cmu import CmuClip, _read_tsv

    rows = {r["cmu_subject_trial"]: r for r in _read_tsv(root / "clips.tsv")}
    out = []
    for name in ("01_01", "02_01", "02_05"):
        s = name[:2]
        j = load_cmu_clip(root / "asfamc" / s / f"{s}.asf.gz", root / rows[name]["amc_file"])
        out.append(CmuClip(name, j, name))
    return out


@needs_cmu
def test_cmu_clip_is_a_plausible_human(cmu_clips):
    for c in cmu_clips:
        j = c.joints.astype(np.float64)
        assert j.shape[1:] == (22, 3) and np.isfinite(j).all()
        floor = j[..., 1].min(axis=1)
        # Metres, y up: pelvis about 0.9 m and head about 1.4 m above the lowest joint.
        assert 0.75 < np.median(j[:, 0, 1] - floor) < 1.05
        assert 1.2 < np.median(j[:, 15, 1] - floor) < 1.65
        # Rigid bones: every mapped bone keeps its length through the clip.
        for a, b in ((1, 4), (4, 7), (16, 18), (18, 20)):
            L = np.linalg.norm(j[:, a] - j[:, b], axis=-1)
            assert L.std() < 1e-5 and 0.15 < L.mean() < 0.5
        # Body orientation: toes point the same way as the facing direction (left side on
        # the left), so the joint map keeps SMPL's handedness.
        across = (j[:, 1] - j[:, 2]) + (j[:, 16] - j[:, 17])
        fwd = np.cross(across, np.array([0.0, 1.0, 0.0]))
        toes = (j[:, 10] - j[:, 7]) + (j[:, 11] - j[:, 8])
        assert np.mean(np.sum(fwd * toes, -1) > 0) > 0.9
        # 20 fps human speeds.
        v = np.linalg.norm(np.diff(j, axis=0), axis=-1) * 20
        assert v.mean() < 3.0 and np.percentile(v, 99.9) < 15.0


@needs_cmu
def test_cmu_resampling_keeps_every_sixth_frame(cmu_clips):
    root = CMU
    j20 = cmu_clips[1].joints
    j120 = load_cmu_clip(root / "asfamc/02/02.asf.gz", root / "asfamc/02/02_01.amc.gz", source_fps=120, fps=120)
    assert j120.shape[0] == 343  # clips.tsv: 343 frames at 120 fps
    np.testing.assert_allclose(j20, j120[::6], atol=1e-6)


@pytest.mark.slow
@needs_cmu
def test_full_testset_and_segments():
    clips = load_cmu_testset(CMU)
    assert len(clips) == 24
    segs = load_humanml3d_segments(CMU, clips)
    assert len(segs) == 33
    assert all(1 <= s.joints.shape[0] <= 200 for s in segs)


def test_motion_statistics_on_a_known_motion():
    from vmdm.data.build.stats import cut_clips, markdown_table, motion_statistics, roundtrip_errors
    from vmdm.motion.skeleton import forward_kinematics
    import torch

    # A rigid rest-pose body gliding at 1 m/s along +z with its pelvis 0.9 m above the feet.
    T = 60
    rest = forward_kinematics(torch.eye(3).expand(22, 3, 3), torch.zeros(3), SMPL22).numpy()
    rest[:, 1] -= rest[:, 1].min()
    t = np.arange(T)[:, None, None] / 20.0
    clip = rest[None] + np.array([0.0, 0.0, 1.0]) * t
    s = motion_statistics([clip])
    assert s["joint_speed_m_s"] == pytest.approx(1.0, rel=1e-6)
    assert s["root_speed_m_s"] == pytest.approx(1.0, rel=1e-6)
    assert s["joint_accel_m_s2"] == pytest.approx(0.0, abs=1e-6)
    assert s["root_height_range_m"] == pytest.approx(0.0, abs=1e-9)
    assert s["root_height_m"] == pytest.approx(rest[0, 1])
    # Feet on the floor but sliding at 1 m/s: all skating, no contact.
    assert s["foot_skating_cm_s"] == pytest.approx(100.0, rel=1e-6) and s["foot_contact_ratio"] == 0.0
    still = motion_statistics([np.repeat(rest[None], T, 0)])
    assert still["foot_contact_ratio"] == 1.0 and still["foot_skating_cm_s"] == pytest.approx(0.0)
    rt = roundtrip_errors([clip])
    assert rt["roundtrip_max_mm"] < 1e-6 and rt["ik_fk_max_mm"] < 1e-3
    assert [len(c) for c in cut_clips([np.zeros((450, 22, 3))], 196, 40)] == [196, 196, 58]
    table = markdown_table({"a": s, "b": still})
    assert "| mean joint speed (m/s) | 1.000 | 0.000 |" in table


def test_write_docs_replaces_only_the_stats_block(tmp_path):
    from vmdm.data.build.stats import write_docs

    doc = tmp_path / "d.md"
    doc.write_text("intro\n<!-- stats:begin -->\nold\n<!-- stats:end -->\noutro\n")
    write_docs(doc, "| new |")
    assert doc.read_text() == "intro\n<!-- stats:begin -->\n| new |\n<!-- stats:end -->\noutro\n"
