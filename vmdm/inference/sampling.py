"""Sampling motions from a trained checkpoint, or lifting a 2D keypoint clip to 3D (``python -m vmdm.sample``).

Text to motion::

    python -m vmdm.sample --checkpoint runs/2d/checkpoint.pt \\
        --text "a person waves with his right hand." --num-samples 3 --length 120 --out samples/

Lifting (the prior with ray-projection guidance, see :mod:`vmdm.inference.lifting`)::

    python -m vmdm.sample --checkpoint runs/2d/checkpoint.pt --lift clip.npz [--lift clip2.npz ...] --out lifted/

For every sample the output folder gets (``--formats``, default all but ``gif``):
``<name>_joints.npy`` ``[F, 22, 3]`` (metres, y up), ``<name>_features.npy`` ``[F, 263]``
(denormalised HumanML3D features), ``<name>.mp4`` (or ``.gif`` when no ffmpeg is
available) and ``<name>.bvh``, plus ``results.json`` describing every sample. Names are
``sample<prompt>_rep<repetition>``. See ``docs/sampling.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmdm.cli import REQUIRED, ConfigError, build_parser as build_parser_of, field, from_args
from vmdm.inference.lifting import LiftConfig

log = logging.getLogger("vmdm.sample")

FORMATS = ("npy", "features", "mp4", "gif", "bvh")
DEFAULT_FORMATS = "npy,features,mp4,bvh"
DEFAULT_LENGTH = 120  # frames: 6 s at 20 fps


@dataclass
class SampleConfig:
    """``python -m vmdm.sample``: text-to-motion samples, or lifts of a 2D keypoint clip.

    From Python: ``sample(SampleConfig(checkpoint=..., out=..., text=["a person waves."]))``.
    """

    checkpoint: str = field(REQUIRED, "checkpoint file written by vmdm.train (or its folder)")
    text: list[str] = field([], "a prompt; repeat for several", append=True)
    text_file: str | None = field(None, "file with one prompt per line (blank lines and '#' comments skipped)")
    num_samples: int = field(1, "samples per prompt (per clip with --lift)")
    length: int | None = field(None, f"frames per motion at 20 fps (default {DEFAULT_LENGTH} or the training "
                                     "window if shorter; at most the model's maximum)")
    guidance: float = field(2.5, "classifier-free guidance scale")
    seed: int = field(0, "random seed (same seed and options: same motions)")
    sampler: str = field("ddim", "ddim (deterministic, --sample-steps of them) or ddpm (every diffusion step)",
                         choices=["ddim", "ddpm"])
    sample_steps: int | None = field(None, "DDIM steps (default: all diffusion steps; with --lift 50 for a "
                                           "2D-supervised checkpoint, 10 for the others, as measured)")
    out: str = field(REQUIRED, "output folder")
    formats: str = field(DEFAULT_FORMATS, f"comma-separated outputs among {','.join(FORMATS)} (mp4 falls back to "
                                          "gif without ffmpeg)")
    fps: float = field(20.0, "playback rate of the videos and BVH frame time (the motion itself is 20 fps)")
    bvh_order: str = field("ZYX", "Euler channel order of the BVH", choices=["ZYX", "XYZ"])
    video_size: int = field(480, "video width and height in pixels (multiple of 16)")
    batch_size: int = field(64, "motions denoised together")
    device: str | None = field(None, "torch device (default: cuda if available)")
    lifting: LiftConfig = field(LiftConfig, "lifting a 2D keypoint clip instead of sampling from text")
    progress: bool = field(True, "show progress bars")


def build_parser() -> argparse.ArgumentParser:
    return build_parser_of(SampleConfig, "python -m vmdm.sample", __doc__.split("\n\n")[0])


def _read_prompts(cfg: SampleConfig) -> list[str]:
    texts = [cfg.text] if isinstance(cfg.text, str) else list(cfg.text or [])
    prompts = [t.strip() for t in texts]
    if any(not t for t in prompts):
        raise ConfigError("--text: empty prompt")
    if cfg.text_file:
        path = Path(cfg.text_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ConfigError(f"--text-file: cannot read {path} ({e.strerror or e})") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"--text-file: {path} is not UTF-8 text") from e
        from_file = [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")]
        if not from_file:
            raise ConfigError(f"--text-file: {path} has no prompts (one per line expected)")
        prompts += from_file
    return prompts


def _parse_formats(value: str) -> list[str]:
    fmts = [f.strip().lower() for f in value.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ConfigError(f"--formats: unknown format(s) {bad or value!r}; choose from {','.join(FORMATS)}")
    return list(dict.fromkeys(fmts))


def _resolve_checkpoint(value: str) -> Path:
    path = Path(value)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise ConfigError(f"--checkpoint: no such file: {path}")
    return path


def _write_outputs(out: Path, name: str, joints: np.ndarray, features: np.ndarray, fmts: list[str],
                   cfg: SampleConfig, title: str, skeleton, progress: bool) -> dict:
    from vmdm.export.bvh import bvh_reconstruction_error, read_bvh, write_bvh
    from vmdm.export.render import render_motion

    files = {}
    if "npy" in fmts:
        np.save(out / f"{name}_joints.npy", joints.astype(np.float32))
        files["joints"] = f"{name}_joints.npy"
    if "features" in fmts:
        np.save(out / f"{name}_features.npy", features.astype(np.float32))
        files["features"] = f"{name}_features.npy"
    info = {}
    if "bvh" in fmts:
        path = write_bvh(out / f"{name}.bvh", joints, skeleton, fps=cfg.fps, order=cfg.bvh_order)
        files["bvh"] = path.name
        # How far the BVH's rigid skeleton is from the sampled joints (bone-length drift).
        info["bvh_error_m"] = float(bvh_reconstruction_error(read_bvh(path), joints, skeleton).mean())
    for fmt in ("mp4", "gif"):
        if fmt in fmts:
            path = render_motion(out / f"{name}.{fmt}", joints, skeleton, fps=cfg.fps, title=title,
                                 size=cfg.video_size, progress=progress)
            files[fmt] = path.name
    return {"files": files, **info}


class _LazyTeacher:
    """The teacher lifter for a clip without a lift, loaded only when one needs it."""

    def __init__(self, given: str | None, checkpoint: Path):
        self.given, self.checkpoint, self.path, self._run = given, checkpoint, None, None

    def __call__(self, keypoints, scores):
        if self._run is None:
            from vmdm.inference.teacher_init import clip_teacher, find_teacher_lifter

            try:
                path = Path(self.given) if self.given else find_teacher_lifter(self.checkpoint)
            except (RuntimeError, KeyError, ValueError, OSError) as e:
                raise ConfigError(f"--checkpoint: cannot load {self.checkpoint} ({e})") from e
            if path is None:
                raise ConfigError("--teacher-lifter: the clip has no 'lift' and no teacher lifter was found for "
                                  f"{self.checkpoint} (its 2D data's, or the default cache's); pass one")
            try:
                self._run = clip_teacher(path)
            except (FileNotFoundError, ValueError, RuntimeError) as e:
                raise ConfigError(f"--teacher-lifter: cannot load {path} ({e})") from e
            self.path = path
            log.info("the clip has no lift: lifting its keypoints with the teacher %s", path)
        return self._run(keypoints, scores)


def sample(cfg: SampleConfig) -> dict:
    """Sample (or lift) as ``cfg`` says and write the outputs to ``cfg.out``; returns what
    ``results.json`` holds. Raises :class:`~vmdm.cli.ConfigError` (naming the option) for bad
    input, before anything is written."""
    lc = cfg.lifting
    ckpt = _resolve_checkpoint(cfg.checkpoint)
    prompts = _read_prompts(cfg)
    fmts = _parse_formats(cfg.formats)
    if cfg.num_samples < 1:
        raise ConfigError(f"--num-samples: expected >= 1, got {cfg.num_samples}")
    if cfg.sample_steps is not None and cfg.sample_steps < 1:
        raise ConfigError(f"--sample-steps: expected >= 1, got {cfg.sample_steps}")
    if cfg.sample_steps is not None and cfg.sampler == "ddpm":
        raise ConfigError("--sample-steps: only for --sampler ddim (ddpm always takes every step)")
    if not cfg.fps > 0:
        raise ConfigError(f"--fps: expected a positive rate, got {cfg.fps}")
    if cfg.video_size < 64 or cfg.video_size % 16:
        raise ConfigError(f"--video-size: expected a multiple of 16 of at least 64, got {cfg.video_size}")
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch-size: expected >= 1, got {cfg.batch_size}")
    clip_paths = lc.clips()
    if clip_paths:
        if len(prompts) not in (0, 1, len(clip_paths)):
            raise ConfigError(f"--text: lifting takes no prompt, one for every clip or one per clip "
                              f"({len(clip_paths)}), got {len(prompts)}")
        if cfg.length is not None:
            raise ConfigError("--length: not used with --lift (the clip's frame count sets it)")
        lc.check()
    elif not prompts:
        raise ConfigError("--text: give at least one prompt (--text or --text-file), or a clip with --lift")

    from vmdm.export.render import ffmpeg_available

    if "mp4" in fmts and not ffmpeg_available():
        log.warning("no ffmpeg found (pip install imageio-ffmpeg): writing GIF instead of MP4")
        fmts = [f for f in fmts if f != "mp4"] + ([] if "gif" in fmts else ["gif"])

    clips = []
    if clip_paths:
        from vmdm.data.formats.video import VideoFormatError, load_video_clip

        teacher = _LazyTeacher(lc.teacher_lifter, ckpt)
        for path in clip_paths:
            try:
                clips.append(load_video_clip(path, teacher=teacher))
            except VideoFormatError as e:
                raise ConfigError(f"--lift: {e}") from e

    from vmdm.inference.loading import load_model  # imports torch: after the argument checks, so bad input fails fast

    try:
        lm = load_model(ckpt, device=cfg.device)
    except (RuntimeError, KeyError, ValueError) as e:
        raise ConfigError(f"--checkpoint: cannot load {ckpt} ({e})") from e
    max_f = lm.model.cfg.max_frames
    if not clips:
        length = min(DEFAULT_LENGTH, lm.train_frames) if cfg.length is None else cfg.length
        if not 1 <= length <= max_f:
            raise ConfigError(f"--length: expected 1..{max_f} frames for this checkpoint, got {length}")
        lengths = [length]
    else:
        lengths = [clip["keypoints"].shape[0] for clip in clips]
        for path, n in zip(clip_paths, lengths):
            if n < 2:
                raise ConfigError(f"--lift: {path} has {n} frame at 20 fps; lifting needs at least 2")
            if n > max_f:
                raise ConfigError(f"--lift: {path} has {n} frames at 20 fps; this checkpoint handles at most {max_f}")
    if max(lengths) > lm.train_frames:
        log.warning("%d frames: longer than the %d-frame windows this checkpoint was trained on (positions it never "
                    "saw; see docs/sampling.md)", max(lengths), lm.train_frames)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "checkpoint": str(ckpt), "seed": cfg.seed, "sampler": cfg.sampler, "sample_steps": cfg.sample_steps,
        "guidance": cfg.guidance, "fps": cfg.fps, "samples": [],
    }
    t0 = time.perf_counter()
    if not clips:
        texts = [p for p in prompts for _ in range(cfg.num_samples)]
        log.info("sampling %d motion(s) of %d frames (%s, %s steps) on %s", len(texts), length, cfg.sampler,
                 cfg.sample_steps or lm.diffusion.steps, lm.device)
        gen = lm.generate(texts, length, guidance=cfg.guidance, sampler=cfg.sampler,
                          sample_steps=cfg.sample_steps, seed=cfg.seed, batch_size=cfg.batch_size,
                          progress=cfg.progress)
        joints = [j[:length] for j in gen["joints"].numpy()]
        feats = [f[:length] for f in gen["features"].numpy()]
        extra = [{} for _ in texts]
    else:
        results["lifts"], joints, feats, extra, texts = _lift_all(lm, clips, clip_paths, prompts, cfg, teacher, out)
        if len(clips) == 1:
            results["lift"] = results["lifts"][0]
    t_sample = time.perf_counter() - t0
    log.info("sampled %d motion(s) in %.1f s", len(texts), t_sample)
    results["sampling_seconds"] = t_sample

    items = list(enumerate(texts))
    if cfg.progress:
        from tqdm import tqdm

        items = tqdm(items, desc="writing outputs")
    for i, text in items:
        p, r = divmod(i, cfg.num_samples)
        name = f"sample{p:02d}_rep{r:02d}"
        title = text if text else "(unconditional lift)"
        rec = _write_outputs(out, name, joints[i], feats[i], fmts, cfg, title, lm.skeleton, progress=False)
        results["samples"].append({"name": name, "text": text, "length": len(joints[i]), **rec, **extra[i]})
    (out / "results.json").write_text(json.dumps(results, indent=2))
    log.info("wrote %d sample(s) to %s in %.1f s total", len(texts), out, time.perf_counter() - t0)
    return results


def _lift_all(lm, clips: list[dict], paths: list[str], prompts: list[str], cfg: SampleConfig, teacher: _LazyTeacher,
              out: Path):
    """Lift every clip (:func:`~vmdm.inference.lifting.lift_batch`: clips of one length in
    one batch) and save each clip's camera; returns the per-clip records and, per sample,
    joints, features, reprojection errors and caption (clip-major, ``--num-samples`` each)."""
    import torch

    from vmdm.inference.lifting import lift_batch

    lc = cfg.lifting
    # No prompt: unconditional; one: every clip's caption; otherwise one per clip (checked by sample()).
    captions = prompts if len(prompts) == len(clips) else (prompts or [""]) * len(clips)
    log.info("lifting %d clip(s) (%s frames) with %d sample(s) each", len(clips),
             ", ".join(str(c["keypoints"].shape[0]) for c in clips), cfg.num_samples)
    res = lift_batch(lm, [torch.from_numpy(c["keypoints"]) for c in clips],
                     [torch.from_numpy(c["scores"]) for c in clips], [torch.from_numpy(c["camera"]) for c in clips],
                     None, captions,
                     teachers=[torch.from_numpy(c["teacher_joints"]) for c in clips] if lc.init == "teacher" else None,
                     sample_steps=cfg.sample_steps, seed=cfg.seed, num_samples=cfg.num_samples,
                     batch_size=max(1, cfg.batch_size // cfg.num_samples), sampler=cfg.sampler,
                     text_guidance=cfg.guidance, progress=cfg.progress, **lc.lift_kwargs())
    records, joints, feats, extra, texts = [], [], [], [], []
    for k, (clip, path, r, text) in enumerate(zip(clips, paths, res, captions)):
        # The joints come out in the frame the clip loader puts the camera in (the canonical
        # frame of the clip's teacher lift); save that camera so the lifts can be reprojected.
        camera = "lift_camera.npy" if len(clips) == 1 else f"lift_camera{k:02d}.npy"
        np.save(out / camera, clip["camera"].astype(np.float32))
        fx = float(clip["intrinsics"][0])
        # Errors in normalised image units, and in pixels when the clip gave intrinsics.
        extra += [{"clip": str(path), "reprojection_error": e, "reprojection_error_px": e * fx if fx != 1.0 else None}
                  for e in r.reprojection_error]
        joints += list(r.joints.numpy())
        feats += list(r.features.numpy())
        texts += [text] * cfg.num_samples
        records.append({"clip": str(path), "frames": int(clip["keypoints"].shape[0]), "strength": lc.lift_strength,
                        "init": r.init, "t_star": r.t_star, "teacher": clip["lift_source"],
                        "teacher_lifter": teacher.path and str(teacher.path),
                        "world_frame": "canonical frame of the clip's teacher lift (y up, floor at 0)",
                        "camera": camera, "samples": [f"sample{k:02d}_rep{j:02d}" for j in range(cfg.num_samples)],
                        "pnp_rms": None if np.isnan(clip["pnp_rms"]) else float(clip["pnp_rms"])})
    return records, joints, feats, extra, texts


def main(argv=None) -> int:
    parser = build_parser()
    cfg = from_args(SampleConfig, parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        sample(cfg)
    except ConfigError as e:
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
