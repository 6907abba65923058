"""python -m vmdm.sample: the files it writes, determinism, and clear errors for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vmdm.export.bvh import read_bvh
from vmdm.export.render import ffmpeg_available
from vmdm.sample import main

from .test_render import _read

ROOT = Path(__file__).resolve().parents[2]
# Short motions and few DDIM steps keep each run to a couple of seconds on a CPU.
FAST = ["--length", "16", "--sample-steps", "4", "--no-progress"]


def _run(ckpt, out, *extra):
    assert main(["--checkpoint", str(ckpt), "--out", str(out), *FAST, *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_writes_every_format(tiny_checkpoint, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a comment line\n\na person jumps in place.\n")
    out = tmp_path / "out"
    res = _run(tiny_checkpoint, out, "--text", "a person waves with his right hand.", "--text-file", str(prompts),
               "--num-samples", "2", "--formats", "npy,features,mp4,gif,bvh", "--video-size", "128")
    names = [s["name"] for s in res["samples"]]
    assert names == ["sample00_rep00", "sample00_rep01", "sample01_rep00", "sample01_rep01"]
    assert [s["text"] for s in res["samples"]] == ["a person waves with his right hand."] * 2 + [
        "a person jumps in place."] * 2
    for s in res["samples"]:
        n = s["name"]
        joints = np.load(out / f"{n}_joints.npy")
        assert joints.shape == (16, 22, 3) and np.isfinite(joints).all()
        assert np.load(out / f"{n}_features.npy").shape == (16, 263)
        bvh = read_bvh(out / f"{n}.bvh")
        assert bvh.num_joints == 22 and bvh.num_frames == 16
        assert _read(out / f"{n}.gif").shape[:3] == (16, 128, 128)
        if ffmpeg_available():
            assert _read(out / f"{n}.mp4").shape[:3] == (16, 128, 128)
        assert s["bvh_error_m"] >= 0


def test_same_seed_same_motions_other_seed_other_motions(tiny_checkpoint, tmp_path):
    args = ["--text", "a person walks forward.", "--num-samples", "2", "--formats", "npy"]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _run(tiny_checkpoint, a, *args, "--seed", "7")
    _run(tiny_checkpoint, b, *args, "--seed", "7")
    _run(tiny_checkpoint, c, *args, "--seed", "8")
    ja = np.load(a / "sample00_rep00_joints.npy")
    assert np.array_equal(ja, np.load(b / "sample00_rep00_joints.npy"))
    assert np.array_equal(np.load(a / "sample00_rep01_joints.npy"), np.load(b / "sample00_rep01_joints.npy"))
    assert np.abs(ja - np.load(c / "sample00_rep00_joints.npy")).max() > 1e-3
    # Two repetitions of one prompt are different samples too.
    assert np.abs(ja - np.load(a / "sample00_rep01_joints.npy")).max() > 1e-3
    assert not (a / "sample00_rep00.bvh").exists()


def test_default_length_is_the_training_window(tiny_checkpoint, loaded_tiny, tmp_path):
    # The tiny model was trained on 40-frame windows; its denoiser could take more.
    assert loaded_tiny.train_frames == 40 < loaded_tiny.model.cfg.max_frames
    out = tmp_path / "o"
    assert main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--text", "a person walks.",
                 "--sample-steps", "2", "--formats", "npy", "--no-progress"]) == 0
    assert np.load(out / "sample00_rep00_joints.npy").shape == (40, 22, 3)


def _error(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_bad_input_names_the_argument(tiny_checkpoint, loaded_tiny, tmp_path, capsys):
    base = ["--out", str(tmp_path / "o"), "--no-progress"]
    ck = ["--checkpoint", str(tiny_checkpoint)]
    err = _error(capsys, ["--checkpoint", str(tmp_path / "missing.pt"), "--text", "x", *base])
    assert "--checkpoint" in err and "missing.pt" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# only a comment\n   \n")
    err = _error(capsys, [*ck, "--text-file", str(empty), *base])
    assert "--text-file" in err and "no prompts" in err
    err = _error(capsys, [*ck, "--text-file", str(tmp_path / "nope.txt"), *base])
    assert "--text-file" in err
    err = _error(capsys, [*ck, "--text", "a person jumps.", "--length", "100000", *base])
    assert "--length" in err and f"1..{loaded_tiny.model.cfg.max_frames}" in err
    err = _error(capsys, [*ck, "--text", "a person jumps.", "--length", "0", *base])
    assert "--length" in err
    err = _error(capsys, [*ck, *base])
    assert "--text" in err
    err = _error(capsys, [*ck, "--text", "x", "--formats", "npy,avi", *base])
    assert "--formats" in err and "avi" in err
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    err = _error(capsys, [*ck, "--lift", str(broken), *base])
    assert "--lift" in err and "broken.npz" in err
    err = _error(capsys, [*ck, "--lift", str(tmp_path / "absent.npz"), *base])
    assert "--lift" in err and "absent.npz" in err
    from vmdm.data.formats.video import write_video_clip

    # A clip longer than the model can denoise in one go (T frames -> T - 1 motion frames).
    T = loaded_tiny.model.cfg.max_frames + 2
    pose = np.zeros((T, 22, 3))
    pose[:, :, 1] = np.linspace(0, 1.7, 22)
    pose[:, :, 0] = np.linspace(-0.3, 0.3, 22) ** 2
    long = write_video_clip(tmp_path / "long.npz", keypoints=np.zeros((T, 22, 2)), lift=pose, captions=["x"],
                            extrinsics=np.concatenate([np.eye(3), [[0], [0], [4]]], axis=1))
    err = _error(capsys, [*ck, "--lift", str(long), *base])
    assert "--lift" in err and f"at most {loaded_tiny.model.cfg.max_frames}" in err
    err = _error(capsys, [*ck, "--lift", str(long), "--length", "20", *base])
    assert "--length" in err
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"garbage")
    err = _error(capsys, ["--checkpoint", str(bad_ckpt), "--text", "x", *base])
    assert "--checkpoint" in err and "bad.pt" in err
    assert not (tmp_path / "o").exists()  # nothing written for bad input


def test_module_entry_point(tmp_path):
    # The documented invocation, as a separate process: a missing checkpoint fails fast.
    r = subprocess.run([sys.executable, "-m", "vmdm.sample", "--checkpoint", str(tmp_path / "none.pt"), "--text",
                        "x", "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "--checkpoint" in r.stderr and "none.pt" in r.stderr
