"""Multi-clip evaluation: a clip longer than the model's window scored as the mean of windows.

ViViT and its predecessors evaluate a long video as several clips ("views") of the length the
model was trained on and average their predictions. Here a clip of T frames through a model
of W frames (T > W) is cut into windows of W consecutive frames whose starts are evenly spaced
from 0 to T - W, `stride` frames apart at most (`window_starts`), and its logits are the mean
of the windows' logits (`mean_window_logits`). A clip of W frames or fewer goes through
whole. Tasks read the window from `config.eval_window` (`window_settings`): frames = W (0: no
windows), stride (0: W, windows that do not overlap).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def window_settings(config) -> tuple[int, int]:
    """(frames, stride) of `config.eval_window`; (0, 0) when the config has none."""
    window = config.get("eval_window", None) or {}
    frames, stride = int(window.get("frames", 0)), int(window.get("stride", 0))
    if frames < 0 or stride < 0:
        raise ValueError(f"eval_window frames={frames} and stride={stride} must be >= 0")
    return frames, stride or frames


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Start frames of the windows that cover a clip of `num_frames` (see the module doc).

    ceil((T - W) / stride) + 1 windows, the first at 0 and the last at T - W, evenly spaced
    (rounded down); [0] when T <= W.
    """
    if window <= 0 or num_frames <= window:
        return [0]
    count = math.ceil((num_frames - window) / stride) + 1
    return [(num_frames - window) * k // (count - 1) for k in range(count)]


def mean_window_logits(
    logits_fn: Callable[[Array], Array], video: Array, window: int, stride: int
) -> Array:
    """The mean of `logits_fn` over the windows of `video` [B, T, H, W, C] (float32).

    `logits_fn` maps clips [B, W, H, W, C] to logits [B, ...]; with window 0, an image batch
    (4 axes) or a clip no longer than the window, it gets `video` whole.
    """
    if window <= 0 or video.ndim != 5 or video.shape[1] <= window:
        return logits_fn(video)
    starts = window_starts(video.shape[1], window, stride)
    total = sum(
        logits_fn(jax.lax.slice_in_dim(video, s, s + window, axis=1)).astype(jnp.float32)
        for s in starts
    )
    return total / len(starts)
