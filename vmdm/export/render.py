"""Stick-figure animations of joint-position motions: MP4 (ffmpeg) or GIF (Pillow).

The figure is drawn with matplotlib's 3D axes (Agg backend, no display needed) on a
ground plane at y = 0 with a grid, the root's ground track drawn as it goes, and limbs
coloured by side. Frames are rendered one by one into RGB arrays and handed to
``imageio``'s ffmpeg writer (the ``imageio-ffmpeg`` package ships an ffmpeg binary) for
MP4, or to Pillow for GIF, so no system ffmpeg is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vmdm.motion.skeleton import SMPL22, Skeleton

__all__ = ["ffmpeg_available", "render_frames", "render_motion", "VIDEO_FORMATS"]

VIDEO_FORMATS = ("mp4", "gif")
# Limb colours: right side, left side, centre (spine/head).
_COLORS = {"right": "#d62728", "left": "#1f77b4", "centre": "#333333"}


def ffmpeg_available() -> bool:
    """Whether MP4s can be written: ``imageio`` plus an ffmpeg binary (bundled with
    ``imageio-ffmpeg``, or the one named by ``IMAGEIO_FFMPEG_EXE``)."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except Exception:  # not installed, or no binary for this platform
        return False


def _chain_color(skeleton: Skeleton, chain: tuple[int, ...]) -> str:
    name = skeleton.joint_names[chain[-1]].lower()
    if name.startswith(("right", "r_")):
        return _COLORS["right"]
    if name.startswith(("left", "l_")):
        return _COLORS["left"]
    return _COLORS["centre"]


def _chains(skeleton: Skeleton) -> list[tuple[int, ...]]:
    """Polylines covering every bone: the skeleton's chains, or one line per bone."""
    if skeleton.chains:
        covered = {(p, c) for ch in skeleton.chains for p, c in zip(ch[:-1], ch[1:])}
        extra = [(p, c) for c, p in enumerate(skeleton.parents) if p >= 0 and (p, c) not in covered]
        return list(skeleton.chains) + extra
    return [(p, c) for c, p in enumerate(skeleton.parents) if p >= 0]


