"""Heat maps over images: a token-grid map upsampled to the image and blended onto it."""

from __future__ import annotations

import numpy as np

# Anchor colours of a perceptually ordered map (dark purple -> orange -> light yellow, close to
# matplotlib's "inferno"), so overlays need no plotting library.
_ANCHORS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64
)


def colorize(values) -> np.ndarray:
    """Colours of values in [0, 1] (clipped): float [...] -> uint8 [..., 3]."""
    x = np.clip(np.asarray(values, np.float64), 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.minimum(np.floor(x).astype(int), len(_ANCHORS) - 2)
    frac = (x - low)[..., None]
    return np.round(_ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac).astype(np.uint8)


def upsample(heat, size: tuple[int, int]) -> np.ndarray:
    """A grid map float [h, w] resized to `size` = (H, W) by bilinear interpolation: [H, W]."""
    from PIL import Image

    heat = np.asarray(heat, np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat map must be [h, w], got shape {list(heat.shape)}")
    resized = Image.fromarray(heat, mode="F").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, np.float64)


def overlay(image, heat, alpha: float = 0.6) -> np.ndarray:
    """`image` uint8 [H, W, 3] with `heat` [h, w] drawn over it: uint8 [H, W, 3].

    The map is scaled to m in [0, 1] by its minimum and maximum (a constant map gives m = 0:
    attention spread evenly singles out nothing), upsampled to the image, coloured, and
    blended as (1 - alpha * m) * image + alpha * m * colour(m), so the least relevant pixels
    keep their colours and the most relevant ones take the map's.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype}{list(image.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must lie in [0, 1]")
    heat = np.asarray(heat, np.float64)
    spread = np.ptp(heat) if heat.size else 0.0
    m = upsample((heat - heat.min()) / spread if spread > 0 else 0 * heat, image.shape[:2])
    m = np.clip(m, 0.0, 1.0)[..., None]
    blended = (1 - alpha * m) * image + alpha * m * colorize(m[..., 0])
    return np.round(blended).astype(np.uint8)
