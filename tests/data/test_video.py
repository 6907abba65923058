import json
import logging

import numpy as np
import pytest
import torch

from vmdm.data.build.build_2d import Build2DConfig, build_2d
from vmdm.motion.cameras import project, sample_camera
from vmdm.data.dataset import MotionDataset, collate
from vmdm.motion.representation import decode
from vmdm.motion.skeleton import SMPL22
from vmdm.data.build.synth import generate_clip, generate_corpus
from vmdm.data.formats.video import (
    JOINT_MAPS,
    VideoFormatError,
    convert_2d_dataset,
    load_video_clip,
    load_video_dataset,
    map_keypoints,
    solve_pnp,
    write_video_clip,
)

SMPL = {n: i for i, n in enumerate(SMPL22.joint_names)}


def _scene(seed=0, plan="walk"):
    joints = torch.from_numpy(generate_clip(plan, np.random.default_rng(seed))[0]).double()
    E, K = sample_camera(joints, generator=torch.Generator().manual_seed(seed))
    uv_px, _ = project(joints, E.double(), K.double())
    return joints, E.double(), K.double(), uv_px


def _to_layout(uv22, layout):
    """Detector-layout keypoints whose exact joints are the SMPL joints' (others: head area)."""
    jm = JOINT_MAPS[layout]
    T = uv22.shape[0]
    out = np.repeat(uv22[:, SMPL["head"] : SMPL["head"] + 1], jm.num_joints, axis=1).copy()
    out += np.random.default_rng(0).normal(0, 5, out.shape)
    for name, i in jm.exact.items():
        out[:, i] = uv22[:, SMPL[name]]
    return out, np.full((T, jm.num_joints), 0.9)


@pytest.mark.parametrize("layout", sorted(JOINT_MAPS))
def test_joint_maps(layout):
    _, _, _, uv = _scene()
    kp, sc = _to_layout(uv.numpy(), layout)
    kp22, sc22 = map_keypoints(kp, sc, layout)
    jm = JOINT_MAPS[layout]
    exact = [SMPL[n] for n in jm.exact]
    derived = [SMPL[n] for n in jm.derived]
    np.testing.assert_allclose(kp22[:, exact], uv.numpy()[:, exact])
    assert (sc22[:, exact] == 0.9).all() and (sc22[:, derived] == 0).all()
    assert np.isfinite(kp22).all()
    if derived:
        # Interpolated positions land near the true joints (within ~25 cm at 3 m ~ 80 px).
        err = np.linalg.norm(kp22[:, derived] - uv.numpy()[:, derived], axis=-1)
        assert np.median(err) < 80
    assert (map_keypoints(kp, sc, layout, derived_weight=0.5)[1][:, derived] == 0.45).all()
    with pytest.raises(ValueError, match="keypoints"):
        map_keypoints(kp[:, :-1], sc[:, :-1], layout)
    with pytest.raises(ValueError, match="unknown joint layout"):
        map_keypoints(kp, sc, "openpose25")


def test_pnp_recovers_camera_despite_noise_and_outliers():
    joints, E, K, _ = _scene(seed=3)
    uv, _ = project(joints, E)
    rng = np.random.default_rng(0)
    obs = uv.numpy() + rng.normal(0, 0.003, uv.shape)
    bad = rng.random(uv.shape[:2]) < 0.03
    obs[bad] += rng.normal(0, 0.2, (bad.sum(), 2))
    w = np.where(rng.random(uv.shape[:2]) < 0.1, 0.0, 1.0)
    est, info = solve_pnp(joints.numpy().reshape(-1, 3), obs.reshape(-1, 2), w.reshape(-1))
    assert np.abs(est[:, :3] - E[:, :3].numpy()).max() < 0.01
    assert np.abs(est[:, 3] - E[:, 3].numpy()).max() < 0.03
    assert info["points"] == int((w > 0).sum())
    with pytest.raises(ValueError, match="at least 6"):
        solve_pnp(np.zeros((5, 3)), np.zeros((5, 2)))


