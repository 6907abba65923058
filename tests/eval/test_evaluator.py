"""The evaluator: learns from the train split only, matches held-out motions to their
captions better than chance, and round-trips through its versioned checkpoint."""

from pathlib import Path

import numpy as np
import pytest
import torch

import vmdm.data.dataset as dataset_mod
from vmdm.training.checkpoint import load_checkpoint
from vmdm.data.dataset import NpzGTStore
from vmdm.eval.evaluator import EVALUATOR_VERSION, load_evaluator, split_hash
from vmdm.eval.train_evaluator import EvaluatorTrainConfig, _open_split, load_train_split, train_evaluator

from .conftest import TINY_EVALUATOR


class TrainOnlyStore(NpzGTStore):
    """Ground truth that refuses every split but train, recording what was asked for."""

    def __init__(self, root):
        super().__init__(root)
        self.asked: list[str] = []

    def load(self, split):
        self.asked.append(split)
        if split != "train":
            raise AssertionError(f"ground truth of split {split!r} was read")
        return super().load(split)


def test_open_split_refuses_val_and_test(quick_data):
    for split in ("val", "test"):
        with pytest.raises(PermissionError, match="train"):
            _open_split(str(quick_data.dataset_2d), split, None)


def test_evaluator_never_reads_val_or_test(quick_data, tmp_path, monkeypatch):
    root = quick_data.dataset_2d
    store = TrainOnlyStore(root)
    opened: list[str] = []
    real_load = dataset_mod._load_npz

    def spy(path):
        opened.append(Path(path).name)
        if "test" in Path(path).name or "val" in Path(path).name:
            raise AssertionError(f"{path} was opened")
        return real_load(path)

    monkeypatch.setattr(dataset_mod, "_load_npz", spy)
    cfg = EvaluatorTrainConfig(data=str(root), out=str(tmp_path / "ev.pt"), **{**TINY_EVALUATOR, "steps": 3})
    path = train_evaluator(cfg, gt_store=store)
    assert store.asked == ["train"]
    assert opened == ["obs_train.npz"]
    ck = load_checkpoint(path)
    train_ids = set((root / "train.txt").read_text().split())
    held_out = set((root / "test.txt").read_text().split()) | set((root / "val.txt").read_text().split())
    assert set(ck["train_split"]["ids"]) == train_ids
    assert not set(ck["train_split"]["ids"]) & held_out
    assert ck["train_split"]["split"] == "train"


def test_heldout_retrieval_beats_chance(tiny_evaluator):
    _, meta = load_evaluator(tiny_evaluator)
    h = meta["metrics"]["heldout"]
    assert h["n_clips"] >= 10
    # Averaged over 5 caption draws; chance is 1/N for top-1 and 3/N for top-3.
    assert h["top1"] > 2 * h["chance_top1"]
    assert h["top3"] > 1.5 * h["chance_top3"]


def test_checkpoint_is_versioned_and_reproducible(tiny_evaluator, quick_data, tmp_path):
    ev, meta = load_evaluator(tiny_evaluator)
    assert meta["version"] == EVALUATOR_VERSION
    # Plain data only: the file loads without unpickling any Python object.
    plain = torch.load(tiny_evaluator, weights_only=True)
    assert plain["format"] == "vmdm-evaluator" and isinstance(plain["normalizer"]["mean"], torch.Tensor)
    split = load_train_split(quick_data.dataset_2d)
    assert meta["train_split"]["hash"] == split_hash(split.ids, split.features)
    # The same motions embed identically after a reload (eval mode: no dropout).
    x = torch.from_numpy(np.stack([f[:40] for f in split.features[:4]]))
    again, _ = load_evaluator(tiny_evaluator)
    np.testing.assert_allclose(ev.embed_motions(x, [40] * 4), again.embed_motions(x, [40] * 4), atol=1e-6)
    e = ev.embed_motions(x, [40] * 4)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # A checkpoint of another format version is refused with a clear message.
    ck = load_checkpoint(tiny_evaluator)
    ck["version"] = EVALUATOR_VERSION + 1
    bad = tmp_path / "future.pt"
    torch.save(ck, bad)
    with pytest.raises(ValueError, match="version"):
        load_evaluator(bad)


def test_evaluator_is_the_same_whatever_the_callers_threads(quick_data, tmp_path):
    """The evaluator is the measuring instrument: by default it trains on one thread, so the
    same data give the same evaluator on any machine; the caller's thread count is restored."""
    kw = {k: v for k, v in TINY_EVALUATOR.items() if k != "threads"}
    before = torch.get_num_threads()
    states = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            cfg = EvaluatorTrainConfig(data=str(quick_data.dataset_2d), out=str(tmp_path / f"{threads}.pt"), **kw)
            out = train_evaluator(cfg)
            assert torch.get_num_threads() == threads
            ck = load_checkpoint(out)
            assert ck["train_config"]["cpu_threads"] == 1
            states.append(ck["state_dict"])
    finally:
        torch.set_num_threads(before)
    for k, v in states[0].items():
        assert torch.equal(states[1][k], v), k


def test_split_hash_changes_with_the_data():
    f = [np.zeros((5, 263), np.float32), np.ones((6, 263), np.float32)]
    h = split_hash(["a", "b"], f)
    assert h == split_hash(["a", "b"], [x.copy() for x in f])
    assert h != split_hash(["a", "c"], f)
    g = [f[0], f[1].copy()]
    g[1][3, 7] = 2.0
    assert h != split_hash(["a", "b"], g)


def test_embeddings_are_computed_without_tf32_and_the_callers_flags_come_back(monkeypatch):
    from vmdm.eval.evaluator import full_float32

    seen = []
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with full_float32():
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        assert seen == [(False, False)]
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_machine_description_names_the_device_that_ran():
    from vmdm.eval.run import machine_description

    assert ": CPU, " in machine_description("cpu")
