"""Train a motion diffusion model: ``python -m vmdm.train``.

Supervision modes: ``2d`` (VideoMDM, the default), ``3d`` (MDM baseline) and
``teacher`` (MDM trained on the teacher lifts). With no ``--data``, the built-in
corpus, teacher lifter and 2D-only dataset are built into the cache on first use.
Runs on one device or under ``torchrun`` (DistributedDataParallel; NCCL on GPU,
gloo on CPU). See ``python -m vmdm.train --help``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from vmdm.training.body_scale import measure_body_scale
from vmdm.training.checkpoint import FORMAT, atomic_save, load_checkpoint, rng_state, set_rng_state
from vmdm.cli import build_parser, field, from_args, save_config
from vmdm.data.dataset import MotionDataset, collate
from vmdm.data.build.fingerprint import dataset_hash
from vmdm.motion.representation import check_feature_convention, feature_convention_record
from vmdm.motion.skeleton import get_skeleton
from vmdm.model.diffusion import Diffusion
from vmdm.model.denoiser import PRESETS, MotionDenoiser
from vmdm.training.objectives import GT_KEYS, LossConfig, Objective
from vmdm.training.profiling import cuda_profiler_start, cuda_profiler_stop, enable_nvtx, nvtx_range
from vmdm.model.text import ENCODERS, build_text_encoder

log = logging.getLogger("vmdm.train")

# Named training recipes; explicit command-line options override them.
RECIPES = {
    # Finishes in a few minutes on a 2-core CPU with a clear drop in loss.
    "demo": dict(model="tiny", steps=600, batch_size=32, lr=3e-4, warmup=50, max_frames=120, ema_decay=0.99,
                 ckpt_every=200, log_every=10),
    # The paper's setting (MDM defaults, 50 diffusion steps); for a GPU.
    "paper": dict(model="base", steps=200_000, batch_size=64, lr=1e-4, warmup=1000, max_frames=196,
                  ema_decay=0.9999, ckpt_every=5000, log_every=100),
}


@dataclass
class TrainConfig:
    supervision: str = field("2d", "what supervises training: 2d (VideoMDM: 2D keypoints only), 3d (MDM on "
                                   "ground-truth 3D), teacher (MDM on the teacher lifts)", choices=["2d", "3d", "teacher"])
    recipe: str = field("demo", "named defaults for the options below left unset: demo (2-core CPU, minutes) or "
                                "paper (GPU, MDM sizes)", choices=sorted(RECIPES))
    data: str | None = field(None, "dataset root (2D-only dataset, HumanML3D folder or video folder); default: "
                                   "the built-in dataset, built into the cache if missing")
    cache_dir: str | None = field(None, "cache for the built-in data (default $VMDM_CACHE or ~/.cache/vmdm)")
    quick_data: bool = field(False, "use the small built-in dataset (a few hundred clips) — for tests")
    limit_clips: int | None = field(None, "train on the first N clips only (e.g. to check that a model can overfit)")
    out: str | None = field(None, "output directory for checkpoints, config and logs (default runs/<supervision>)")
    resume: bool = field(False, "continue from <out>/checkpoint.pt (bit-for-bit in the loss curve on CPU; on a "
                                "GPU with --deterministic)")
    model: str | None = field(None, f"denoiser preset: {', '.join(sorted(PRESETS))}")
    text_encoder: str = field("minilm", "sentence encoder: minilm (offline all-MiniLM-L6-v2), clip (needs CLIP "
                                        "installed), bow (hashed words, for tests)", choices=list(ENCODERS))
    diffusion_steps: int = field(50, "diffusion steps (VideoMDM uses 50, MDM 1000)")
    steps: int | None = field(None, "optimisation steps")
    batch_size: int | None = field(None, "global batch size (split across processes)")
    lr: float | None = field(None, "AdamW learning rate")
    weight_decay: float = field(0.0, "AdamW weight decay")
    warmup: int | None = field(None, "linear learning-rate warm-up steps")
    grad_clip: float = field(1.0, "gradient-norm clipping threshold")
    ema_decay: float | None = field(None, "EMA decay of the weights used for sampling")
    max_frames: int | None = field(None, "crop length in frames (multiple of 4)")
    random_crop: bool = field(True, "crop a random window of each clip (else its first max_frames frames)")
    cond_drop: float = field(0.1, "classifier-free guidance: probability of dropping the text in training")
    skip: bool = field(False, "precondition the denoiser: x0 = sqrt(ab) x_t + sqrt(1-ab) net(x_t) instead of net(x_t)")
    timestep_weight: float = field(0.0, "weight each sample's loss by min(1/(1-ab_t), this) (0 = uniform): with --skip "
                                        "this keeps the network's correction equally important at every noise level")
    # Losses
    depth_weight: str = field("sample", "2D depth weighting: none, sample (mean depth^p per clip), point "
                                        "(depth^p/f^2 per point)", choices=["none", "sample", "point"])
    depth_power: float | None = field(None, "depth-weight power p (default 1 for sample, 2 for point)")
    lambda_pos: float = field(7.0, "2D reprojection loss weight")
    lambda_vel: float = field(50.0, "2D velocity loss weight")
    lambda_align: float = field(10.0, "representation-alignment loss weight (2d mode; chosen on the val split, "
                                      "results/lambda_align_2400_2026-11-27)")
    align_smooth: float = field(3.0, "alignment targets: Gaussian sigma in frames over which the ray "
                                     "corrections are smoothed (removes keypoint noise; 0 = per frame; "
                                     "chosen on the val split, results/align_smoothing_2026-11-28)")
    lambda_bone: float = field(0.0, "body-size loss weight (2d mode): relative squared error of each "
                                    "bone's clip-average length against the teacher lift's (0 = off; "
                                    "measured worse at 30 and 100, results/body_size_2026-11-30)")
    align_outlier: float = field(0.05, "alignment targets: drop ray corrections farther than this (metres) "
                                       "from their smoothed value, as detector outliers (0 = keep all)")
    lambda_feature: float = field(1.0, "feature MSE weight (3d/teacher modes)")
    lambda_geo_pos: float = field(0.0, "MDM geometric position loss weight (3d/teacher)")
    lambda_geo_vel: float = field(0.0, "MDM geometric velocity loss weight (3d/teacher), fused kernel")
    lambda_geo_foot: float = field(0.0, "MDM foot-contact loss weight (3d/teacher)")
    z_min: float = field(0.5, "near-plane guard for the 2D losses, metres")
    # Execution
    kernels: str = field("fused", "loss kernels: fused (compiled backends) or reference (pure PyTorch)",
                         choices=["fused", "reference"])
    compile: bool = field(False, "torch.compile the denoiser")
    deterministic: bool = field(False, "deterministic GPU kernels (torch.use_deterministic_algorithms, fixed "
                                       "Triton tiles): two runs, or a run and its resumption, agree bit for bit "
                                       "on a GPU too, at some cost in speed (CPU training is deterministic anyway)")
    amp: bool | None = field(None, "bf16 autocast (default: on for CUDA)")
    device: str | None = field(None, "device (default: cuda if available)")
    workers: int = field(0, "DataLoader worker processes")
    seed: int = field(0, "random seed")
    ckpt_every: int | None = field(None, "checkpoint period in steps")
    log_every: int | None = field(None, "logging period in steps")
    tensorboard: bool = field(False, "also log to TensorBoard (needs the tensorboard package)")
    max_bad_steps: int = field(10, "abort after this many consecutive steps with a non-finite loss or gradient")
    profile: bool = field(False, "emit NVTX ranges and start the CUDA profiler after warm-up (for nsys "
                                 "--capture-range=cudaProfilerApi); no-op on CPU")
    profile_warmup: int = field(20, "steps before the profiler starts")
    profile_steps: int = field(20, "steps captured by the profiler")
    progress: bool = field(True, "show progress bars")
    samples: int = field(3, "when python -m vmdm.train ends: sample this many distinct captions of the val "
                            "split that no train-split clip has, and write their videos (MP4, GIF without "
                            "ffmpeg) and joints to <out>/samples/ (0 = off; rank 0 only; a failure only warns)")
    body_scale_windows: int = field(256, "training windows on which each checkpoint measures how much the "
                                         "denoiser shrinks the bodies it is given (read by the lifter, "
                                         "vmdm.training.body_scale; 0 = skip)")

    def resolved(self) -> "TrainConfig":
        """Fill options left unset from the recipe."""
        recipe = RECIPES[self.recipe]
        values = {k: (recipe[k] if getattr(self, k) is None and k in recipe else getattr(self, k))
                  for k in (f.name for f in dataclasses.fields(self))}
        if values["out"] is None:
            values["out"] = f"runs/{self.supervision}"
        if values["max_frames"] % 4:
            raise ValueError(f"max_frames: expected a multiple of 4, got {values['max_frames']}")
        return TrainConfig(**values)

    def loss_config(self) -> LossConfig:
        return LossConfig(lambda_feature=self.lambda_feature, lambda_geo_pos=self.lambda_geo_pos,
                          lambda_geo_vel=self.lambda_geo_vel, lambda_geo_foot=self.lambda_geo_foot,
                          lambda_pos=self.lambda_pos, lambda_vel=self.lambda_vel, lambda_align=self.lambda_align,
                          lambda_bone=self.lambda_bone, align_smooth=self.align_smooth,
                          align_outlier=self.align_outlier,
                          depth_weight=self.depth_weight, depth_power=self.depth_power, z_min=self.z_min)


# --------------------------------------------------------------------------- data order


class SeededItems(Dataset):
    """Items keyed by ``(epoch, index)``: crop windows and caption choices come from a
    generator seeded by the key, so the data stream is identical however it is resumed
    or split across DataLoader workers."""

    def __init__(self, dataset: MotionDataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, idx = key
        self.dataset.rng = np.random.default_rng([self.seed, epoch, idx])
        return self.dataset[idx]


class EpochBatches:
    """Infinite batches of ``(epoch, index)`` keys: a seeded permutation per epoch, cut into
    global batches, each rank taking its slice (the global batch is preserved)."""

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1,
                 start: tuple[int, int] = (0, 0)):
        if global_batch % world:
            raise ValueError(f"batch_size {global_batch} is not divisible by the {world} processes")
        if n < global_batch:
            raise ValueError(f"dataset has {n} clips, fewer than one global batch of {global_batch}")
        self.n, self.gb, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.per_rank = global_batch // world
        self.batches_per_epoch = n // global_batch
        self.start = start

    def __iter__(self):
        epoch, b = self.start
        while True:
            perm = np.random.default_rng([self.seed, 1_000_003, epoch]).permutation(self.n)
            for k in range(b, self.batches_per_epoch):
                glob = perm[k * self.gb:(k + 1) * self.gb]
                mine = glob[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
                yield [(epoch, int(i)) for i in mine]
            epoch, b = epoch + 1, 0

    def position_after(self, consumed: int) -> tuple[int, int]:
        """Data position after ``consumed`` batches from the start position."""
        total = self.start[0] * self.batches_per_epoch + self.start[1] + consumed
        return divmod(total, self.batches_per_epoch)


# --------------------------------------------------------------------------- helpers


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.params = [p.detach().clone().float() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        torch._foreach_lerp_(self.params, [p.detach().float() for p in model.parameters()], 1 - self.decay)

    def state_dict(self, model: torch.nn.Module) -> dict:
        names = [n for n, _ in model.named_parameters()]
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        for n, p in zip(names, self.params):
            sd[n] = p.to(sd[n].dtype).clone()
        return sd

    def load(self, sd: dict, model: torch.nn.Module) -> None:
        for p, (n, _) in zip(self.params, model.named_parameters()):
            p.copy_(sd[n])


def resolve_device(device_arg: str | None, world: int, local_rank: int, cuda_available: bool) -> torch.device:
    """The training device: ``cuda:LOCAL_RANK`` under torchrun, else what ``--device`` says.

    Under torchrun each rank owns one GPU, so ``--device cuda`` means the rank's own GPU and
    an explicit other index (which would put several ranks on one GPU) is refused.
    """
    if device_arg is None:
        return torch.device(f"cuda:{local_rank}" if cuda_available else "cpu")
    device = torch.device(device_arg)
    if device.type != "cuda":
        return device
    if world > 1:
        if device.index is not None and device.index != local_rank:
            raise ValueError(f"--device: expected 'cuda' or 'cuda:{local_rank}' under torchrun (LOCAL_RANK "
                             f"{local_rank}; one GPU per rank), got {device_arg!r}")
        return torch.device(f"cuda:{local_rank}")
    return device if device.index is not None else torch.device("cuda:0")


def _setup_distributed(device_arg: str | None):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_arg, world, local, torch.cuda.is_available())
    if device.type == "cuda":
        # Kernels launched on the current device (Triton's, cuBLAS handles) must run on this one.
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def timestep_weighted_mean(losses: torch.Tensor, weights: torch.Tensor, world: int) -> torch.Tensor:
    """sum(w * loss) / sum(w) over the global batch.

    DDP averages the ranks' gradients, so with several ranks each one's weighted sum is
    divided by the global weight sum and scaled by the rank count; dividing by its own sum
    would make the gradient depend on how the batch is split.
    """
    den = weights.sum().detach()
    if world > 1:
        den = den.clone()
        dist.all_reduce(den)
        return (losses * weights).sum() * world / den
    return (losses * weights).sum() / den


def resume_rng(saved: list, rank: int, world: int) -> dict | None:
    """The random state rank ``rank`` resumes with, or None when it must be reseeded.

    With as many ranks as were saved each rank continues its own streams; with another
    count, handing saved streams round would give two ranks the same noise, so every rank
    is reseeded from (seed, step, rank) instead.
    """
    if len(saved) == world:
        return saved[rank]
    return None


def _reseed(seed: int, step: int, rank: int) -> None:
    value = (seed * 1_000_003 + step) * 4_099 + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def _to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class MetricsLog:
    """CSV of every logged step (rank 0); on resume, rows past the checkpoint are dropped so
    the file reads as one uninterrupted run."""

    def __init__(self, path: Path, resume_step: int | None, tensorboard_dir: Path | None):
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            if rows:
                self.fields = list(rows[0].keys())
                self._rewrite(rows)
            else:
                path.unlink()
        elif path.exists():
            path.unlink()
        self.tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("--tensorboard needs the tensorboard package (pip install tensorboard)") from e
            self.tb = SummaryWriter(str(tensorboard_dir))

    def _rewrite(self, rows):
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(rows)
        tmp.replace(self.path)

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        if self.fields is None:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self):
        if self.tb is not None:
            self.tb.close()


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


# --------------------------------------------------------------------------- training


def train(cfg: TrainConfig) -> Path:
    """Run training; returns the checkpoint path."""
    cfg = cfg.resolved()
    if not cfg.deterministic:
        return _train(cfg)
    # cuBLAS reads this when its first handle is made; harmless if already set by the user.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(cfg)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _train(cfg: TrainConfig) -> Path:
    rank, world, device = _setup_distributed(cfg.device)
    main = rank == 0
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    if main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    if cfg.profile:
        enable_nvtx(True)

    dataset, data_root = open_dataset(cfg, rank, world)
    data_hash = dataset_hash(data_root) if rank == 0 else None
    skeleton = dataset.skeleton
    text_encoder = build_text_encoder(cfg.text_encoder, cache_dir=Path(data_root).parent / "text_cache"
                                      if cfg.data is None else None, device="cpu")
    model = build_model(cfg, dataset.feature_dim, text_encoder.dim).to(device)
    diffusion = Diffusion(cfg.diffusion_steps)
    objective = Objective(cfg.supervision, cfg.loss_config(), skeleton, dataset.normalizer, kernels=cfg.kernels)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup)))
    ema = EMA(model, cfg.ema_decay)

    step, data_pos, bad_total = 0, (0, 0), 0
    resumed = None
    if cfg.resume:
        ck = load_checkpoint(ckpt_path)
        check_feature_convention(ck, ckpt_path)
        if ck["config"]["supervision"] != cfg.supervision:
            raise ValueError(f"--resume: {ckpt_path} was trained with supervision "
                             f"{ck['config']['supervision']!r}, not {cfg.supervision!r}")
        model.load_state_dict(ck["model"])
        ema.load(ck["ema"], model)
        opt.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        step, data_pos, bad_total = ck["step"], tuple(ck["data_pos"]), ck.get("bad_steps_total", 0)
        saved = resume_rng(ck["rng"], rank, world)
        if saved is not None:
            set_rng_state(saved, device)
        else:
            _reseed(cfg.seed, step, rank)
            if main:
                log.warning("resuming %d saved rank(s) on %d: every rank's random streams are reseeded from "
                            "(seed, step, rank), so the run does not continue bit-for-bit", len(ck["rng"]), world)
        resumed = step
        if main:
            log.info("resumed from %s at step %d", ckpt_path, step)

    net = model
    if world > 1:
        # The model's buffers (positions, alpha_bar) are constants: no broadcast each forward.
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None, broadcast_buffers=False)
    forward = torch.compile(net) if cfg.compile else net

    sampler = EpochBatches(len(dataset), cfg.batch_size, cfg.seed, rank, world, start=data_pos)
    # A private generator: creating the loader's iterator must not draw from the global RNG,
    # or a resumed run would start one draw off the uninterrupted one.
    loader = DataLoader(SeededItems(dataset, cfg.seed), batch_sampler=sampler, collate_fn=collate,
                        num_workers=cfg.workers, pin_memory=device.type == "cuda",
                        persistent_workers=cfg.workers > 0, generator=torch.Generator().manual_seed(cfg.seed))
    batches = iter(loader)

    if main:
        save_config(cfg, out / "config.json")
    metrics = MetricsLog(out / "metrics.csv", resumed, out / "tensorboard" if cfg.tensorboard else None) \
        if main else None

    scale_windows: MotionDataset | None = None

    def body_scale(ema_state: dict) -> float | None:
        """vmdm.training.body_scale with the EMA weights (the ones sampling uses); draws from no global RNG."""
        nonlocal scale_windows
        if cfg.body_scale_windows <= 0:
            return None
        if scale_windows is None:
            scale_windows = MotionDataset(data_root, "train", mode=cfg.supervision, max_frames=cfg.max_frames,
                                          seed=0, random_crop=False).limit_clips(cfg.limit_clips)
        probe = copy.deepcopy(model)
        probe.load_state_dict(ema_state)
        return measure_body_scale(probe, diffusion, dataset.normalizer, skeleton, text_encoder, scale_windows,
                                  num_windows=cfg.body_scale_windows)

    def save(step_now: int, consumed: int):
        states = [None] * world
        local = rng_state(device)
        if world > 1:
            dist.all_gather_object(states, local)
        else:
            states = [local]
        if not main:
            return
        ema_state = ema.state_dict(model)
        atomic_save({
            "format": FORMAT,
            **feature_convention_record(),
            "step": step_now,
            "data_pos": sampler.position_after(consumed),
            "model": model.state_dict(),
            "ema": ema_state,
            "body_scale": body_scale(ema_state),
            "optim": opt.state_dict(),
            "sched": sched.state_dict(),
            "rng": states,
            "bad_steps_total": bad_total,
            "config": dataclasses.asdict(cfg),
            "model_config": model.config_dict(),
            "normalizer": {"mean": np.asarray(dataset.normalizer.mean), "std": np.asarray(dataset.normalizer.std)},
            "skeleton": skeleton.name,
            "data_root": data_root,
            "data_hash": data_hash,
        }, ckpt_path)
        text_encoder.save_cache()

    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.supervision}", disable=not (main and cfg.progress),
               dynamic_ncols=True)
    consumed, bad_run = 0, 0
    window: list[torch.Tensor] = []
    t_last, steps_since = time.perf_counter(), 0
    profiling = False
    model.train()
    while step < cfg.steps:
        if cfg.profile and not profiling and step == (resumed or 0) + cfg.profile_warmup:
            profiling = cuda_profiler_start(device)
        with nvtx_range("step"):
            with nvtx_range("data"):
                batch = _to_device(next(batches), device)
                consumed += 1
                if cfg.supervision == "2d" and any(k in batch for k in GT_KEYS):
                    raise RuntimeError("2D supervision: the data loader produced 3D ground truth")
                text = text_encoder(batch["text"], device)
                x0, mask = batch["motion"], batch["mask"]
                B = x0.shape[0]
            with nvtx_range("forward"):
                t = diffusion.sample_timesteps(B, device)
                noise = torch.randn_like(x0)
                x_t = diffusion.q_sample(x0, t, noise) * mask[..., None]
                drop = torch.rand(B, device=device) < cfg.cond_drop
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    pred = forward(x_t, t, text, mask, drop)
            with nvtx_range("loss"):
                terms = objective(pred.float(), batch)
                if cfg.timestep_weight > 0:
                    ab = diffusion.table("alpha_bar", device)[t]
                    tw = (1 / (1 - ab)).clamp(max=cfg.timestep_weight)
                    loss = timestep_weighted_mean(terms["loss"], tw, world)
                else:
                    loss = terms["loss"].mean()
            # One host sync per step: the loss's finiteness (agreed over ranks) is folded into
            # the gradient-norm check, which has to reach the host anyway.
            finite = torch.isfinite(loss.detach()).float()
            if world > 1:
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            with nvtx_range("backward"):
                loss.backward()
            with nvtx_range("optim"):
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                ok = bool((torch.isfinite(gnorm) & (finite > 0)).item())
                if ok:
                    opt.step()
                    sched.step()
                    ema.update(model)
            opt.zero_grad(set_to_none=True)
        step += 1
        if ok:
            bad_run = 0
        else:
            bad_run += 1
            bad_total += 1
            if main:
                log.warning("step %d: non-finite loss or gradient, step skipped (%d in a row)", step, bad_run)
            if bad_run >= cfg.max_bad_steps:
                raise RuntimeError(
                    f"training diverged: {bad_run} consecutive steps with a non-finite loss or gradient "
                    f"(last at step {step}); lower --lr, raise --grad-clip, or check the data. "
                    f"The last good checkpoint is {ckpt_path}")
        # Loss terms stay on the device until a log step (no per-step copies or collectives).
        keys = sorted(terms)
        window.append(torch.stack([terms[k].detach().float().mean() for k in keys]))
        steps_since += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            means = torch.stack(window)
            if world > 1:
                dist.all_reduce(means)
                means = means / world
            now = time.perf_counter()
            rate = steps_since / max(now - t_last, 1e-9)
            t_last, steps_since = now, 0
            per_term = means.double().cpu().numpy()
            row = {"step": step, **{k: float(np.mean(per_term[:, i])) for i, k in enumerate(keys)},
                   "lr": opt.param_groups[0]["lr"], "steps_per_s": rate, "bad_steps": bad_total}
            window = []
            if main:
                metrics.write(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", it_s=f"{rate:.1f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save(step, consumed)
        if profiling and step >= (resumed or 0) + cfg.profile_warmup + cfg.profile_steps:
            cuda_profiler_stop(device)
            profiling = False
    bar.close()
    if main:
        metrics.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return ckpt_path


# --------------------------------------------------------------------------- samples at the end


def _caption_key(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def heldout_captions(data_root: str | os.PathLike, n: int, seed: int = 0, mode: str = "2d") -> list[str]:
    """``n`` distinct captions of the val split of ``data_root`` that no train-split clip has
    (compared case- and punctuation-insensitively), picked with a generator seeded by ``seed``
    from the sorted candidates: the same data and seed give the same captions."""
    if n < 1:
        return []
    val = MotionDataset(str(data_root), "val", mode=mode, max_frames=10**9, unit_length=1, random_crop=False, seed=0)
    trn = MotionDataset(str(data_root), "train", mode=mode, max_frames=10**9, unit_length=1, random_crop=False,
                        seed=0)
    seen = {_caption_key(c) for i in trn.ids for c in trn.captions(i)}
    cands: dict[str, str] = {}
    for i in val.ids:
        for c in val.captions(i):
            if _caption_key(c) not in seen:
                cands.setdefault(_caption_key(c), c.strip())
    pool = [cands[k] for k in sorted(cands)]
    if not pool:
        raise ValueError(f"{data_root}: the val split has no caption that the train split lacks")
    pick = np.random.default_rng([seed, 0x5A3B1E]).choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[int(i)] for i in pick]


def sample_command(ckpt: str | os.PathLike, captions: list[str], out: str | os.PathLike, num_samples: int = 3,
                   seed: int = 1) -> str:
    """The ``python -m vmdm.sample`` command line (shell-quoted) that samples more of ``captions``."""
    import shlex

    args = ["python", "-m", "vmdm.sample", "--checkpoint", str(ckpt)]
    for c in captions:
        args += ["--text", c]
    args += ["--num-samples", str(num_samples), "--seed", str(seed), "--out", str(out)]
    return " ".join(shlex.quote(a) for a in args)


def write_samples(cfg: TrainConfig, ckpt_path: str | os.PathLike) -> Path | None:
    """Sample ``cfg.samples`` held-out captions with the checkpoint and write them to
    ``<checkpoint folder>/samples/`` through ``vmdm.sample`` (videos, joints, results.json);
    prints where they are and the command that samples more. Never raises: a failure is
    logged as a warning (the checkpoint is already on disk) and None is returned."""
    if cfg.samples <= 0:
        return None
    ckpt_path = Path(ckpt_path)
    out = ckpt_path.parent / "samples"
    try:
        from vmdm.training.checkpoint import load_checkpoint as _load
        from vmdm.sample import main as sample_main

        data_root = cfg.data or _load(ckpt_path).get("data_root")
        captions = heldout_captions(data_root, cfg.samples, cfg.seed, cfg.supervision)
        argv = ["--checkpoint", str(ckpt_path), "--num-samples", "1", "--seed", str(cfg.seed), "--out", str(out),
                "--formats", "mp4,npy"]
        for c in captions:
            argv += ["--text", c]
        if cfg.device is not None:
            argv += ["--device", cfg.device]
        if not cfg.progress:
            argv.append("--no-progress")
        try:
            rc = sample_main(argv)
        except SystemExit as e:  # argparse errors of vmdm.sample
            rc = e.code
        if rc not in (0, None):
            raise RuntimeError(f"vmdm.sample exited with status {rc}")
        results = json.loads((out / "results.json").read_text())
        videos = [(out / f, s["text"]) for s in results["samples"] for k, f in s["files"].items()
                  if k in ("mp4", "gif")]
        if len(videos) != len(captions):
            raise RuntimeError(f"vmdm.sample wrote {len(videos)} video(s) for {len(captions)} caption(s)")
    except Exception as e:  # noqa: BLE001 - rendering must never fail a finished training run
        log.warning("could not write the end-of-training samples to %s (%s: %s); the checkpoint %s is intact",
                    out, type(e).__name__, e, ckpt_path)
        return None
    print(f"samples of {len(captions)} caption(s) the model was not trained on (val split):")
    for f, c in videos:
        print(f"  {f}  {c!r}")
    print("sample more with:")
    print("  " + sample_command(ckpt_path, captions, ckpt_path.parent / "more_samples"))
    return out


def main(argv=None) -> int:
    parser = build_parser(TrainConfig, "python -m vmdm.train", __doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = from_args(TrainConfig, args)
    if cfg.samples < 0:
        parser.error(f"--samples: expected >= 0, got {cfg.samples}")
    path = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoint: {path}")
        write_samples(cfg.resolved(), path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
