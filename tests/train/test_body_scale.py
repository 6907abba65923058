"""vmdm.training.body_scale: the denoiser's shrinkage of the bodies it is given, measured on training data,
recorded in every checkpoint and reproduced by the command line."""

import dataclasses
import pytest
import torch

from vmdm.motion.bones import bone_length_sum
from vmdm.training.body_scale import main, measure_body_scale
from vmdm.training.checkpoint import load_checkpoint
from vmdm.data.dataset import MotionDataset
from vmdm.motion.representation import channel_groups
from vmdm.motion.skeleton import SMPL22
from vmdm.model.text import build_text_encoder
from vmdm.training.trainer import TrainConfig, train


class _Shrinker(torch.nn.Module):
    """A denoiser whose prediction is its input with every length scaled by ``s``."""

    def __init__(self, normalizer, s):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.s = s
        self.mean = torch.as_tensor(normalizer.mean, dtype=torch.float32)
        self.std = torch.as_tensor(normalizer.std, dtype=torch.float32)
        self.g = channel_groups(SMPL22)

    def guided(self, x_t, t, text, mask, scale):
        assert not self.training
        x = x_t * self.std + self.mean
        for k in ("root_lin_vel", "root_y", "ric", "local_vel"):
            x[..., self.g[k]] *= self.s
        return (x - self.mean) / self.std


class _Clean:
    def q_sample(self, x0, t, noise):
        return x0


def test_bone_length_sum_of_a_chain():
    joints = torch.zeros(2, 22, 3)
    joints[:, :, 1] = torch.arange(22, dtype=torch.float32)  # every joint 1 m above the previous index
    parents = [-1] + list(range(21))
    assert torch.equal(bone_length_sum(joints, parents), torch.full((2,), 21.0))


@pytest.mark.parametrize("s", [0.9, 1.25])
def test_a_denoiser_that_shrinks_by_s_measures_one_over_s(quick_data, s):
    ds = MotionDataset(quick_data.dataset_2d, "train", mode="2d", max_frames=40, seed=0, random_crop=False)
    model = _Shrinker(ds.normalizer, s).train()
    got = measure_body_scale(model, _Clean(), ds.normalizer, SMPL22, build_text_encoder("bow"), ds, num_windows=10,
                             batch_size=4)
    assert got == pytest.approx(1 / s, rel=1e-4)
    assert model.training  # its mode is restored
    with pytest.raises(ValueError, match="num_windows"):
        measure_body_scale(model, _Clean(), ds.normalizer, SMPL22, build_text_encoder("bow"), ds, num_windows=0)


def test_checkpoints_record_it_and_the_command_line_reproduces_it(quick_data, tmp_path, capsys):
    cfg = TrainConfig.of(supervision="2d", data=str(quick_data.dataset_2d), out=str(tmp_path), text_encoder="bow",
                      model="tiny", steps=4, batch_size=4, max_frames=40, lr=1e-3, warmup=1, ckpt_every=4,
                      limit_clips=4, progress=False)
    ckpt = train(cfg)
    recorded = load_checkpoint(ckpt)["body_scale"]
    assert 0 < recorded < float("inf")
    assert main(["--checkpoint", str(ckpt), "--dry-run"]) == 0
    printed = float(capsys.readouterr().out.split()[2])
    assert printed == pytest.approx(recorded, abs=1e-4)  # printed with 4 decimals, on the same 4 clips

    from vmdm.inference.loading import load_model

    assert load_model(ckpt, "cpu").body_scale == pytest.approx(recorded)
    # Without the measurement (body_scale_windows=0) the lifter gets 1.
    ckpt0 = train(dataclasses.replace(cfg, out=str(tmp_path / "none"), body_scale_windows=0))
    assert load_checkpoint(ckpt0)["body_scale"] is None and load_model(ckpt0, "cpu").body_scale == 1.0
