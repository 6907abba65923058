"""Run under torchrun by test_train.py: 2-process gloo training on CPU, where each rank adds a
rank-dependent constant to its loss terms so the test can check they are averaged across ranks."""

import sys

import torch.distributed as dist

import vmdm.training.trainer as train_mod
from vmdm.training.trainer import TrainConfig, train

real_call = train_mod.Objective.__call__


def marked(self, pred, batch):
    terms = real_call(self, pred, batch)
    rank = dist.get_rank() if dist.is_initialized() else 0
    terms["rank_marker"] = terms["loss"].detach() * 0 + (rank + 1)
    return terms


train_mod.Objective.__call__ = marked

if __name__ == "__main__":
    data, out = sys.argv[1], sys.argv[2]
    train(TrainConfig.of(supervision="2d", data=data, out=out, text_encoder="bow", model="tiny", steps=4, batch_size=8,
                      max_frames=40, log_every=1, ckpt_every=2, progress=False, device="cpu"))
