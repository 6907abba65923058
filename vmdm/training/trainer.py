"""The training loop of ``python -m vmdm.train``: a :class:`Trainer` that sets a run up,
restores it from its checkpoint, takes optimisation steps, logs and saves.

Supervision modes: ``2d`` (VideoMDM, the default), ``3d`` (MDM baseline) and ``teacher``
(MDM trained on the teacher lifts). With no ``--data``, the built-in corpus, teacher lifter
and 2D-only dataset are built into the cache on first use. Runs on one device or under
``torchrun`` (DistributedDataParallel; NCCL on GPU, gloo on CPU).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from vmdm.cli import ConfigError, run_main, save_config
from vmdm.data.build.fingerprint import dataset_hash
from vmdm.data.dataset import MotionDataset, collate
from vmdm.model.denoiser import MotionDenoiser
from vmdm.model.diffusion import Diffusion
from vmdm.model.text import build_text_encoder
from vmdm.training.body_scale import measure_body_scale
from vmdm.training.checkpoint import DenoiserCheckpoint, rng_state, set_rng_state
from vmdm.training.config import RECIPES, TrainConfig
from vmdm.training.data_order import EpochBatches, SeededItems
from vmdm.training.distributed import reseed, resume_rng, setup_distributed, timestep_weighted_mean
from vmdm.training.ema import EMA
from vmdm.training.final_samples import write_samples
from vmdm.training.metrics_log import MetricsLog
from vmdm.training.multistep import unrolled_losses, unrolled_timesteps, unrolls
from vmdm.training.objectives import GT_KEYS, Objective
from vmdm.training.profiling import cuda_profiler_start, cuda_profiler_stop, enable_nvtx, nvtx_range

__all__ = ["TrainConfig", "TrainState", "Trainer", "build_model", "open_dataset", "train", "main"]

log = logging.getLogger("vmdm.train")


def build_model(cfg: TrainConfig, feature_dim: int, text_dim: int) -> MotionDenoiser:
    return MotionDenoiser.from_preset(cfg.model, feature_dim=feature_dim, text_dim=text_dim,
                                      max_frames=max(cfg.max_frames, 196), cond_drop=cfg.cond_drop,
                                      skip_steps=cfg.diffusion_steps if cfg.skip else 0)


def open_dataset(cfg: TrainConfig, rank: int, world: int) -> tuple[MotionDataset, str]:
    root = cfg.data
    if root is None:
        from vmdm.data.build.prepare import ensure_default_data

        # Rank 0 builds what is missing; the others wait, then find it complete.
        if rank == 0:
            paths = ensure_default_data(cfg.cache_dir, progress=cfg.progress, quick=cfg.quick_data)
        if world > 1:
            dist.barrier()
        if rank != 0:
            paths = ensure_default_data(cfg.cache_dir, progress=False, quick=cfg.quick_data)
        root = str(paths.dataset_2d)
    # 2D supervision: the dataset is opened in mode "2d", which never loads 3D ground truth.
    ds = MotionDataset(root, "train", mode=cfg.supervision, max_frames=cfg.max_frames, seed=cfg.seed,
                       random_crop=cfg.random_crop)
    return ds.limit_clips(cfg.limit_clips), root


def _to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


@dataclass
class TrainState:
    """What changes from step to step (besides weights and optimiser state)."""

    step: int = 0
    data_pos: tuple[int, int] = (0, 0)  # (epoch, batch) this process started drawing from
    consumed: int = 0  # batches this process has drawn
    bad_total: int = 0  # steps skipped over the whole run (non-finite loss or gradient)
    bad_run: int = 0  # consecutive skipped steps
    resumed_at: int | None = None


class Trainer:
    """One training run: :meth:`setup`, :meth:`restore`, then :meth:`fit` (which calls
    :meth:`step`, :meth:`log` and :meth:`save`); :func:`train` does all of it."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg.resolved()
        self.state = TrainState()

    # ------------------------------------------------------------------ set-up

    def setup(self) -> "Trainer":
        cfg = self.cfg
        self.rank, self.world, self.device = setup_distributed(cfg.device)
        self.main = self.rank == 0
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / "checkpoint.pt"
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed + self.rank)
        np.random.seed(cfg.seed + self.rank)
        self.amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        if cfg.profile:
            enable_nvtx(True)

        self.dataset, self.data_root = open_dataset(cfg, self.rank, self.world)
        self.data_hash = dataset_hash(self.data_root) if self.main else None
        self.skeleton = self.dataset.skeleton
        self.text_encoder = build_text_encoder(cfg.text_encoder, cache_dir=Path(self.data_root).parent / "text_cache"
                                               if cfg.data is None else None, device="cpu")
        self.model = build_model(cfg, self.dataset.feature_dim, self.text_encoder.dim).to(self.device)
        self.diffusion = Diffusion(cfg.diffusion_steps)
        self.objective = Objective(cfg.supervision, cfg.loss, self.skeleton, self.dataset.normalizer,
                                   kernels=cfg.kernels)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
        self.ema = EMA(self.model, cfg.ema_decay)
        self._scale_windows: MotionDataset | None = None
        return self

    def restore(self) -> "Trainer":
        """Continue from ``<out>/checkpoint.pt`` when ``--resume``; then build the data stream
        from the (restored) data position and open the logs."""
        cfg, st = self.cfg, self.state
        if cfg.resume:
            ck = DenoiserCheckpoint.load(self.ckpt_path)
            if ck.config["supervision"] != cfg.supervision:
                raise ValueError(f"--resume: {self.ckpt_path} was trained with supervision "
                                 f"{ck.config['supervision']!r}, not {cfg.supervision!r}")
            self.model.load_state_dict(ck.model)
            self.ema.load(ck.ema, self.model)
            self.opt.load_state_dict(ck.optim)
            self.sched.load_state_dict(ck.sched)
            st.step, st.data_pos, st.bad_total = ck.step, tuple(ck.data_pos), ck.bad_steps_total
            saved = resume_rng(ck.rng, self.rank, self.world)
            if saved is not None:
                set_rng_state(saved, self.device)
            else:
                reseed(cfg.seed, st.step, self.rank)
                if self.main:
                    log.warning("resuming %d saved rank(s) on %d: every rank's random streams are reseeded from "
                                "(seed, step, rank), so the run does not continue bit-for-bit", len(ck.rng),
                                self.world)
            st.resumed_at = st.step
            if self.main:
                log.info("resumed from %s at step %d", self.ckpt_path, st.step)

        net = self.model
        if self.world > 1:
            # The model's buffers (positions, alpha_bar) are constants: no broadcast each forward.
            net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        self.forward = torch.compile(net) if cfg.compile else net

        self.sampler = EpochBatches(len(self.dataset), cfg.batch_size, cfg.seed, self.rank, self.world,
                                    start=st.data_pos)
        # A private generator: creating the loader's iterator must not draw from the global RNG,
        # or a resumed run would start one draw off the uninterrupted one.
        loader = DataLoader(SeededItems(self.dataset, cfg.seed), batch_sampler=self.sampler, collate_fn=collate,
                            num_workers=cfg.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=cfg.workers > 0, generator=torch.Generator().manual_seed(cfg.seed))
        self.batches = iter(loader)
        if self.main:
            save_config(cfg, self.out / "config.json")
        self.metrics = MetricsLog(self.out / "metrics.csv", st.resumed_at,
                                  self.out / "tensorboard" if cfg.tensorboard else None) if self.main else None
        self._window: list[torch.Tensor] = []
        self._t_last, self._steps_since = time.perf_counter(), 0
        return self

    # ------------------------------------------------------------------ one step

    def next_batch(self) -> dict:
        batch = _to_device(next(self.batches), self.device)
        self.state.consumed += 1
        if self.cfg.supervision == "2d" and any(k in batch for k in GT_KEYS):
            raise RuntimeError("2D supervision: the data loader produced 3D ground truth")
        return batch

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimisation step on ``batch``; returns the loss terms (on the device). A step
        with a non-finite loss or gradient is skipped; too many in a row abort the run."""
        cfg, diffusion, device = self.cfg, self.diffusion, self.device
        unroll = cfg.multistep and unrolls(cfg.seed, self.state.step, cfg.multistep_t_star, diffusion.steps)
        with nvtx_range("forward"):
            text = self.text_encoder(batch["text"], device)
            x0, mask = batch["motion"], batch["mask"]
            B = x0.shape[0]
            if cfg.multistep and not unroll:  # t ~ U[t*, T)
                t = torch.randint(cfg.multistep_t_star, diffusion.steps, (B,), device=device)
            else:
                t = diffusion.sample_timesteps(B, device)
            noise = torch.randn_like(x0)
            drop = torch.rand(B, device=device) < cfg.cond_drop

            def predict(x_t, t):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
                    return self.forward(x_t, t, text, mask, drop)

            if unroll:
                steps = unrolled_losses(predict, self.objective, diffusion, batch, noise,
                                        unrolled_timesteps(diffusion, cfg.multistep_t_star, cfg.multistep_steps),
                                        project=cfg.multistep_project)
            else:
                x_t = diffusion.q_sample(x0, t, noise) * mask[..., None]
                pred = predict(x_t, t)
        with nvtx_range("loss"):
            if unroll:
                loss = sum(self._batch_loss(terms, t) for terms, t in steps) / len(steps)
                # Logged terms: the mean over the unrolled steps.
                terms = {k: sum(st[0][k] for st in steps) / len(steps) for k in steps[0][0]}
            else:
                terms = self.objective(pred.float(), batch)
                loss = self._batch_loss(terms, t)
        # One host sync per step: the loss's finiteness (agreed over ranks) is folded into
        # the gradient-norm check, which has to reach the host anyway.
        finite = torch.isfinite(loss.detach()).float()
        if self.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        with nvtx_range("backward"):
            loss.backward()
        with nvtx_range("optim"):
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            ok = bool((torch.isfinite(gnorm) & (finite > 0)).item())
            if ok:
                self.opt.step()
                self.sched.step()
                self.ema.update(self.model)
        self.opt.zero_grad(set_to_none=True)
        self._count(ok)
        return terms

    def _batch_loss(self, terms: dict, t: torch.Tensor) -> torch.Tensor:
        """The scalar loss of one prediction's per-sample terms at timesteps ``t``."""
        if self.cfg.timestep_weight > 0:
            ab = self.diffusion.table("alpha_bar", self.device)[t]
            tw = (1 / (1 - ab)).clamp(max=self.cfg.timestep_weight)
            return timestep_weighted_mean(terms["loss"], tw, self.world)
        return terms["loss"].mean()

    def _count(self, ok: bool) -> None:
        st = self.state
        st.step += 1
        if ok:
            st.bad_run = 0
            return
        st.bad_run += 1
        st.bad_total += 1
        if self.main:
            log.warning("step %d: non-finite loss or gradient, step skipped (%d in a row)", st.step, st.bad_run)
        if st.bad_run >= self.cfg.max_bad_steps:
            raise RuntimeError(
                f"training diverged: {st.bad_run} consecutive steps with a non-finite loss or gradient "
                f"(last at step {st.step}); lower --lr, raise --grad-clip, or check the data. "
                f"The last good checkpoint is {self.ckpt_path}")

    # ------------------------------------------------------------------ logging and saving

    def log(self, terms: dict[str, torch.Tensor]) -> dict | None:
        """Keep the step's loss terms; on a log step, write their means over the steps since the
        last one (averaged over ranks) and return that row. Terms stay on the device until then:
        no per-step copies or collectives."""
        keys = sorted(terms)
        self._window.append(torch.stack([terms[k].detach().float().mean() for k in keys]))
        self._steps_since += 1
        step = self.state.step
        if step % self.cfg.log_every and step != self.cfg.steps:
            return None
        means = torch.stack(self._window)
        if self.world > 1:
            dist.all_reduce(means)
            means = means / self.world
        now = time.perf_counter()
        rate = self._steps_since / max(now - self._t_last, 1e-9)
        self._t_last, self._steps_since = now, 0
        per_term = means.double().cpu().numpy()
        row = {"step": step, **{k: float(np.mean(per_term[:, i])) for i, k in enumerate(keys)},
               "lr": self.opt.param_groups[0]["lr"], "steps_per_s": rate, "bad_steps": self.state.bad_total}
        self._window = []
        if self.main:
            self.metrics.write(row)
        return row

    def body_scale(self, ema_state: dict) -> float | None:
        """vmdm.training.body_scale with the EMA weights (the ones sampling uses); draws from no global RNG."""
        cfg = self.cfg
        if cfg.body_scale_windows <= 0:
            return None
        if self._scale_windows is None:
            self._scale_windows = MotionDataset(self.data_root, "train", mode=cfg.supervision,
                                                max_frames=cfg.max_frames, seed=0,
                                                random_crop=False).limit_clips(cfg.limit_clips)
        probe = copy.deepcopy(self.model)
        probe.load_state_dict(ema_state)
        return measure_body_scale(probe, self.diffusion, self.dataset.normalizer, self.skeleton, self.text_encoder,
                                  self._scale_windows, num_windows=cfg.body_scale_windows)

    def save(self) -> None:
        """Write the checkpoint (rank 0; every rank's random state is gathered into it)."""
        states = [None] * self.world
        local = rng_state(self.device)
        if self.world > 1:
            dist.all_gather_object(states, local)
        else:
            states = [local]
        if not self.main:
            return
        st = self.state
        ema_state = self.ema.state_dict(self.model)
        DenoiserCheckpoint(
            step=st.step, data_pos=self.sampler.position_after(st.consumed), model=self.model.state_dict(),
            ema=ema_state, body_scale=self.body_scale(ema_state), optim=self.opt.state_dict(),
            sched=self.sched.state_dict(), rng=states, bad_steps_total=st.bad_total,
            config=dataclasses.asdict(self.cfg), model_config=self.model.config_dict(),
            normalizer={"mean": np.asarray(self.dataset.normalizer.mean),
                        "std": np.asarray(self.dataset.normalizer.std)},
            skeleton=self.skeleton.name, data_root=self.data_root, data_hash=self.data_hash,
        ).save(self.ckpt_path)
        self.text_encoder.save_cache()

    # ------------------------------------------------------------------ the loop

    def fit(self) -> Path:
        """Train to ``cfg.steps``; returns the checkpoint path."""
        from tqdm import tqdm

        cfg, st = self.cfg, self.state
        bar = tqdm(total=cfg.steps, initial=st.step, desc=f"train {cfg.supervision}",
                   disable=not (self.main and cfg.progress), dynamic_ncols=True)
        start = st.resumed_at or 0
        profiling = False
        self.model.train()
        while st.step < cfg.steps:
            if cfg.profile and not profiling and st.step == start + cfg.profile_warmup:
                profiling = cuda_profiler_start(self.device)
            with nvtx_range("step"):
                with nvtx_range("data"):
                    batch = self.next_batch()
                terms = self.step(batch)
            bar.update(1)
            row = self.log(terms)
            if row is not None:
                bar.set_postfix(loss=f"{row['loss']:.4f}", it_s=f"{row['steps_per_s']:.1f}")
            if st.step % cfg.ckpt_every == 0 or st.step == cfg.steps:
                self.save()
            if profiling and st.step >= start + cfg.profile_warmup + cfg.profile_steps:
                cuda_profiler_stop(self.device)
                profiling = False
        bar.close()
        if self.main:
            self.metrics.close()
        if self.world > 1:
            dist.barrier()
            dist.destroy_process_group()
        return self.ckpt_path


def train(cfg: TrainConfig) -> Path:
    """Run training; returns the checkpoint path."""
    cfg = cfg.resolved()
    if not cfg.deterministic:
        return Trainer(cfg).setup().restore().fit()
    # cuBLAS reads this when its first handle is made; harmless if already set by the user.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return Trainer(cfg).setup().restore().fit()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def main(argv=None) -> int:
    def run(cfg: TrainConfig) -> None:
        if cfg.samples < 0:
            raise ConfigError(f"--samples: expected >= 0, got {cfg.samples}")
        path = train(cfg)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"checkpoint: {path}")
            write_samples(cfg.resolved(), path)

    return run_main(TrainConfig, "python -m vmdm.train", __doc__.split("\n\n")[1].replace("\n", " "), run, argv,
                    recipes=RECIPES, default_recipe="demo")


if __name__ == "__main__":
    sys.exit(main())
