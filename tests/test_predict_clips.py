"""Clips for mmjax.predict: a folder of frames, a .npy array or an animated GIF."""

import os

import numpy as np
import pytest
from PIL import Image

from mmjax.predict.clips import check_clip, clip_frames, read_clip
from mmjax.predict.errors import InputError

COLORS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)


def _clip(frames=4, size=8):
    """Flat-coloured quadrants that change per frame (exact in a GIF's palette)."""
    clip = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        half = size // 2
        clip[t, :half, :half] = COLORS[t % 4]
        clip[t, half:, half:] = COLORS[(t + 1) % 4]
    return clip


def _folder(path, clip):
    os.makedirs(path)
    for t, frame in enumerate(clip):
        Image.fromarray(frame).save(os.path.join(path, f"frame_{t:02d}.png"))
    return str(path)


def _gif(path, clip):
    frames = [Image.fromarray(f) for f in clip]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return str(path)


def test_a_folder_of_frames_reads_in_file_name_order(tmp_path):
    clip = _clip()
    path = _folder(tmp_path / "frames", clip)
    open(os.path.join(path, "notes.txt"), "w").write("not a frame: ignored")
    np.testing.assert_array_equal(read_clip(path, 8, 4), clip)


def test_a_npy_array_reads_as_it_is_and_floats_are_scaled(tmp_path):
    clip = _clip()
    np.save(tmp_path / "clip.npy", clip)
    np.testing.assert_array_equal(read_clip(tmp_path / "clip.npy", 8, 4), clip)
    np.save(tmp_path / "float.npy", clip.astype(np.float32) / 255)
    np.testing.assert_array_equal(read_clip(tmp_path / "float.npy", 8, 4), clip)


def test_an_animated_gif_reads_every_frame(tmp_path):
    clip = _clip()
    np.testing.assert_array_equal(read_clip(_gif(tmp_path / "clip.gif", clip), 8, 4), clip)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda d: _gif(d / "c.gif", _clip(frames=6)),
            r"c.gif' has 6 frames; this model takes clips of 4 frames",
        ),
        (
            lambda d: _folder(d / "f", _clip(size=12)),
            r"has frames of 12x12 pixels; this model takes 8x8 frames",
        ),
        (
            lambda d: (np.save(d / "c.npy", _clip()[..., 0]), d / "c.npy")[1],
            r"shape \[4, 8, 8\]; an RGB clip \[T, H, W, 3\]",
        ),
        (
            lambda d: (np.save(d / "c.npy", _clip() * 2.0), d / "c.npy")[1],
            r"float64; uint8 or float in \[0, 1\]",
        ),
        (
            lambda d: (Image.fromarray(_clip()[0]).save(d / "c.png"), d / "c.png")[1],
            r"c.png' is not a clip",
        ),
        (lambda d: (os.makedirs(d / "empty"), d / "empty")[1], r"holds no PNG or JPEG frames"),
        (lambda d: d / "missing.gif", r"no clip at"),
        (
            lambda d: (open(d / "c.gif", "w").write("x"), d / "c.gif")[1],
            r"cannot read .*c.gif' as a GIF",
        ),
    ],
)
def test_a_bad_clip_is_one_line_naming_it(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError, match=message) as error:
        read_clip(path, 8, 4)
    assert "\n" not in str(error.value)


def test_frames_of_different_sizes_are_named(tmp_path):
    path = _folder(tmp_path / "f", _clip())
    Image.fromarray(_clip(size=6)[0]).save(os.path.join(path, "frame_09.png"))
    with pytest.raises(InputError, match=r"'frame_00.png' is 8x8, 'frame_09.png' is 6x6"):
        read_clip(path, 8, 4)


def test_check_clip_takes_arrays_and_clip_frames_reads_the_model():
    np.testing.assert_array_equal(check_clip(_clip(), 8, 4), _clip())
    config = {"model": {"stem": "vivit", "video": {"tubelet": 2}}}
    params = {"stem": {"posemb": {"temporal_embedding": np.zeros((1, 4, 16))}}}
    assert clip_frames(config, params) == 8
    assert clip_frames({"model": {"stem": "patch"}}, {}) is None