def render_frames(joints, skeleton: Skeleton = SMPL22, *, title: str | None = None, size: int = 480,
                  progress: bool = False):
    """Yield one ``[size, size, 3]`` uint8 image per frame of ``joints [F, J, 3]``
    (metres, y up). ``size`` should be a multiple of 16 for MP4 encoders."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    x = np.asarray(joints, dtype=np.float64)
    J = skeleton.num_joints
    if x.ndim != 3 or x.shape[1:] != (J, 3):
        raise ValueError(f"joints: expected [F, {J}, 3] for skeleton {skeleton.name!r}, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("joints: contains NaN or inf")
    # Motion frame (x, y up, z) -> plot axes (x, -z, y): a proper rotation (no mirror
    # image) that puts the motion's up on matplotlib's vertical axis.
    p = np.stack((x[..., 0], -x[..., 2], x[..., 1]), axis=-1)
    lo, hi = p.reshape(-1, 3).min(0), p.reshape(-1, 3).max(0)
    centre = (lo + hi) / 2
    # Fixed limits holding the whole motion (at least 2 m across), so the view never
    # moves; equal data scale on all axes so bones keep their proportions.
    half = max(1.0, float((hi - lo)[:2].max()) / 2 + 0.3)
    floor = min(0.0, float(lo[2]))
    top = max(floor + 2.0, float(hi[2]) + 0.2)
    dpi = 100
    fig = plt.figure(figsize=(size / dpi, size / dpi), dpi=dpi)
    try:
        ax = fig.add_axes((0, 0, 1, 1), projection="3d")
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_zlim(floor, top)
        ax.set_box_aspect((2 * half, 2 * half, top - floor), zoom=1.3)
        ax.view_init(elev=15, azim=-110)
        ax.set_axis_off()
        # Ground plane with a 0.5 m grid.
        gx0, gx1 = centre[0] - half, centre[0] + half
        gy0, gy1 = centre[1] - half, centre[1] + half
        ax.add_collection3d(Poly3DCollection([[(gx0, gy0, floor), (gx1, gy0, floor), (gx1, gy1, floor),
                                               (gx0, gy1, floor)]], facecolor=(0.85, 0.85, 0.85, 0.6)))
        for g in np.arange(np.ceil(gx0 / 0.5) * 0.5, gx1, 0.5):
            ax.plot([g, g], [gy0, gy1], [floor, floor], color="#b0b0b0", lw=0.6)
        for g in np.arange(np.ceil(gy0 / 0.5) * 0.5, gy1, 0.5):
            ax.plot([gx0, gx1], [g, g], [floor, floor], color="#b0b0b0", lw=0.6)
        track, = ax.plot([], [], [], color="#ff7f0e", lw=1.2)
        chains = _chains(skeleton)
        lines = [ax.plot([], [], [], color=_chain_color(skeleton, ch), lw=2.5, solid_capstyle="round")[0]
                 for ch in chains]
        label = fig.text(0.02, 0.97, "", fontsize=8, va="top", family="sans-serif")
        frames = range(x.shape[0])
        if progress:
            from tqdm import tqdm

            frames = tqdm(frames, desc="rendering", leave=False)
        # The view never moves, so the axes and ground are drawn once and each frame only
        # restores that background and draws the moving artists (blitting): ~5x faster.
        animated = [*lines, track, label]
        for a in animated:
            a.set_animated(True)
        fig.canvas.draw()
        background = fig.canvas.copy_from_bbox(fig.bbox)
        renderer = fig.canvas.get_renderer()
        for f in frames:
            for ln, ch in zip(lines, chains):
                pts = p[f, list(ch)]
                ln.set_data_3d(pts[:, 0], pts[:, 1], pts[:, 2])
            track.set_data_3d(p[: f + 1, 0, 0], p[: f + 1, 0, 1], np.full(f + 1, floor))
            label.set_text((f"{title}\n" if title else "") + f"frame {f + 1}/{x.shape[0]}")
            fig.canvas.restore_region(background)
            for a in animated:
                if a is label:
                    a.draw(renderer)
                else:
                    ax.draw_artist(a)
            img = np.asarray(fig.canvas.buffer_rgba())[..., :3]
            yield img.copy()
    finally:
        plt.close(fig)


def _wrap_title(text: str | None, width: int = 60) -> str | None:
    if not text:
        return text
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:3])


def render_motion(path: str | os.PathLike, joints, skeleton: Skeleton = SMPL22, *, fps: float = 20.0,
                  title: str | None = None, size: int = 480, progress: bool = False) -> Path:
    """Render ``joints [F, J, 3]`` to ``path``; the extension picks MP4 (needs ffmpeg, see
    :func:`ffmpeg_available`) or GIF. Returns the path."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in VIDEO_FORMATS:
        raise ValueError(f"path: expected a .mp4 or .gif file, got {path.name!r}")
    if not fps > 0:
        raise ValueError(f"fps: must be positive, got {fps}")
    if fmt == "mp4" and size % 16:
        raise ValueError(f"size: MP4 frames must be a multiple of 16 pixels, got {size}")
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = render_frames(joints, skeleton, title=_wrap_title(title), size=size, progress=progress)
    # Write next to the target and rename, so a crash never leaves a truncated video behind.
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    try:
        if fmt == "mp4":
            import imageio.v2 as imageio

            with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                    pixelformat="yuv420p", quality=7, macro_block_size=16) as w:
                for img in frames:
                    w.append_data(img)
        else:
            from PIL import Image

            frames = list(frames)
            # One palette for the whole animation (from the first and last frames, which
            # between them show every colour: limbs, ground, the full track): quantising each
            # frame against it is ~8x faster than an adaptive palette per frame, and the
            # colours do not flicker.
            pal = Image.fromarray(np.concatenate((frames[0], frames[-1]), axis=0)).quantize(
                colors=64, method=Image.Quantize.MEDIANCUT)
            imgs = [Image.fromarray(f).quantize(palette=pal, dither=Image.Dither.NONE) for f in frames]
            # GIF delays are whole centiseconds; 20 fps -> 5 cs exactly.
            imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:],
                         duration=max(20, int(round(1000.0 / fps))), loop=0, disposal=2)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
