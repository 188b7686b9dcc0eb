"""Image files in and out: PNG or JPEG to uint8 [S, S, 3] for a model, and back to PNG."""

from __future__ import annotations

import os

import numpy as np

from mmjax.predict.errors import InputError

FORMATS = ("PNG", "JPEG")


def read_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """The RGB pixels of a PNG or JPEG file as uint8 [H, W, 3].

    Grayscale, palette and RGBA files are converted to RGB (an alpha channel is dropped).
    Raises InputError naming the file when it does not exist, is not a PNG or JPEG image, or is
    not `size` x `size` pixels (when `size` is given). Images are never resized: a model
    trained on S x S scenes sees its objects at one scale only.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"no image file at {path!r}")
    try:
        with Image.open(path) as image:
            if image.format not in FORMATS:
                raise InputError(f"{path!r} is a {image.format} image; PNG or JPEG files are read")
            pixels = np.asarray(image.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"cannot read {path!r} as a PNG or JPEG image ({error})") from None
    check_image(pixels, size, what=repr(path))
    return pixels


def check_image(image, size: int | None = None, what: str = "the image") -> np.ndarray:
    """`image` as uint8 [H, W, 3]; raises InputError unless it is one (and S x S, given `size`).

    Float images must lie in [0, 1] and are scaled to 0..255.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise InputError(f"{what} has shape {list(image.shape)}; an RGB image [H, W, 3] is needed")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating) or image.min() < 0 or image.max() > 1:
            raise InputError(f"{what} is {image.dtype}; uint8 or float in [0, 1] is needed")
        image = np.round(image * 255).astype(np.uint8)
    if size is not None and image.shape[:2] != (size, size):
        height, width = image.shape[:2]
        raise InputError(
            f"{what} is {width}x{height} pixels; this model takes {size}x{size} images "
            "(config.data.image_size)"
        )
    return image


def save_image(path: str | os.PathLike, image) -> None:
    """Writes uint8 [H, W, 3] (or float in [0, 1]) to `path` as PNG (JPEG by a .jpg suffix)."""
    from PIL import Image

    Image.fromarray(check_image(image)).save(os.fspath(path))
