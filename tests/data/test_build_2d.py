import json
import os
import shutil

import numpy as np
import pytest
import torch

from vmdm.data.build import build_2d as b2d
from vmdm.data.build.build_2d import Build2DConfig, build_2d, corpus_families, family_split
from vmdm.motion.cameras import CameraConfig, project
from vmdm.data.build.teacher import load_lifter
from vmdm.data.build.numerics import PINNED_ENV
from vmdm.data.build.prepare import ensure_default_data
from vmdm.motion.representation import decode
from vmdm.motion.skeleton import SMPL22
from vmdm.data.build.synth import generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("c") / "corpus", num_clips=80, seed=1, workers=1, progress=False)


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "d2"
    return build_2d(corpus, out, Build2DConfig(teacher="noise", workers=1), progress=False)


def _load(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_family_split_keeps_action_families_apart(corpus):
    fam = corpus_families(corpus)
    sp = family_split(corpus)
    lf = set(sp.lifter_families)
    assert lf and sp.main_families and not lf & set(sp.main_families)
    for cid in sp.lifter_train + sp.lifter_val:
        assert set(fam[cid]) <= lf
    main_ids = [i for s in sp.main.values() for i in s]
    assert main_ids and all(not set(fam[i]) & lf for i in main_ids)
    assert not set(sp.lifter_train) & set(sp.lifter_val)
    assert len(main_ids) + len(sp.lifter_train) + len(sp.lifter_val) + sp.dropped == len(fam)
    with pytest.raises(ValueError, match="not in the corpus families"):
        family_split(corpus, ["no_such_family"])


def test_frame_conventions_and_camera_frames(built, corpus):
    meta = json.loads((built / "vmdm_2d.json").read_text())
    assert meta["format"] == "vmdm-2d-1" and meta["teacher"] == "noise"
    obs, gt = _load(built / "obs_train.npz"), _load(built / "gt" / "train.npz")
    assert not {"gt_features", "gt_joints"} & set(obs)
    ids = [str(i) for i in obs["ids"]]
    assert ids == (built / "train.txt").read_text().split()
    texts = {json.loads(l)["id"] for l in (built / "texts.jsonl").read_text().splitlines()}
    assert set(ids) <= texts
    t_err, g_err, lift_err = [], [], []
    for i, cid in enumerate(ids):
        a, b = obs["feat_offsets"][i : i + 2]
        ja, jb = obs["joint_offsets"][i : i + 2]
        F, T = b - a, jb - ja
        assert F == T - 1
        assert (T, 22, 3) == np.load(corpus / "new_joints" / f"{cid}.npy").shape
        kp = torch.from_numpy(obs["keypoints"][a:b])
        seen = torch.from_numpy(obs["scores"][a:b]) > 0
        teacher = decode(torch.from_numpy(obs["teacher_features"][a:b]), SMPL22)
        assert torch.allclose(teacher, torch.from_numpy(obs["teacher_joints"][ja : jb - 1]), atol=1e-4)
        uv, _ = project(teacher, torch.from_numpy(obs["camera"][i]))
        t_err.append((uv - kp).norm(dim=-1)[seen].median())
        truth = decode(torch.from_numpy(gt["gt_features"][a:b]), SMPL22)
        uv, _ = project(truth, torch.from_numpy(gt["camera"][i]))
        g_err.append((uv - kp).norm(dim=-1)[seen].median())
        lift_err.append((teacher - truth).norm(dim=-1).mean())
    # Normalised image units: 0.003 is 3 px at the simulated 1000 px focal length.
    assert 0.001 < float(np.median(g_err)) < 0.01  # detector noise only
    assert float(np.median(t_err)) < 0.03  # the teacher adds its own (small) reprojection error
    assert float(np.median(lift_err)) > 0.02  # ... and is wrong in 3D
    for sub in ("teacher", "gt"):
        assert np.load(built / sub / "Std.npy").shape == (263,)


def test_build_is_deterministic_across_worker_counts(corpus, built, tmp_path):
    out = build_2d(corpus, tmp_path / "again", Build2DConfig(teacher="noise", workers=2), progress=False)
    a, b = _load(built / "obs_val.npz"), _load(out / "obs_val.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_oracle_teacher_lifts_the_true_motion(corpus, built, tmp_path):
    # Same per-clip seeds: the same cameras and keypoints as the noise-teacher build; only
    # the lift differs, and it is the ground truth in the ground truth's canonical frame.
    out = build_2d(corpus, tmp_path / "oracle", Build2DConfig(teacher="oracle", workers=1), progress=False)
    assert json.loads((out / "vmdm_2d.json").read_text())["teacher"] == "oracle"
    obs, gt, noisy = _load(out / "obs_train.npz"), _load(out / "gt" / "train.npz"), _load(built / "obs_train.npz")
    np.testing.assert_array_equal(obs["keypoints"], noisy["keypoints"])
    np.testing.assert_allclose(obs["teacher_features"], gt["gt_features"], atol=1e-6)
    np.testing.assert_allclose(obs["teacher_joints"], gt["gt_joints"], atol=1e-6)
    np.testing.assert_allclose(obs["camera"], gt["camera"], atol=1e-6)
    assert np.abs(noisy["teacher_joints"] - gt["gt_joints"]).max() > 0.01


def test_per_frame_cameras(corpus, tmp_path):
    cfg = Build2DConfig(teacher="noise", camera=CameraConfig(per_frame=True, pan_deg_per_s=20.0))
    out = build_2d(corpus, tmp_path / "pf", cfg, progress=False)
    obs = _load(out / "obs_test.npz")
    assert "camera" not in obs and obs["camera_frames"].shape == (len(obs["keypoints"]), 3, 4)
    a, b = obs["feat_offsets"][:2]
    cams = torch.from_numpy(obs["camera_frames"][a:b])
    assert (cams[1:] - cams[:-1]).abs().max() > 1e-4  # the camera moves
    teacher = decode(torch.from_numpy(obs["teacher_features"][a:b]), SMPL22)
    uv, _ = project(teacher, cams)
    seen = torch.from_numpy(obs["scores"][a:b]) > 0
    assert (uv - torch.from_numpy(obs["keypoints"][a:b])).norm(dim=-1)[seen].median() < 0.03


def test_build_errors(corpus, built, tmp_path):
    with pytest.raises(FileExistsError, match="already exists"):
        build_2d(corpus, built, Build2DConfig(teacher="noise"), progress=False)
    with pytest.raises(ValueError, match="expected 'learned', 'noise' or 'oracle'"):
        build_2d(corpus, tmp_path / "z", Build2DConfig(teacher="perfect", workers=1), progress=False)
    with pytest.raises(FileNotFoundError, match="lifter checkpoint"):
        build_2d(corpus, tmp_path / "x", Build2DConfig(teacher="learned", lifter=str(tmp_path / "none.pt")), progress=False)
    with pytest.raises(FileNotFoundError, match="meta.jsonl"):
        build_2d(tmp_path, tmp_path / "y", Build2DConfig(teacher="noise"), progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_writes_dataset(corpus, tmp_path, capsys):
    assert b2d.main(["--corpus", str(corpus), "--out", str(tmp_path / "cli"), "--teacher", "noise",
                     "--workers", "1", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "cli" / "vmdm_2d.json").is_file()


def test_prepare_quick_builds_once_and_survives_failures(quick_data, tmp_path_factory, monkeypatch):
    paths = quick_data
    assert (paths.corpus / "meta.jsonl").is_file() and (paths.dataset_2d / "vmdm_2d.json").is_file()
    lifter = load_lifter(paths.lifter)
    meta = json.loads((paths.dataset_2d / "vmdm_2d.json").read_text())
    assert meta["teacher"] == "learned" and meta["lifter_families"] == lifter.extra["lifter_families"]
    record = json.loads((paths.root / "data_hash.json").read_text())
    assert record["numerics"]["pinned"] and record["recipe"] == "quick"
    stamps = {p: p.stat().st_mtime_ns for p in (paths.lifter, paths.dataset_2d / "obs_train.npz")}
    # Second call: nothing is rebuilt.
    calls = []
    monkeypatch.setattr("vmdm.data.build.prepare.run_pinned", lambda *a, **k: calls.append(a))
    monkeypatch.setattr("vmdm.data.build.prepare.build_2d", lambda *a, **k: calls.append(1))
    assert ensure_default_data(paths.root.parent, quick=True, progress=False) == paths
    assert not calls and all(p.stat().st_mtime_ns == t for p, t in stamps.items())

    # A build that dies half-way leaves nothing that looks complete, and the next call builds
    # (in this process: its numerics are declared pinned, as in the child a build runs in).
    for k, v in PINNED_ENV.items():
        monkeypatch.setenv(k, v)
    other = tmp_path_factory.mktemp("cache2")
    (other / "quick").mkdir()
    for name in ("corpus", "lifter.pt"):
        os.symlink(paths.root / name, other / "quick" / name)
    shutil.copy(paths.root / "build.json", other / "quick" / "build.json")

    def boom(corpus, out, *a, **k):
        out.mkdir(parents=True)
        (out / "obs_train.npz").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr("vmdm.data.build.prepare.build_2d", boom)
    with pytest.raises(KeyboardInterrupt):
        ensure_default_data(other, quick=True, progress=False)
    assert not (other / "quick" / "data_2d").exists()
    assert not list((other / "quick").glob("data_2d.tmp-*"))
    assert not (other / "quick" / "data_hash.json").exists()
    monkeypatch.setattr("vmdm.data.build.prepare.build_2d", build_2d)
    again = ensure_default_data(other, quick=True, progress=False)
    assert (again.dataset_2d / "vmdm_2d.json").is_file()
    # Same corpus and teacher, same 2D data: the same bytes as the session's build.
    assert json.loads((again.root / "data_hash.json").read_text())["data"] == record["data"]


def test_data_of_an_earlier_build_are_rebuilt_not_mixed(tmp_path, monkeypatch):
    from vmdm.data.build import prepare

    for k, v in PINNED_ENV.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "quick"
    (root / "corpus").mkdir(parents=True)
    (root / "corpus" / "meta.jsonl").write_text("{}\n")
    (root / "lifter.pt").write_bytes(b"old")
    built = []
    monkeypatch.setattr(prepare, "_ensure_corpus", lambda target, *a: built.append(target.exists()))
    monkeypatch.setattr(prepare, "_ensure_lifter", lambda target, *a: built.append(target.exists()) or False)
    monkeypatch.setattr(prepare, "_ensure_dataset", lambda *a: None)
    monkeypatch.setattr(prepare, "data_record", lambda *a: {"data": "x"})
    prepare.ensure_default_data(tmp_path, quick=True, progress=False)
    assert built == [False, False]  # the earlier artefacts were removed before building
    assert json.loads((root / "build.json").read_text()) == {"build": prepare.DATA_BUILD}


def test_default_data_are_the_same_bytes_under_other_threads_and_cpu_dispatch(quick_data, tmp_path):
    """The whole quick build (corpus, teacher, 2D data) again, in a process with another
    thread count, numpy without its AVX2 code paths and ATen asked for its baseline
    kernels: the data hash is the session's. Where the numerics match those the hashes
    were published with, both equal the published ones."""
    import subprocess
    import sys

    from vmdm.data.build.prepare import expected_hashes

    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "NPY_DISABLE_CPU_FEATURES": "X86_V3",
           "ATEN_CPU_CAPABILITY": "default"}
    for k in PINNED_ENV:
        if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY"):
            env.pop(k, None)
    subprocess.run([sys.executable, "-m", "vmdm.data.build.prepare", "build", "--quick", "--cache-dir", str(tmp_path),
                    "--no-progress"], env=env, check=True)
    mine = json.loads((quick_data.root / "data_hash.json").read_text())
    other = json.loads((tmp_path / "quick" / "data_hash.json").read_text())
    for k in ("corpus", "lifter", "dataset_2d", "data"):
        assert other[k] == mine[k], k
    want = expected_hashes()["quick"]
    if all(mine["numerics"].get(k) == v for k, v in want["numerics"].items()):
        assert {k: mine[k] for k in ("corpus", "lifter", "dataset_2d", "data")} == {
            k: want[k] for k in ("corpus", "lifter", "dataset_2d", "data")}


def test_check_command_reports_changed_data(quick_data, tmp_path, capsys):
    from vmdm.data.build import prepare

    shutil.copytree(quick_data.root, tmp_path / "quick", symlinks=True)
    assert prepare.main(["check", "--quick", "--cache-dir", str(tmp_path), "--no-progress"]) in (0, 1)
    first = capsys.readouterr().out
    # One caption edited: the corpus (and so the whole data) hash no longer matches.
    texts = sorted((tmp_path / "quick" / "corpus" / "texts").glob("*.txt"))[0]
    texts.write_text(texts.read_text() + "a person edits a caption.#a/DET#0.0#0.0\n")
    assert prepare.main(["check", "--quick", "--cache-dir", str(tmp_path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "corpus" in out and "DIFFERS" in out and "changed since they were built" in out
    assert "not comparable" in out
    if "match the published hashes" in first:
        assert out.count("DIFFERS") == 2  # corpus and the hash over all three
