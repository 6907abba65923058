"""Sample motions from a trained checkpoint, or lift a 2D keypoint clip to 3D.

Text to motion::

    python -m vmdm.sample --checkpoint runs/2d/checkpoint.pt \\
        --text "a person waves with his right hand." --num-samples 3 --length 120 --out samples/

Lifting (the prior with ray-projection guidance, see :mod:`vmdm.inference.lifting`)::

    python -m vmdm.sample --checkpoint runs/2d/checkpoint.pt --lift clip.npz --out lifted/

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
from pathlib import Path

import numpy as np

log = logging.getLogger("vmdm.sample")

FORMATS = ("npy", "features", "mp4", "gif", "bvh")
DEFAULT_FORMATS = "npy,features,mp4,bvh"
DEFAULT_LENGTH = 120  # frames: 6 s at 20 fps


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vmdm.sample", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint file written by vmdm.train (or its folder)")
    p.add_argument("--text", action="append", default=[], help="a prompt; repeat for several")
    p.add_argument("--text-file", help="file with one prompt per line (blank lines and '#' comments skipped)")
    p.add_argument("--num-samples", type=int, default=1, help="samples per prompt (per clip with --lift)")
    p.add_argument("--length", type=int, default=None,
                   help=f"frames per motion at 20 fps (default {DEFAULT_LENGTH}, at most the model's maximum)")
    p.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed and options: same motions)")
    p.add_argument("--sampler", choices=("ddim", "ddpm"), default="ddim")
    p.add_argument("--sample-steps", type=int, default=None,
                   help="DDIM steps (default: all diffusion steps; with --lift 50 for a 2D-supervised "
                        "checkpoint, 10 for the others, as measured)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--formats", default=DEFAULT_FORMATS,
                   help=f"comma-separated outputs among {','.join(FORMATS)} (mp4 falls back to gif without ffmpeg)")
    p.add_argument("--fps", type=float, default=20.0,
                   help="playback rate of the videos and BVH frame time (the motion itself is 20 fps)")
    p.add_argument("--bvh-order", choices=("ZYX", "XYZ"), default="ZYX", help="Euler channel order of the BVH")
    p.add_argument("--video-size", type=int, default=480, help="video width and height in pixels (multiple of 16)")
    p.add_argument("--batch-size", type=int, default=64, help="motions denoised together")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--lift", metavar="KEYPOINTS.npz",
                   help="lift this video clip (.npz, format in docs/data.md) to 3D instead of sampling from text; "
                        "--text is then optional (none: unconditional)")
    p.add_argument("--lift-strength", type=float, default=1.0,
                   help="ray-projection guidance strength in [0, 1] (0: unguided samples)")
    p.add_argument("--lift-smooth", type=float, default=3.0,
                   help="Gaussian over frames (sigma, frames) on the ray corrections and depths; keypoint noise "
                        "otherwise turns into 3D jitter (0: follow every keypoint exactly)")
    p.add_argument("--lift-ramp", type=float, default=None,
                   help="guide the early denoising steps less: pull x (1 - t/T)^RAMP (default: 12 for "
                        "checkpoints trained with --supervision 2d or teacher, 0 for 3d; see docs/sampling.md)")
    p.add_argument("--lift-body-scale", type=float, default=None,
                   help="set depths for a body this much larger than the prior predicts (default: the "
                        "checkpoint's measured value, see vmdm.training.body_scale; 1 when it has none)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    return p


def _read_prompts(args, parser) -> list[str]:
    prompts = [t.strip() for t in args.text]
    if any(not t for t in prompts):
        parser.error("--text: empty prompt")
    if args.text_file:
        path = Path(args.text_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            parser.error(f"--text-file: cannot read {path} ({e.strerror or e})")
        except UnicodeDecodeError:
            parser.error(f"--text-file: {path} is not UTF-8 text")
        from_file = [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")]
        if not from_file:
            parser.error(f"--text-file: {path} has no prompts (one per line expected)")
        prompts += from_file
    return prompts


def _parse_formats(value: str, parser) -> list[str]:
    fmts = [f.strip().lower() for f in value.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        parser.error(f"--formats: unknown format(s) {bad or value!r}; choose from {','.join(FORMATS)}")
    return list(dict.fromkeys(fmts))


def _resolve_checkpoint(value: str, parser) -> Path:
    path = Path(value)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        parser.error(f"--checkpoint: no such file: {path}")
    return path


def _write_outputs(out: Path, name: str, joints: np.ndarray, features: np.ndarray, fmts: list[str], args,
                   title: str, skeleton, progress: bool) -> dict:
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
        path = write_bvh(out / f"{name}.bvh", joints, skeleton, fps=args.fps, order=args.bvh_order)
        files["bvh"] = path.name
        # How far the BVH's rigid skeleton is from the sampled joints (bone-length drift).
        info["bvh_error_m"] = float(bvh_reconstruction_error(read_bvh(path), joints, skeleton).mean())
    for fmt in ("mp4", "gif"):
        if fmt in fmts:
            path = render_motion(out / f"{name}.{fmt}", joints, skeleton, fps=args.fps, title=title,
                                 size=args.video_size, progress=progress)
            files[fmt] = path.name
    return {"files": files, **info}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    ckpt = _resolve_checkpoint(args.checkpoint, parser)
    prompts = _read_prompts(args, parser)
    fmts = _parse_formats(args.formats, parser)
    if args.num_samples < 1:
        parser.error(f"--num-samples: expected >= 1, got {args.num_samples}")
    if args.sample_steps is not None and args.sample_steps < 1:
        parser.error(f"--sample-steps: expected >= 1, got {args.sample_steps}")
    if args.sample_steps is not None and args.sampler == "ddpm":
        parser.error("--sample-steps: only for --sampler ddim (ddpm always takes every step)")
    if not args.fps > 0:
        parser.error(f"--fps: expected a positive rate, got {args.fps}")
    if args.video_size < 64 or args.video_size % 16:
        parser.error(f"--video-size: expected a multiple of 16 of at least 64, got {args.video_size}")
    if args.batch_size < 1:
        parser.error(f"--batch-size: expected >= 1, got {args.batch_size}")
    if args.lift is not None:
        if len(prompts) > 1:
            parser.error("--text: lifting takes at most one prompt")
        if args.length is not None:
            parser.error("--length: not used with --lift (the clip's frame count sets it)")
        if not 0.0 <= args.lift_strength <= 1.0:
            parser.error(f"--lift-strength: expected a value in [0, 1], got {args.lift_strength}")
        if args.lift_smooth < 0:
            parser.error(f"--lift-smooth: expected a value >= 0, got {args.lift_smooth}")
        if args.lift_ramp is not None and args.lift_ramp < 0:
            parser.error(f"--lift-ramp: expected a value >= 0, got {args.lift_ramp}")
        if args.lift_body_scale is not None and not args.lift_body_scale > 0:
            parser.error(f"--lift-body-scale: expected a value > 0, got {args.lift_body_scale}")
    elif not prompts:
        parser.error("--text: give at least one prompt (--text or --text-file), or a clip with --lift")

    from vmdm.export.render import ffmpeg_available

    if "mp4" in fmts and not ffmpeg_available():
        log.warning("no ffmpeg found (pip install imageio-ffmpeg): writing GIF instead of MP4")
        fmts = [f for f in fmts if f != "mp4"] + ([] if "gif" in fmts else ["gif"])

    clip = None
    if args.lift is not None:
        from vmdm.data.formats.video import VideoFormatError, load_video_clip

        try:
            clip = load_video_clip(args.lift)
        except VideoFormatError as e:
            parser.error(f"--lift: {e}")

    import torch  # after argument checks, so bad input fails fast

    from vmdm.inference.loading import load_model

    try:
        lm = load_model(ckpt, device=args.device)
    except (RuntimeError, KeyError, ValueError) as e:
        parser.error(f"--checkpoint: cannot load {ckpt} ({e})")
    max_f = lm.model.cfg.max_frames
    if clip is None:
        length = min(DEFAULT_LENGTH, max_f) if args.length is None else args.length
        if not 1 <= length <= max_f:
            parser.error(f"--length: expected 1..{max_f} frames for this checkpoint, got {length}")
    else:
        length = clip["keypoints"].shape[0]
        if length < 2:
            parser.error(f"--lift: the clip has {length} frame at 20 fps; lifting needs at least 2")
        if length > max_f:
            parser.error(f"--lift: the clip has {length} frames at 20 fps; this checkpoint handles at most {max_f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "checkpoint": str(ckpt), "seed": args.seed, "sampler": args.sampler, "sample_steps": args.sample_steps,
        "guidance": args.guidance, "fps": args.fps, "samples": [],
    }
    t0 = time.perf_counter()
    if clip is None:
        texts = [p for p in prompts for _ in range(args.num_samples)]
        log.info("sampling %d motion(s) of %d frames (%s, %s steps) on %s", len(texts), length, args.sampler,
                 args.sample_steps or lm.diffusion.steps, lm.device)
        gen = lm.generate(texts, length, guidance=args.guidance, sampler=args.sampler,
                          sample_steps=args.sample_steps, seed=args.seed, batch_size=args.batch_size,
                          progress=args.progress)
        joints, feats = gen["joints"].numpy(), gen["features"].numpy()
        extra = [{} for _ in texts]
    else:
        from vmdm.inference.lifting import lift_details

        F = length
        text = prompts[0] if prompts else ""
        texts = [text] * args.num_samples
        log.info("lifting %s (%d frames, %s) with %d sample(s)", args.lift, F,
                 f"text {text!r}" if text else "unconditional", args.num_samples)
        res = lift_details(lm, torch.from_numpy(clip["keypoints"]), torch.from_numpy(clip["scores"]),
                           torch.from_numpy(clip["camera"]), None, text, guidance_strength=args.lift_strength,
                           smooth=args.lift_smooth, ramp=args.lift_ramp, body_scale=args.lift_body_scale,
                           sample_steps=args.sample_steps, seed=args.seed, num_samples=args.num_samples,
                           sampler=args.sampler, text_guidance=args.guidance, progress=args.progress)
        joints, feats = res.joints.numpy(), res.features.numpy()
        fx = float(clip["intrinsics"][0])
        # Errors in normalised image units, and in pixels when the clip gave intrinsics.
        extra = [{"reprojection_error": e, "reprojection_error_px": e * fx if fx != 1.0 else None}
                 for e in res.reprojection_error]
        # The joints come out in the frame the clip loader puts the camera in (the canonical
        # frame of the clip's teacher lift); save that camera so the lifts can be reprojected.
        np.save(out / "lift_camera.npy", clip["camera"].astype(np.float32))
        results["lift"] = {"clip": str(args.lift), "frames": F, "strength": args.lift_strength,
                           "world_frame": "canonical frame of the clip's teacher lift (y up, floor at 0)",
                           "camera": "lift_camera.npy",
                           "pnp_rms": None if np.isnan(clip["pnp_rms"]) else float(clip["pnp_rms"])}
    t_sample = time.perf_counter() - t0
    log.info("sampled %d motion(s) in %.1f s", len(texts), t_sample)
    results["sampling_seconds"] = t_sample

    items = list(enumerate(texts))
    if args.progress:
        from tqdm import tqdm

        items = tqdm(items, desc="writing outputs")
    for i, text in items:
        p, r = divmod(i, args.num_samples)
        name = f"sample{p:02d}_rep{r:02d}"
        title = text if text else "(unconditional lift)"
        rec = _write_outputs(out, name, joints[i, :length], feats[i, :length], fmts, args, title, lm.skeleton,
                             progress=False)
        results["samples"].append({"name": name, "text": text, "length": int(length), **rec, **extra[i]})
    (out / "results.json").write_text(json.dumps(results, indent=2))
    log.info("wrote %d sample(s) to %s in %.1f s total", len(texts), out, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
