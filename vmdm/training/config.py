"""Training configuration: :class:`TrainConfig` with its nested :class:`LossConfig`, and the
named recipes laid over their defaults.

The command line is generated from these dataclasses (:mod:`vmdm.cli`): every field is an
option with its help text, the loss options sit flat on the same command line, and
``--recipe NAME`` lays a recipe over the defaults before the explicit options are read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vmdm.cli import field, from_dict
from vmdm.model.denoiser import PRESETS
from vmdm.model.text import ENCODERS

__all__ = ["RECIPES", "LossConfig", "TrainConfig", "flat_saved_config"]


@dataclass
class LossConfig:
    """The loss terms and their weights (2D terms for --supervision 2d, feature terms for 3d/teacher)."""

    depth_weight: str = field("sample", "2D depth weighting: none, sample (mean depth^p per clip), point "
                                        "(depth^p/f^2 per point)", choices=["none", "sample", "point"])
    depth_power: float | None = field(None, "depth-weight power p (default 1 for sample, 2 for point)")
    lambda_pos: float = field(7.0, "2D reprojection loss weight")
    lambda_vel: float = field(50.0, "2D velocity loss weight")
    lambda_align: float = field(10.0, "representation-alignment loss weight (2d mode; chosen on the val split, "
                                      "see results/README.md)")
    align_smooth: float = field(3.0, "alignment targets: Gaussian sigma in frames over which the ray "
                                     "corrections are smoothed (removes keypoint noise; 0 = per frame; "
                                     "chosen on the val split, see results/README.md)")
    lambda_bone: float = field(0.0, "body-size loss weight (2d mode): relative squared error of each "
                                    "bone's clip-average length against the teacher lift's (0 = off; "
                                    "measured worse at 30 and 100, see results/README.md)")
    align_outlier: float = field(0.05, "alignment targets: drop ray corrections farther than this (metres) "
                                       "from their smoothed value, as detector outliers (0 = keep all)")
    lambda_feature: float = field(1.0, "feature MSE weight (3d/teacher modes)")
    lambda_geo_pos: float = field(0.0, "MDM geometric position loss weight (3d/teacher)")
    lambda_geo_vel: float = field(0.0, "MDM geometric velocity loss weight (3d/teacher), fused kernel")
    lambda_geo_foot: float = field(0.0, "MDM foot-contact loss weight (3d/teacher)")
    z_min: float = field(0.5, "near-plane guard for the 2D losses, metres")
    depth_offset: int = field(0, "2d mode: before the 2D and alignment terms, shift each predicted clip along "
                                 "the camera ray through its frame-0 root to its best 2D fit, solved by this "
                                 "many Gauss-Newton steps without gradient (0 = off, the default: it lowers FID "
                                 "but slows the generated walks about 4x; vmdm.training.depth_offset, "
                                 "results/README.md)")


# Named overlays on the defaults (which are the demo recipe's); explicit options override them.
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
    """Everything a training run depends on; ``config.json`` in the run folder records it."""

    supervision: str = field("2d", "what supervises training: 2d (VideoMDM: 2D keypoints only), 3d (MDM on "
                                   "ground-truth 3D), teacher (MDM on the teacher lifts)", choices=["2d", "3d", "teacher"])
    data: str | None = field(None, "dataset root (2D-only dataset, HumanML3D folder or video folder); default: "
                                   "the built-in dataset, built into the cache if missing")
    cache_dir: str | None = field(None, "cache for the built-in data (default $VMDM_CACHE or ~/.cache/vmdm)")
    quick_data: bool = field(False, "use the small built-in dataset (a few hundred clips) — for tests")
    limit_clips: int | None = field(None, "train on the first N clips only (e.g. to check that a model can overfit)")
    out: str | None = field(None, "output directory for checkpoints, config and logs (default runs/<supervision>)")
    resume: bool = field(False, "continue from <out>/checkpoint.pt (bit-for-bit in the loss curve on CPU; on a "
                                "GPU with --deterministic)")
    model: str = field('tiny', f"denoiser preset: {', '.join(sorted(PRESETS))}")
    text_encoder: str = field("minilm", "sentence encoder: minilm (offline all-MiniLM-L6-v2), clip (needs CLIP "
                                        "installed), bow (hashed words, for tests)", choices=list(ENCODERS))
    diffusion_steps: int = field(50, "diffusion steps (VideoMDM uses 50, MDM 1000)")
    steps: int = field(600, "optimisation steps")
    batch_size: int = field(32, "global batch size (split across processes)")
    lr: float = field(0.0003, "AdamW learning rate")
    weight_decay: float = field(0.0, "AdamW weight decay")
    warmup: int = field(50, "linear learning-rate warm-up steps")
    grad_clip: float = field(1.0, "gradient-norm clipping threshold")
    ema_decay: float = field(0.99, "EMA decay of the weights used for sampling")
    max_frames: int = field(120, "crop length in frames (multiple of 4)")
    random_crop: bool = field(True, "crop a random window of each clip (else its first max_frames frames)")
    cond_drop: float = field(0.1, "classifier-free guidance: probability of dropping the text in training")
    skip: bool = field(False, "precondition the denoiser: x0 = sqrt(ab) x_t + sqrt(1-ab) net(x_t) instead of net(x_t)")
    timestep_weight: float = field(0.0, "weight each sample's loss by min(1/(1-ab_t), this) (0 = uniform): with --skip "
                                        "this keeps the network's correction equally important at every noise level")
    multistep: bool = field(False, "t* multistep training (docs/training.md): with probability t*/T a batch "
                                   "unrolls the model's own DDIM steps below t*, a loss at each; other batches "
                                   "draw t from [t*, T)")
    multistep_t_star: int = field(12, "--multistep: t*, the diffusion step below which batches are unrolled")
    multistep_steps: int = field(3, "--multistep: model steps unrolled below t*")
    multistep_project: bool | None = field(None, "--multistep: ray-project and re-encode each unrolled x0 before "
                                                 "it sets the next input (default: on for --supervision 2d, "
                                                 "which has the keypoints; off otherwise)")
    loss: LossConfig = field(LossConfig, "the training losses")
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
    ckpt_every: int = field(200, "checkpoint period in steps")
    log_every: int = field(10, "logging period in steps")
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

    @classmethod
    def of(cls, recipe: str = "demo", **options) -> "TrainConfig":
        """A config from flat option values (loss options included) laid over ``recipe``."""
        if recipe not in RECIPES:
            raise ValueError(f"recipe: expected one of {sorted(RECIPES)}, got {recipe!r}")
        return from_dict(cls, {**RECIPES[recipe], **options})

    def resolved(self) -> "TrainConfig":
        """The config a run uses: the output folder filled in, the options checked."""
        out = self.out if self.out is not None else f"runs/{self.supervision}"
        if self.max_frames % 4:
            raise ValueError(f"max_frames: expected a multiple of 4, got {self.max_frames}")
        project = self.multistep_project
        if self.multistep:
            if not 1 <= self.multistep_t_star <= self.diffusion_steps:
                raise ValueError(f"multistep_t_star: expected 1..{self.diffusion_steps} (the diffusion steps), "
                                 f"got {self.multistep_t_star}")
            if self.multistep_steps < 1:
                raise ValueError(f"multistep_steps: expected >= 1, got {self.multistep_steps}")
            if project and self.supervision != "2d":
                raise ValueError("multistep_project: needs the keypoints of --supervision 2d "
                                 f"(got --supervision {self.supervision})")
            project = self.supervision == "2d" if project is None else project
        return dataclasses.replace(self, out=out, multistep_project=project)


def flat_saved_config(saved: dict) -> dict:
    """A saved training config (``config.json``, a checkpoint's ``config``) as flat options,
    whether it nests the loss options (this version) or lists them flat (earlier ones)."""
    loss = saved.get("loss") if isinstance(saved.get("loss"), dict) else {}
    return {**loss, **{k: v for k, v in saved.items() if k != "loss"}}