@pytest.mark.parametrize("given_camera", [False, True])
def test_clip_from_pixel_coco_keypoints(tmp_path, given_camera):
    joints, E, K, uv = _scene(seed=1)
    kp, sc = _to_layout(uv.numpy(), "coco17")
    lift = joints.numpy() + np.random.default_rng(1).normal(0, 0.01, joints.shape)  # an external teacher
    path = write_video_clip(
        tmp_path / "c.npz", keypoints=kp, scores=sc, lift=lift, captions=["a person walks."],
        layout="coco17", coords="pixel", intrinsics=K.numpy(), extrinsics=E.numpy() if given_camera else None,
    )
    rec = load_video_clip(path)
    T = joints.shape[0]
    assert rec["keypoints"].shape == (T - 1, 22, 2) and rec["teacher_features"].shape == (T - 1, 263)
    assert np.isnan(rec["pnp_rms"]) == given_camera
    # Decoded lift through the (canonical-frame) camera lands on the observed keypoints.
    dec = decode(torch.from_numpy(rec["teacher_features"]).double(), SMPL22)
    uvp, _ = project(dec, torch.from_numpy(rec["camera"]).double())
    w = rec["scores"] > 0
    err = np.linalg.norm(uvp.numpy() - rec["keypoints"], axis=-1)[w]
    assert np.median(err) < 0.01 and w.sum() == 12 * (T - 1)


def test_camera_frame_lift_and_fps_resampling(tmp_path):
    joints, E, K, uv = _scene(seed=2, plan="jog")
    X_cam = joints @ E[:, :3].T + E[:, 3]
    uvn = (X_cam[..., :2] / X_cam[..., 2:]).numpy()
    # 40 fps source: the loader resamples to 20 fps (every other frame here).
    fast_kp = np.repeat(uvn, 2, axis=0)[:-1]
    fast_lift = np.repeat(X_cam.numpy(), 2, axis=0)[:-1]
    path = write_video_clip(tmp_path / "c.npz", keypoints=fast_kp, lift=fast_lift, captions=["jogging"],
                            lift_frame="camera", fps=40.0)
    rec = load_video_clip(path)
    assert rec["teacher_joints"].shape[0] == joints.shape[0]
    dec = decode(torch.from_numpy(rec["teacher_features"]).double(), SMPL22)
    uvp, _ = project(dec, torch.from_numpy(rec["camera"]).double())
    assert np.abs(uvp.numpy() - rec["keypoints"]).max() < 1e-3
    # Upright: the level-camera assumption puts the head above the pelvis.
    assert (rec["teacher_joints"][:, SMPL["head"], 1] > rec["teacher_joints"][:, 0, 1]).all()


@pytest.mark.parametrize("given_camera", [True, False])
def test_clip_without_a_lift_is_lifted_by_the_given_teacher(tmp_path, given_camera):
    joints, E, K, uv = _scene(seed=4)
    X_cam = (joints @ E[:, :3].T + E[:, 3]).numpy()
    seen = []

    def teacher(kp, sc):  # an exact camera-frame lifter: the test of the frames, not of a lifter
        seen.append((kp.copy(), sc.copy()))
        return X_cam

    path = write_video_clip(tmp_path / "c.npz", keypoints=uv.numpy(), lift=None, captions=["a person walks."],
                            coords="pixel", intrinsics=K.numpy(), extrinsics=E.numpy() if given_camera else None)
    with pytest.raises(VideoFormatError, match=r"c\.npz: field 'lift': required field missing"):
        load_video_clip(path)
    rec = load_video_clip(path, teacher=teacher)
    assert rec["lift_source"] == "teacher"
    # The teacher saw the clip's keypoints, normalised by the intrinsics.
    kp_n = (uv.numpy() - K.numpy()[2:]) / K.numpy()[:2]
    np.testing.assert_allclose(seen[0][0], kp_n, atol=1e-6)  # float32 in the file
    uvp, _ = project(torch.from_numpy(rec["teacher_joints"][:-1]).double(), torch.from_numpy(rec["camera"]).double())
    assert np.abs(uvp.numpy() - rec["keypoints"]).max() < 1e-4
    if given_camera:
        # With the extrinsics the teacher's lift is the world motion itself.
        from vmdm.motion.representation import canonicalize

        np.testing.assert_allclose(rec["teacher_joints"], canonicalize(joints, SMPL22)[0].numpy(), atol=1e-5)
        assert np.isnan(rec["pnp_rms"])
    with pytest.raises(VideoFormatError, match="teacher lifter returned"):
        load_video_clip(path, teacher=lambda kp, sc: X_cam[:-1])
    # A clip with its own lift never calls the teacher.
    own = write_video_clip(tmp_path / "own.npz", keypoints=uv.numpy(), lift=joints.numpy(), captions=["walks"],
                           coords="pixel", intrinsics=K.numpy(), extrinsics=E.numpy())
    n = len(seen)
    assert load_video_clip(own, teacher=teacher)["lift_source"] == "clip" and len(seen) == n


