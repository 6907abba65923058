"""Loading a checkpoint never runs code: every entry point that takes a file refuses one whose
pickle names a Python callable, every file the project writes loads with
``torch.load(weights_only=True)``, and older files convert (knowingly) to the safe layout."""

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vmdm.training.checkpoint import (FORMAT, UnsafeCheckpointError, atomic_save, load_checkpoint, main as checkpoint_main,
                             rng_state, set_rng_state)

ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Pickles as a call of os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil(tmp_path):
    """``(path of a crafted checkpoint, marker its payload would create)``, shaped like a real
    denoiser checkpoint (and a lifter, for the lifter loaders) so that no key check stops it first."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save({"format": "vmdm-lifter-1", "model": _Payload(marker), "ema": {}, "config": {}, "model_config": {},
                "state_dict": _Payload(marker), "rng": [], "step": 0}, path)
    return path, marker


@pytest.fixture(scope="module")
def good_checkpoint(quick_data, tmp_path_factory):
    from vmdm.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("safe_ckpt")
    return train(TrainConfig.of(supervision="2d", data=str(quick_data.dataset_2d), out=str(out), text_encoder="bow",
                             model="tiny", steps=2, batch_size=4, max_frames=40, warmup=1, ckpt_every=2,
                             log_every=1, progress=False, body_scale_windows=4))


def _assert_refused(message: str, path: Path, marker: Path):
    assert str(path) in message
    assert "not loaded" in message and "may contain code" in message
    assert "python -m vmdm.training.checkpoint convert" in message
    assert "posix.system" in message  # says what the safe loader refused
    assert not marker.exists(), "the payload ran"


def test_the_crafted_file_does_run_code_when_fully_unpickled(evil):
    """The control: the file the tests below feed to every loader is really malicious."""
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.exists()


# Each entry point: (path of the crafted file, tmp_path, quick_data) -> (call, the path its error names).


def _train_resume(path, tmp_path, quick_data):
    import vmdm.train

    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(path.read_bytes())
    return lambda: vmdm.train.main(["--data", str(quick_data.dataset_2d), "--out", str(out), "--text-encoder", "bow",
                                    "--model", "tiny", "--steps", "2", "--batch-size", "4", "--max-frames", "40",
                                    "--no-progress", "--resume"]), out / "checkpoint.pt"


def _eval_checkpoint(path, tmp_path, quick_data):
    from vmdm.eval.run import main

    return lambda: main(["--checkpoint", str(path), "--data", str(quick_data.dataset_2d), "--quick",
                         "--out", str(tmp_path / "e")]), path


def _build_2d(path, tmp_path, quick_data):
    from vmdm.data.build.build_2d import main

    return lambda: main(["--corpus", str(quick_data.corpus), "--out", str(tmp_path / "built"), "--lifter", str(path),
                         "--no-progress"]), path


def _body_scale(path, tmp_path, quick_data):
    from vmdm.training.body_scale import main

    return lambda: main(["--checkpoint", str(path), "--data", str(quick_data.dataset_2d), "--windows", "2"]), path


def _compare_reuse(path, tmp_path, quick_data):
    from vmdm.experiments.compare import Budget, _train_variant

    work = tmp_path / "work"
    (work / "v").mkdir(parents=True)
    (work / "v" / "checkpoint.pt").write_bytes(path.read_bytes())
    budget = Budget("test", True, dict(model="tiny", steps=1, text_encoder="bow"), {}, True)
    return lambda: _train_variant("v", {}, budget, work, None, 0, None, False), work / "v" / "checkpoint.pt"


def _loader(load):
    return lambda path, tmp_path, quick_data: ((lambda: load(path)), path)


def _lifter(path):
    from vmdm.data.build.teacher import load_lifter

    load_lifter(path)


def _teacher(path):
    from vmdm.data.build.teacher import LearnedTeacher

    LearnedTeacher.from_checkpoint(path)


def _evaluator(path):
    from vmdm.eval.evaluator import load_evaluator

    load_evaluator(path)


def _model(path):
    from vmdm.inference.loading import load_model

    load_model(path, "cpu")


def _data_root(path):
    from vmdm.eval.run import lm_data_root

    lm_data_root(path)


ENTRY_POINTS = {
    "vmdm.train --resume": _train_resume,
    "vmdm.eval --checkpoint": _eval_checkpoint,
    "vmdm.data.build.build_2d --lifter": _build_2d,
    "vmdm.training.body_scale --checkpoint": _body_scale,
    "compare reuses a finished run": _compare_reuse,
    "load_checkpoint": _loader(load_checkpoint),
    "load_lifter": _loader(_lifter),
    "LearnedTeacher.from_checkpoint": _loader(_teacher),
    "load_evaluator": _loader(_evaluator),
    "load_model": _loader(_model),
    "lm_data_root": _loader(_data_root),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_loader_refuses_a_file_that_would_run_code(entry, evil, tmp_path, quick_data):
    path, marker = evil
    call, named = ENTRY_POINTS[entry](path, tmp_path, quick_data)
    with pytest.raises(UnsafeCheckpointError) as e:
        call()
    _assert_refused(str(e.value), named, marker)


def test_eval_refuses_a_crafted_evaluator(evil, good_checkpoint, tmp_path, quick_data):
    from vmdm.eval.run import main

    path, marker = evil
    with pytest.raises(UnsafeCheckpointError) as e:
        main(["--checkpoint", str(good_checkpoint), "--evaluator", str(path), "--quick", "--out", str(tmp_path / "e")])
    _assert_refused(str(e.value), path, marker)


def test_sample_command_line_refuses_a_crafted_checkpoint(evil, tmp_path):
    path, marker = evil
    res = subprocess.run([sys.executable, "-m", "vmdm.sample", "--checkpoint", str(path), "--text", "a person walks",
                          "--out", str(tmp_path / "s"), "--device", "cpu"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    _assert_refused(res.stderr, path, marker)
    assert not (tmp_path / "s").exists()


def test_every_file_the_project_writes_loads_with_weights_only(good_checkpoint, quick_data, tmp_path):
    from vmdm.training.body_scale import main as body_scale_main
    from vmdm.data.build.teacher import load_lifter, save_lifter
    from vmdm.model.text import build_text_encoder

    ck = torch.load(good_checkpoint, weights_only=True)
    assert ck["format"] == FORMAT and "version" not in ck
    assert isinstance(ck["normalizer"]["mean"], torch.Tensor) and isinstance(ck["rng"][0]["numpy"], dict)
    assert ck["body_scale"] > 0
    # vmdm.training.body_scale rewrites the checkpoint in place.
    copy = tmp_path / "ck.pt"
    copy.write_bytes(good_checkpoint.read_bytes())
    assert body_scale_main(["--checkpoint", str(copy), "--windows", "2"]) == 0
    assert type(torch.load(copy, weights_only=True)["body_scale"]) is float
    # The teacher lifter: the default one and a fresh save carrying numpy values in its metrics.
    lifter = torch.load(quick_data.lifter, weights_only=True)
    assert lifter["format"] == "vmdm-lifter-1"
    model = load_lifter(quick_data.lifter)
    path = save_lifter(tmp_path / "lifter.pt", model, {"mpjpe_mm": np.float64(12.5), "per_joint": np.ones(3)},
                       extra={"corpus": tmp_path})
    saved = torch.load(path, weights_only=True)
    assert saved["metrics"]["mpjpe_mm"] == 12.5 and type(saved["metrics"]["mpjpe_mm"]) is float
    assert torch.equal(saved["metrics"]["per_joint"], torch.ones(3, dtype=torch.float64))
    assert saved["extra"]["corpus"] == str(tmp_path)
    # The text-embedding cache is an npz without pickled objects.
    enc = build_text_encoder("bow", cache_dir=tmp_path / "text")
    enc(["a person walks", "a person jumps"])
    enc.save_cache()
    with np.load(tmp_path / "text" / "text_bow" / "cache.npz", allow_pickle=False) as z:
        assert sorted(z["captions"].tolist()) == ["a person jumps", "a person walks"]


def test_atomic_save_refuses_what_the_safe_loader_could_not_read(tmp_path):
    path = tmp_path / "ck.pt"
    with pytest.raises(TypeError, match=r"ck.pt\['a'\]\[1\]: expected tensors and plain data .*got builtins.object"):
        atomic_save({"a": [1, object()]}, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_random_state_round_trips_exactly_through_a_safe_file(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    path = atomic_save({"rng": rng_state("cpu")}, tmp_path / "rng.pt")

    def draws():
        return torch.rand(4), np.random.standard_normal(5), np.random.randint(0, 2**31, 3), [random.random(), random.random()]

    want = draws()
    set_rng_state(torch.load(path, weights_only=True)["rng"], "cpu")
    got = draws()
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1]) and np.array_equal(got[2], want[2])
    assert got[3] == want[3]


def _as_written_before(ck: dict) -> dict:
    """A checkpoint in the layout vmdm.train wrote before format 2: numpy arrays and random-state tuples."""
    old = dict(ck, version=1)
    del old["format"]
    for k in ("feature_convention", "feature_convention_name"):
        old.pop(k)  # recorded since the HumanML3D-exact features (convention 2)
    old["normalizer"] = {k: v.numpy() for k, v in ck["normalizer"].items()}
    np.random.seed(7), random.seed(7)
    old["rng"] = [{"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}]
    return old


def test_an_older_checkpoint_is_refused_then_converts_and_resumes_its_random_state(good_checkpoint, tmp_path):
    from vmdm.inference.loading import load_model

    ck = load_checkpoint(good_checkpoint)
    old_ck = _as_written_before(ck)
    old = tmp_path / "old.pt"
    torch.save(old_ck, old)
    with pytest.raises(UnsafeCheckpointError, match=r"old.pt: not loaded: .*numpy.*may contain code.*"
                                                    r"python -m vmdm.training.checkpoint convert .*old.pt NEW.pt"):
        load_model(old, "cpu")

    new = tmp_path / "new.pt"
    assert checkpoint_main(["convert", str(old), str(new)]) == 0
    conv = torch.load(new, weights_only=True)
    assert conv["format"] == FORMAT and "version" not in conv
    for k, v in ck["ema"].items():
        assert torch.equal(conv["ema"][k], v), k
    assert torch.equal(conv["normalizer"]["mean"], ck["normalizer"]["mean"])
    assert conv["body_scale"] == ck["body_scale"]
    # Its model was trained on the old feature convention: loading it says so.
    from vmdm.motion.representation import FeatureConventionError

    with pytest.raises(FeatureConventionError, match=r"new.pt: made from motion features of convention 1"):
        load_model(new, "cpu")

    # The converted random state continues the streams exactly where the old tuples left them.
    np.random.set_state(old_ck["rng"][0]["numpy"]), random.setstate(old_ck["rng"][0]["python"])
    want = np.random.standard_normal(4), random.random()
    np.random.seed(0), random.seed(0)
    set_rng_state(conv["rng"][0], "cpu")
    got = np.random.standard_normal(4), random.random()
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]

    with pytest.raises(SystemExit):  # NEW exists: not replaced without --overwrite
        checkpoint_main(["convert", str(old), str(new)])
    assert checkpoint_main(["convert", str(new), str(new), "--overwrite"]) == 0
    assert torch.load(new, weights_only=True)["format"] == FORMAT


def test_an_older_evaluator_or_lifter_converts(tmp_path):
    old = tmp_path / "old_eval.pt"
    torch.save({"format": "vmdm-evaluator", "version": 1, "normalizer": {"mean": np.zeros(3, np.float32)},
                "metrics": {"top1": np.float32(0.5), "n": np.int64(3)}, "train_split": {"data_root": Path("/d")}}, old)
    with pytest.raises(UnsafeCheckpointError, match="old_eval.pt: not loaded"):
        load_checkpoint(old)
    new = tmp_path / "new_eval.pt"
    checkpoint_main(["convert", str(old), str(new)])
    ck = torch.load(new, weights_only=True)
    assert ck["format"] == "vmdm-evaluator" and ck["version"] == 1  # their own format keys are kept
    assert torch.equal(ck["normalizer"]["mean"], torch.zeros(3)) and ck["metrics"] == {"top1": 0.5, "n": 3}
    assert ck["train_split"]["data_root"] == "/d"


def test_convert_help_says_it_runs_code_and_is_for_trusted_files():
    res = subprocess.run([sys.executable, "-m", "vmdm.training.checkpoint", "convert", "--help"], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "runs any code the file contains" in text and "trust" in text
