"""Clips in: a folder of frames, a .npy array or an animated GIF to uint8 [T, S, S, 3].

A video run (`stem="vivit"`) takes clips of the frame count and frame size it was trained on:
T from the model's temporal position table (T' rows) times its tubelet length, S from
config.data.image_size. Like images (`mmjax.predict.images`), frames are never resized or
resampled in time: a wrong frame count or size is one `InputError` line naming both.
"""

from __future__ import annotations

import os

import numpy as np

from mmjax.predict.errors import InputError
from mmjax.predict.images import check_image, read_image

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


def clip_frames(config, params) -> int | None:
    """The frame count T a run's model takes, or None for an image model.

    T = (rows of the "vivit" stem's `temporal_embedding`) x (its tubelet length).
    The "kept_tubelets" stem: the rows of its `temporal_embedding`; the "single_frame" and
    "frame_mean" baselines: the clips they were trained on (config.data.num_frames).
    """
    model = config.get("model", {})
    if model.get("stem") == "kept_tubelets":  # one row of its temporal table a frame
        return int(params["stem"]["temporal_embedding"].shape[0])
    if model.get("stem") in ("single_frame", "frame_mean"):  # any length; the trained one
        return int(config.data.num_frames)
    if model.get("stem") != "vivit":
        return None
    table = params["stem"]["posemb"]["temporal_embedding"]
    return int(table.shape[1]) * int((model.get("video") or {}).get("tubelet", 2))


def read_clip(path: str | os.PathLike, size: int, frames: int) -> np.ndarray:
    """The clip at `path` as uint8 [frames, size, size, 3] (see the module docstring).

    `path` is a folder of PNG or JPEG frames (in file-name order), a .npy array [T, H, W, 3]
    (uint8, or float in [0, 1]) or an animated GIF (every frame, converted to RGB). Raises
    InputError naming the path for anything else, an unreadable file, or a clip whose frame
    count or frame size differs from the model's.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(FRAME_SUFFIXES))
        if not names:
            raise InputError(f"the folder {path!r} holds no PNG or JPEG frames")
        clip = np.stack([read_image(os.path.join(path, n)) for n in _same_size(path, names)])
    elif not os.path.isfile(path):
        raise InputError(f"no clip at {path!r} (a folder of frames, a .npy file or a GIF)")
    elif path.lower().endswith(".npy"):
        try:
            clip = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise InputError(f"cannot read {path!r} as a .npy array ({error})") from None
    elif path.lower().endswith(".gif"):
        clip = _read_gif(path)
    else:
        raise InputError(
            f"{path!r} is not a clip: give a folder of PNG or JPEG frames, a .npy array "
            "[T, H, W, 3] or an animated GIF"
        )
    return check_clip(clip, size, frames, what=repr(path))


def _same_size(path: str, names: list[str]) -> list[str]:
    """`names`, after checking that every frame file in `path` has the first one's size."""
    from PIL import Image

    sizes = {}
    for name in names:
        try:
            with Image.open(os.path.join(path, name)) as image:
                sizes.setdefault(image.size, name)
        except OSError as error:
            raise InputError(f"cannot read frame {name!r} of {path!r} ({error})") from None
    if len(sizes) > 1:
        (first, a), (second, b) = list(sizes.items())[:2]
        raise InputError(
            f"the frames of {path!r} differ in size: {a!r} is {first[0]}x{first[1]}, {b!r} is "
            f"{second[0]}x{second[1]} pixels"
        )
    return names


def _read_gif(path: str) -> np.ndarray:
    """Every frame of a GIF as uint8 [T, H, W, 3]."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format != "GIF":
                raise InputError(f"{path!r} is a {image.format} image, not a GIF")
            return np.stack(
                [np.asarray(f.convert("RGB"), np.uint8) for f in ImageSequence.Iterator(image)]
            )
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"cannot read {path!r} as a GIF ({error})") from None


def check_clip(clip, size: int, frames: int, what: str = "the clip") -> np.ndarray:
    """`clip` as uint8 [frames, size, size, 3]; InputError naming what differs.

    Float clips must lie in [0, 1] and are scaled to 0..255 (as `check_image` does).
    """
    clip = np.asarray(clip)
    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise InputError(f"{what} has shape {list(clip.shape)}; an RGB clip [T, H, W, 3] is needed")
    if clip.shape[0] != frames:
        raise InputError(
            f"{what} has {clip.shape[0]} frames; this model takes clips of {frames} frames"
        )
    if clip.shape[1:3] != (size, size):
        height, width = clip.shape[1:3]
        raise InputError(
            f"{what} has frames of {width}x{height} pixels; this model takes {size}x{size} "
            "frames (config.data.image_size)"
        )
    return np.stack([check_image(frame, what=what) for frame in clip])
