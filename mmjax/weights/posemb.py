"""Resampling learned image position embeddings to another patch grid ("high-res fine-tuning").

A table [1, N, D] holds one embedding per cell of a square g x g grid (N = g * g), row-major,
optionally after one class-token row (N = 1 + g * g, Hugging Face's layout). A model trained at
one image or patch size starts at another by resizing the grid of embeddings bilinearly (with
half-pixel centres, as `jax.image.resize`; big_vision zooms with scipy's order-1 spline, Hugging
Face interpolates bicubically); the class-token row is kept as it is.
"""

from __future__ import annotations

import math

import jax
import numpy as np


def grid_side(n: int) -> tuple[int, int] | None:
    """(class-token rows, grid side g) of a table of n rows: n = g * g or 1 + g * g; else None."""
    for extra in (0, 1):
        side = math.isqrt(n - extra)
        if side > 0 and side * side == n - extra:
            return extra, side
    return None


def can_resample(old_shape: tuple, new_shape: tuple) -> bool:
    """Whether a [1, N, D] table can be resampled to [1, M, D]: same D, same class-token rows."""
    if len(old_shape) != 3 or len(new_shape) != 3 or old_shape[0] != 1 or new_shape[0] != 1:
        return False
    if old_shape[2] != new_shape[2]:
        return False
    old, new = grid_side(old_shape[1]), grid_side(new_shape[1])
    return old is not None and new is not None and old[0] == new[0]


def resample(table: np.ndarray, rows: int) -> np.ndarray:
    """The [1, N, D] table resized to [1, rows, D] (see the module docstring)."""
    extra, old_side = grid_side(table.shape[1])
    _, new_side = grid_side(rows)
    head, grid = table[:, :extra], table[0, extra:].reshape(old_side, old_side, -1)
    grid = jax.image.resize(
        np.asarray(grid, np.float32), (new_side, new_side, grid.shape[-1]), "bilinear"
    )
    grid = np.asarray(grid, table.dtype).reshape(1, new_side * new_side, -1)
    return np.concatenate([head, grid], axis=1)
