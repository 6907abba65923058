"""BVH import (vmdm.data.formats.bvh): synthetic files written here, a round trip through
the project's writer, and facts on a few real Bandai-Namco clips (skipped without them).

The synthetic files are checked against scipy's rotations (intrinsic Euler angles: the
order listed is the order applied, first letter outermost), so the reader and the check
cannot share a convention mistake."""

import gzip
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vmdm.data.formats.bvh import (
    BVHFormatError,
    JOINT_MAPS,
    detect_joint_map,
    default_bandai_dir,
    euler_matrices,
    load_bvh_smpl22,
    read_bvh,
    to_smpl22,
    unit_scale,
)
from vmdm.motion.representation import facing_yaw
from vmdm.motion.skeleton import SMPL22

ORDERS = ["".join(p) for p in itertools.permutations("XYZ")]


def _bvh_text(channels, offsets, motion, end_offset=(0.0, 0.5, 0.0), frame_time=1 / 30):
    """A chain root -> j1 -> j2 (+ End Site) with the given per-joint channel lists."""
    names = ["root", "j1", "j2"]
    lines = ["HIERARCHY"]
    for k, name in enumerate(names):
        pad = "  " * k
        lines += [f"{pad}{'ROOT' if k == 0 else 'JOINT'} {name}", f"{pad}{{",
                  f"{pad}  OFFSET {' '.join(str(v) for v in offsets[k])}"]
        if channels[k]:
            lines.append(f"{pad}  CHANNELS {len(channels[k])} {' '.join(channels[k])}")
    pad = "  " * 3
    lines += [f"{pad}End Site", f"{pad}{{", f"{pad}  OFFSET {' '.join(str(v) for v in end_offset)}", f"{pad}}}"]
    for k in reversed(range(3)):
        lines.append("  " * k + "}")
    lines += ["MOTION", f"Frames: {len(motion)}", f"Frame Time: {frame_time:.7f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    return "\n".join(lines) + "\n"


def _rot(order, angles_deg):
    return Rotation.from_euler(order.upper(), angles_deg, degrees=True).as_matrix()


@pytest.mark.parametrize("order", ORDERS)
def test_every_euler_order_matches_intrinsic_rotations(tmp_path, order):
    g = np.random.default_rng(ORDERS.index(order))
    F = 7
    rot_names = [f"{a}rotation" for a in order]
    # Another order on each joint: per-joint channel layouts are independent.
    other = ORDERS[(ORDERS.index(order) + 3) % 6]
    channels = [["Xposition", "Yposition", "Zposition", *rot_names], [f"{a}rotation" for a in other], rot_names]
    offsets = [(0.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.3, 0.0, 0.8)]
    root_pos = g.normal(0, 1, (F, 3))
    angles = g.uniform(-170, 170, (F, 3, 3))
    motion = np.concatenate([root_pos, angles[:, 0], angles[:, 1], angles[:, 2]], axis=1)
    path = tmp_path / "o.bvh"
    path.write_text(_bvh_text(channels, offsets, motion))
    bvh = read_bvh(path)
    assert bvh.names == ["root", "j1", "j2"] and bvh.parents == [-1, 0, 1]
    pos = bvh.positions()
    motion = np.loadtxt(path.read_text().split("Frame Time")[1].splitlines()[1:])  # the 6-decimal values
    for f in range(F):
        R0 = _rot(order, motion[f, 3:6])
        R1 = _rot(other, motion[f, 6:9])
        R2 = _rot(order, motion[f, 9:12])
        p0 = motion[f, :3]
        p1 = p0 + R0 @ offsets[1]
        p2 = p1 + R0 @ R1 @ offsets[2]
        end = p2 + R0 @ R1 @ R2 @ np.array([0.0, 0.5, 0.0])
        np.testing.assert_allclose(pos[f], [p0, p1, p2], atol=1e-9)
        np.testing.assert_allclose(bvh.end_site_positions()[f, 0], end, atol=1e-9)
    assert pos.dtype == np.float64


def test_euler_matrices_two_and_one_axis():
    np.testing.assert_allclose(euler_matrices([30.0, -20.0], "ZY"), _rot("ZY", [30.0, -20.0]), atol=1e-12)
    np.testing.assert_allclose(euler_matrices([[45.0]], "X")[0], _rot("X", [45.0]), atol=1e-12)


def test_position_channels_on_several_joints_replace_the_offset(tmp_path):
    # j1 has full position channels, j2 only Zposition (its X and Y come from the OFFSET).
    channels = [["Xposition", "Yposition", "Zposition", "Yrotation"],
                ["Zrotation", "Xposition", "Yposition", "Zposition"],
                ["Zposition", "Xrotation"]]
    offsets = [(5.0, 5.0, 5.0), (0.0, 1.0, 0.0), (0.2, 0.3, 9.0)]
    motion = np.array([[1.0, 2.0, 3.0, 90.0, 0.0, 0.0, 2.0, 0.0, 0.5, 0.0],
                       [0.0, 0.0, 0.0, 0.0, 90.0, 1.0, 0.0, 0.0, -0.5, 90.0]])
    path = tmp_path / "p.bvh"
    path.write_text(_bvh_text(channels, offsets, motion))
    pos = read_bvh(path).positions()
    Ry90 = _rot("Y", [90.0])
    # Frame 0: root at (1, 2, 3) turned 90 deg about y; j1 at local (0, 2, 0); j2 at local (0.2, 0.3, 0.5).
    np.testing.assert_allclose(pos[0, 0], [1, 2, 3], atol=1e-12)
    np.testing.assert_allclose(pos[0, 1], [1, 4, 3], atol=1e-12)
    np.testing.assert_allclose(pos[0, 2], pos[0, 1] + Ry90 @ [0.2, 0.3, 0.5], atol=1e-12)
    # Frame 1: root at the origin, j1 local (1, 0, 0) then turned 90 deg about z: j2 local (0.2, 0.3, -0.5).
    np.testing.assert_allclose(pos[1, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(pos[1, 2], [1, 0, 0] + _rot("Z", [90.0]) @ [0.2, 0.3, -0.5], atol=1e-12)


def test_end_sites_are_not_joints_and_gz_reads_the_same(tmp_path):
    text = _bvh_text([["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"],
                      ["Zrotation", "Xrotation", "Yrotation"], ["Zrotation", "Xrotation", "Yrotation"]],
                     [(0, 0, 0), (0, 10, 0), (0, 20, 0)], np.zeros((3, 12)), end_offset=(0.0, 7.0, 0.0))
    # An End Site under the root as well, and braces on the joint line.
    text = text.replace("  JOINT j1\n  {", "  End Site\n  {\n    OFFSET 1 0 0\n  }\n  JOINT j1 {")
    (tmp_path / "e.bvh").write_text(text)
    with gzip.open(tmp_path / "e.bvh.gz", "wt") as f:
        f.write(text)
    a, b = read_bvh(tmp_path / "e.bvh"), read_bvh(tmp_path / "e.bvh.gz")
    assert a.names == b.names == ["root", "j1", "j2"]
    assert [j for j, _ in a.end_sites] == [0, 2]
    np.testing.assert_array_equal(a.motion, b.motion)
    np.testing.assert_allclose(a.end_site_positions()[0], [[1, 0, 0], [0, 37, 0]])
    assert a.fps == 30.0  # "0.0333333" rounds to 30


def _good(tmp_path):
    return _bvh_text([["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"],
                      ["Zrotation", "Xrotation", "Yrotation"], ["Zrotation", "Xrotation", "Yrotation"]],
                     [(0, 0, 0), (0, 1, 0), (0, 1, 0)], np.zeros((2, 12)))


def _line_of(text, needle):
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("mutate, needle, message", [
    (lambda s: s.replace("OFFSET 0 1 0", "OFFSET 0 x 0", 1), "OFFSET 0 x 0", "bad OFFSET"),
    (lambda s: s.replace("CHANNELS 3 Zrotation", "CHANNELS 3 Qrotation", 1), "Qrotation", "bad channel list"),
    (lambda s: s.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 2 Zrotation Xrotation Yrotation", 1),
     "CHANNELS 2", "bad channel list"),
    (lambda s: s.replace("Frames: 2", "Frames: 3"), "0.000000 0.000000 0.000000 0.000000 0.000000 0.000000 "
     "0.000000 0.000000 0.000000 0.000000 0.000000 0.000000\n", "header says 3 frames"),
    (lambda s: s.replace("Frame Time: 0.0333333", "Frame Time: fast"), "Frame Time", "Frame Time"),
    (lambda s: s[::-1].replace("000000.0 ", "", 1)[::-1], None, "expected 12 channel values"),
    (lambda s: s[::-1].replace("000000.0", "ten", 1)[::-1], None, "non-numeric"),
    (lambda s: s.replace("    JOINT j2", "    MARKER 1\n    JOINT j2", 1), "MARKER", "unexpected 'MARKER'"),
    (lambda s: s.replace("  JOINT j1\n  {", "  JOINT j1\n  OFFSET 1 1 1", 1), "OFFSET 1 1 1", "expected '{'"),
    (lambda s: s.replace("HIERARCHY", "HIERARCHIE"), "HIERARCHIE", "HIERARCHY"),
])
def test_malformed_files_name_the_file_and_line(tmp_path, mutate, needle, message):
    bad = mutate(_good(tmp_path))
    path = tmp_path / "bad.bvh"
    path.write_text(bad)
    with pytest.raises(BVHFormatError, match=message) as e:
        read_bvh(path)
    if needle is None:  # the last motion line
        line = len(bad.splitlines())
    elif needle.endswith("\n"):
        line = len(bad.splitlines())
    else:
        line = _line_of(bad, needle)
    assert f"{path}:{line}:" in str(e.value), str(e.value)


def test_unclosed_hierarchy_and_broken_gzip(tmp_path):
    path = tmp_path / "open.bvh"
    path.write_text(_good(tmp_path).replace("  }\n}\nMOTION", "  }\nMOTION"))
    with pytest.raises(BVHFormatError, match="hierarchy not closed") as e:
        read_bvh(path)
    assert "open.bvh:" in str(e.value)
    gz = tmp_path / "broken.bvh.gz"
    gz.write_bytes(gzip.compress(_good(tmp_path).encode())[:40])
    with pytest.raises(BVHFormatError, match="broken.bvh.gz:1: cannot read"):
        read_bvh(gz)
    with pytest.raises(BVHFormatError, match="file missing"):
        read_bvh(tmp_path / "nothing.bvh")


# --------------------------------------------------------------------------- resampling, units, maps


def _spinning(tmp_path, fps=30, frames=31, deg_per_frame=12.0, scale=1.0):
    """A root spinning at a constant rate about y with a child 1 unit along x."""
    motion = np.zeros((frames, 6))
    motion[:, 0] = np.arange(frames) * 0.1 * scale  # x position, linear
    motion[:, 1] = 0.9 * scale
    motion[:, 5] = np.arange(frames) * deg_per_frame  # Yrotation, last of ZXY
    text = _bvh_text([["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"], [], []],
                     [(0, 0, 0), (scale, 0, 0), (0, scale, 0)], motion, frame_time=1 / fps)
    path = tmp_path / "spin.bvh"
    path.write_text(text)
    return read_bvh(path)


def test_slerp_resampling_is_exact_for_a_constant_rate_spin(tmp_path):
    from vmdm.data.formats.bvh import forward_kinematics, resample_local

    bvh = _spinning(tmp_path)
    R, t = bvh.local_transforms()
    R20, t20 = resample_local(R, t, 30.0, 20.0)
    assert R20.shape[0] == 21  # 1 s of motion: frames 0 .. 20 at 20 fps
    pos = forward_kinematics(R20, t20, bvh.parents)[1]
    k = np.arange(21)
    angle = np.radians(12.0 * 1.5 * k)  # 1.5 source frames per output frame
    child = np.stack([0.15 * k + np.cos(angle), np.full(21, 0.9), -np.sin(angle)], -1)
    np.testing.assert_allclose(pos[:, 1], child, atol=1e-9)
    # Linear interpolation of positions shortens the bone at the midpoints; slerp does not.
    from vmdm.data.formats.bvh import resample_positions

    lin = resample_positions(bvh.positions(), 30.0, 20.0)
    bone_lin = np.linalg.norm(lin[:, 1] - lin[:, 0], axis=-1)
    assert bone_lin[1] == pytest.approx(math.cos(math.radians(6.0)), abs=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pos[:, 1] - pos[:, 0], axis=-1), 1.0, atol=1e-12)


def test_units_are_detected(tmp_path):
    from vmdm.data.formats.bvh import parse_bvh

    def body(scale):
        # A 1.7 m stick figure: leg 0.9, torso + head 0.8.
        text = _bvh_text([["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"], [], []],
                         [(0, 0, 0), (0, 0.8 * scale, 0), (0, 0.0, 0)], np.zeros((2, 6)), end_offset=(0, 0.0, 0))
        text = text.replace("  JOINT j1", f"  JOINT leg\n  {{\n    OFFSET 0 {-0.9 * scale} 0\n"
                            "    End Site\n    {\n      OFFSET 0 0 0\n    }\n  }\n  JOINT j1", 1)
        return parse_bvh(text)

    assert unit_scale(body(1.0)) == 1.0
    assert unit_scale(body(100.0)) == 0.01
    assert unit_scale(body(1000.0)) == 0.001
    assert unit_scale(body(100.0), "inch") == 0.0254
    assert unit_scale(body(100.0), 0.5) == 0.5
    with pytest.raises(ValueError, match="units"):
        unit_scale(body(1.0), "furlong")


def _rigid_motion(frames=25, seed=0):
    from tests.sample.test_bvh import _rigid_motion as rigid_motion

    return rigid_motion(frames, seed, rotation_scale=0.4, root_step=0.03)


@pytest.mark.parametrize("order", ["ZYX", "XYZ"])
def test_round_trip_through_the_projects_writer(tmp_path, order):
    from vmdm.export.bvh import write_bvh

    joints = _rigid_motion()
    path = write_bvh(tmp_path / "m.bvh", joints, order=order)
    assert detect_joint_map(read_bvh(path).names) == "smpl22"
    back = load_bvh_smpl22(path, units="m")
    assert back.shape == joints.shape
    np.testing.assert_allclose(back, joints, atol=1e-4)
    # Written at 40 fps, read at 20: every other frame, exactly (an integer ratio).
    path40 = write_bvh(tmp_path / "m40.bvh", joints, fps=40.0, order=order)
    np.testing.assert_allclose(load_bvh_smpl22(path40, units="m"), joints[::2], atol=1e-4)
    # With units='auto' a 1.7 m body in metres stays in metres.
    np.testing.assert_allclose(load_bvh_smpl22(path), back)


def test_joint_maps_cover_smpl22_and_detect_by_names():
    for name, jmap in JOINT_MAPS.items():
        assert set(jmap) == set(SMPL22.joint_names), name
    bandai = ["joint_Root", "Hips", "Spine", "Chest", "Neck", "Head"] + [
        f"{j}_{s}" for s in "LR" for j in ("Shoulder", "UpperArm", "LowerArm", "Hand", "UpperLeg", "LowerLeg", "Foot",
                                            "Toes")]
    assert detect_joint_map(bandai) == "bandai"
    mixamo = ["mixamorig:" + n for n in {v for v in JOINT_MAPS["mixamo"].values()}]
    assert detect_joint_map(mixamo) == "mixamo"
    with pytest.raises(KeyError, match="no joint map"):
        detect_joint_map(["a", "b"])
    # Interpolated joints: spine2 halfway between Spine and Chest.
    pos = np.arange(len(bandai) * 3, dtype=np.float64).reshape(1, -1, 3)
    out = to_smpl22(pos, bandai, "bandai")
    np.testing.assert_allclose(out[0, SMPL22.index("spine2")], (pos[0, 2] + pos[0, 3]) / 2)


# --------------------------------------------------------------------------- real Bandai-Namco clips

BANDAI = default_bandai_dir()
needs_bandai = pytest.mark.skipif(
    BANDAI is None, reason="Bandai-Namco data not found: set VMDM_BANDAI_DIR or place bandai_namco_2 under "
                           "shared/data/ in or beside the repository")
CLIPS = ["walk_normal_001", "walk_elderly_003", "run_active_002", "walk-turn-left_exhausted_001",
         "raise-up-right-hand_youthful_004", "wave-left-hand_feminine_002", "raise-up-both-hands_masculine_005"]


def _load(name, **kw):
    return load_bvh_smpl22(BANDAI / "data" / f"dataset-2_{name}.bvh.gz", **kw)


@pytest.fixture(scope="module")
def bandai():
    return {name: _load(name) for name in CLIPS}


@needs_bandai
def test_bandai_format_facts():
    bvh = read_bvh(BANDAI / "data" / "dataset-2_walk_normal_001.bvh.gz")
    assert bvh.num_joints == 22 and bvh.names[0] == "joint_Root" and bvh.fps == 30.0
    six = ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    assert all(c == six for c in bvh.channels)
    assert detect_joint_map(bvh.names) == "bandai" and unit_scale(bvh) == 0.01
    j = load_bvh_smpl22(bvh)
    assert j.shape == (int((bvh.num_frames - 1) / 30 * 20) + 1, 22, 3)


@needs_bandai
def test_bandai_bone_lengths_are_constant(bandai):
    for name, j in bandai.items():
        bones = np.linalg.norm(j[:, 1:] - j[:, list(SMPL22.parents[1:])], axis=-1)
        assert (bones.std(0) < 1e-6).all(), name
        # Human-sized: thigh and shin 0.3-0.5 m.
        assert 0.3 < bones[0, SMPL22.index("left_knee") - 1] < 0.5, name
    j = _load(CLIPS[0], retarget=True)
    from vmdm.motion.retarget import HUMANML3D_BONE_LENGTHS

    np.testing.assert_allclose(np.linalg.norm(j[:, 1:] - j[:, list(SMPL22.parents[1:])], axis=-1),
                               np.broadcast_to(HUMANML3D_BONE_LENGTHS, (len(j), 21)), atol=1e-9)


@needs_bandai
def test_bandai_is_upright(bandai):
    for name, j in bandai.items():
        head, pelvis = j[:, SMPL22.index("head"), 1], j[:, 0, 1]
        assert (head > pelvis + 0.3).all(), name
        feet = j[:, [SMPL22.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")], 1]
        assert (feet.min(1) < pelvis - 0.6).all(), name


def _walk_direction(j):
    d = j[-1, 0] - j[0, 0]
    d[1] = 0.0
    return d / np.linalg.norm(d)


@needs_bandai
def test_bandai_walks_move_forward_in_their_facing_direction(bandai):
    for name in ("walk_normal_001", "walk_elderly_003", "run_active_002"):
        j = bandai[name]
        yaw = facing_yaw(torch.from_numpy(j), SMPL22).numpy()  # HumanML3D's facing: up x (right - left)
        facing = np.stack([np.sin(yaw), np.zeros_like(yaw), np.cos(yaw)], -1)  # rotation_about_y(yaw) @ +z
        cos = facing @ _walk_direction(j)
        assert np.median(cos) > 0.95, name
        # Not a walk in place: at least 1 m covered.
        assert np.linalg.norm(j[-1, 0, [0, 2]] - j[0, 0, [0, 2]]) > 1.0, name


@needs_bandai
def test_bandai_left_is_the_persons_left(bandai):
    up = np.array([0.0, 1.0, 0.0])
    for name in ("walk_normal_001", "walk_elderly_003", "run_active_002"):
        j = bandai[name]
        left_dir = np.cross(up, _walk_direction(j))  # facing +z, up +y: left is +x
        for l, r in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder"), ("left_collar", "right_collar")):
            across = j[:, SMPL22.index(l)] - j[:, SMPL22.index(r)]
            assert (across @ left_dir > 0).mean() > 0.95, (name, l)


@needs_bandai
def test_bandai_the_raised_hand_is_the_labelled_one(bandai):
    def peak(j, joint):
        return (j[:, SMPL22.index(joint), 1] - j[:, SMPL22.index("head"), 1]).max()

    j = bandai["raise-up-right-hand_youthful_004"]
    assert peak(j, "right_wrist") > 0.0 > peak(j, "left_wrist")
    j = bandai["wave-left-hand_feminine_002"]
    assert peak(j, "left_wrist") > peak(j, "right_wrist") + 0.2
    j = bandai["raise-up-both-hands_masculine_005"]
    assert min(peak(j, "left_wrist"), peak(j, "right_wrist")) > 0.0
