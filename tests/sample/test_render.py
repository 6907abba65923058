"""Stick-figure videos: MP4 through imageio-ffmpeg and GIF through Pillow, read back."""

import numpy as np
import pytest

from vmdm.export.render import ffmpeg_available, render_frames, render_motion


@pytest.fixture(scope="module")
def walk():
    from vmdm.data.build.synth import generate_clip

    joints, captions, _ = generate_clip("walk", np.random.default_rng(0))
    return joints[:12], captions[0]


def _read(path):
    """All frames ``[F, H, W, 3]``: GIFs through Pillow (no imageio needed), MP4s through imageio."""
    if str(path).endswith(".gif"):
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    import imageio.v3 as iio

    return iio.imread(path)


@pytest.mark.skipif(not ffmpeg_available(), reason="needs imageio-ffmpeg (pip install imageio-ffmpeg)")
def test_mp4_plays_back_with_every_frame(tmp_path, walk):
    joints, caption = walk
    path = render_motion(tmp_path / "walk.mp4", joints, fps=20, title=caption, size=160)
    frames = _read(path)
    assert frames.shape == (12, 160, 160, 3)
    # The figure moves: first and last frames differ clearly, consecutive ones a little.
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.5
    import imageio.v3 as iio

    assert iio.immeta(path)["fps"] == pytest.approx(20)
    assert not list(tmp_path.glob("*.tmp*"))


def test_gif_plays_back_with_every_frame(tmp_path, walk):
    joints, caption = walk
    path = render_motion(tmp_path / "walk.gif", joints, fps=20, title=caption, size=160)
    frames = _read(path)
    assert frames.shape == (12, 160, 160, 3)
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.5
    from PIL import Image

    with Image.open(path) as im:
        assert im.n_frames == 12
        assert im.info["duration"] == 50  # ms per frame at 20 fps


def test_frames_show_the_figure_where_it_is(walk):
    # A figure standing still draws identical frames; one that moves does not.
    joints, _ = walk
    still = list(render_frames(np.repeat(joints[:1], 3, axis=0), size=128))
    assert all(np.array_equal(still[0][40:], f[40:]) for f in still)  # below the frame counter text
    moving = list(render_frames(joints[[0, -1]], size=128))
    assert not np.array_equal(moving[0][40:], moving[1][40:])


def test_bad_arguments_are_named(tmp_path, walk):
    joints, _ = walk
    with pytest.raises(ValueError, match="path"):
        render_motion(tmp_path / "walk.avi", joints)
    with pytest.raises(ValueError, match="size"):
        render_motion(tmp_path / "walk.mp4", joints, size=100)
    with pytest.raises(ValueError, match="joints"):
        render_motion(tmp_path / "walk.gif", joints[..., :2])
    with pytest.raises(ValueError, match="fps"):
        render_motion(tmp_path / "walk.gif", joints, fps=0)