def _write_good(path, T=30):
    joints, E, K, uv = _scene()
    return write_video_clip(path, keypoints=uv.numpy()[:T], lift=joints.numpy()[:T], captions=["walks"],
                            coords="pixel", intrinsics=K.numpy(), extrinsics=E.numpy())


@pytest.mark.parametrize(
    "field,edit,message",
    [
        ("keypoints", lambda z: z.update(keypoints=z["keypoints"][:, :17]), "needs shape"),
        ("keypoints", lambda z: z["keypoints"].__setitem__((3, 4, 0), np.nan), "NaN or inf at frame 3, joint 4"),
        ("lift", lambda z: z.update(lift=z["lift"][:-2]), "has 28 frames but keypoints have 30"),
        ("captions", lambda z: z.update(captions=np.array(["  "])), "non-empty caption"),
        ("intrinsics", lambda z: z.pop("intrinsics"), "required when coords is 'pixel'"),
        ("layout", lambda z: z.update(layout=np.array("openpose")), "unknown layout"),
    ],
)
def test_bad_clips_name_file_and_field(tmp_path, field, edit, message):
    path = _write_good(tmp_path / "clip7.npz")
    z = dict(np.load(path))
    edit(z)
    np.savez(path, **z)
    with pytest.raises(VideoFormatError, match=rf"clip7\.npz: field '{field}': .*{message}"):
        load_video_clip(path)


def test_dataset_folder_skip_bad(tmp_path, caplog):
    root = tmp_path / "vid"
    for i in range(3):
        _write_good(root / "clips" / f"c{i}.npz")
    z = dict(np.load(root / "clips" / "c1.npz"))
    z["lift"] = z["lift"][:-1]
    np.savez(root / "clips" / "c1.npz", **z)
    with pytest.raises(VideoFormatError, match="video_format.json"):
        load_video_dataset(root)
    (root / "video_format.json").write_text(json.dumps({"format": "vmdm-video-1"}))
    with pytest.raises(VideoFormatError, match="c1.npz"):
        load_video_dataset(root)
    with caplog.at_level(logging.WARNING):
        packed, norm, caps = load_video_dataset(root, skip_bad=True)
    assert list(packed["ids"]) == ["c0", "c2"] and "c1" in caplog.text
    ds = MotionDataset(root, "train", mode="2d", skip_bad=True, seed=0)
    assert len(ds) == 2 and ds[0]["motion"].shape[1] == 263
    with pytest.raises(ValueError, match="no 3D ground truth"):
        MotionDataset(root, "train", mode="3d")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    corpus = generate_corpus(tmp_path_factory.mktemp("c") / "corpus", num_clips=40, seed=4, workers=1, progress=False)
    return build_2d(corpus, tmp_path_factory.mktemp("b") / "d2", Build2DConfig(teacher="noise"), progress=False)


def test_converted_dataset_gives_the_same_tensors(built, tmp_path):
    vid = convert_2d_dataset(built, tmp_path / "vid")
    counts = json.loads((built / "vmdm_2d.json").read_text())["splits"]
    assert counts["train"] > 0
    for split in [s for s, n in counts.items() if n > 0]:
        a = MotionDataset(built, split, mode="2d", seed=7, max_frames=64)
        b = MotionDataset(vid, split, mode="2d", seed=7, max_frames=64)
        assert a.ids == b.ids and len(a) > 0
        ba = collate([a[i] for i in range(len(a))])
        bb = collate([b[i] for i in range(len(b))])
        assert ba["text"] == bb["text"]
        assert torch.equal(ba["lengths"], bb["lengths"])
        torch.testing.assert_close(ba["keypoints"], bb["keypoints"])
        torch.testing.assert_close(ba["weights"], bb["weights"])
        torch.testing.assert_close(ba["motion"], bb["motion"], atol=2e-3, rtol=1e-3)
        torch.testing.assert_close(ba["camera"], bb["camera"], atol=1e-4, rtol=1e-4)
