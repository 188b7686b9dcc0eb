"""Image preprocessing for datasets of photos of any size: RGB, resize, centre crop or squash.

Images stay uint8 [S, S, 3] on the host: the model's stem normalises them on the device
(`mmjax.models.image.normalize_images`: scale to [0, 1], then per-channel mean and std), so
batches cross to the accelerator at a quarter of the size of float32 pixels.
"""

from __future__ import annotations

import io

import numpy as np
import PIL.Image


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] -> uint8 [H, W, 3].

    Grey is repeated over the three channels; an alpha channel is dropped (not composited).
    Raises ValueError for any other shape or dtype.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image is {image.dtype}, not uint8")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image has shape {list(image.shape)}, not HxW, HxWx1, HxWx3 or HxWx4")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., :3]


def resize_and_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [size, size, 3]: shorter side resized to `size`, centre crop.

    Bicubic resampling (antialiased when shrinking). The crop keeps the middle of the longer
    side, as in the evaluation transforms of ImageNet-style pipelines; an image already
    [size, size, 3] comes back unchanged.
    """
    image = to_rgb(image)
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    resized = np.asarray(
        PIL.Image.fromarray(image).resize((new_w, new_h), PIL.Image.Resampling.BICUBIC)
    )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


def resize_squash(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [size, size, 3], the whole image resized (aspect not kept).

    For images where anything anywhere may matter (a CLEVR question may ask about an object
    at the edge that a centre crop would cut off). Bicubic resampling.
    """
    image = to_rgb(image)
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(PIL.Image.fromarray(image).resize((size, size), PIL.Image.Resampling.BICUBIC))


RESIZE = {"crop": resize_and_center_crop, "squash": resize_squash}


def fit_image(image: np.ndarray, size: int, mode: str = "crop") -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [size, size, 3], resized by `mode`.

    "crop": `resize_and_center_crop`; "squash": `resize_squash`. Raises ValueError for another.
    """
    if mode not in RESIZE:
        raise ValueError(f"resize mode {mode!r} is not one of {sorted(RESIZE)}")
    return RESIZE[mode](image, size)


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes (any format PIL reads) -> uint8 [H, W, 3].

    Raises ValueError (with PIL's reason) when the bytes are not a readable image.
    """
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(f"not a readable image ({error})") from None
