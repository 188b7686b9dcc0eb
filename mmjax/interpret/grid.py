"""Where a model's image tokens lie on the image: the token grid and the kept patches.

An image stem turns an image into N tokens. With a patch stem they are the patches of a
rows x cols grid in raster order, or (`keep_tokens`) only the patches a token selector kept;
with a conv or ResNet stem they are the cells of the final feature map, a square grid whose
cells tile the image. Interpretation maps are drawn per grid cell, so they are placed back on
the whole grid first (zero on the cells that are not tokens).
"""

from __future__ import annotations

import math

import numpy as np

from mmjax.models.image import select_tokens


def token_grid(model, images, num_tokens: int) -> tuple[tuple[int, int], np.ndarray | None]:
    """((rows, cols), kept) of `model`'s image tokens for images [B, H, W, 3].

    `kept` is int [B, N] (the grid cells of the N tokens, row-major) for a patch stem that
    keeps only some patches (`model.keep_tokens`), else None (the N tokens are the grid's
    cells in raster order). For stems other than "patch" the grid is the square of side
    sqrt(N), or 1 x N when N is not a square.
    """
    stem = getattr(model, "stem", "")
    keep = getattr(model, "keep_tokens", 0)
    if stem == "patch":
        grid = tuple(int(s) // model.patch_size for s in np.shape(images)[1:3])
        if keep:
            kept = select_tokens(images, model.patch_size, keep, model.token_selector)
            return grid, np.asarray(kept)
        return grid, None
    side = math.isqrt(num_tokens)
    return ((side, side) if side * side == num_tokens else (1, num_tokens)), None


def on_grid(values, kept: np.ndarray | None, grid: tuple[int, int]) -> np.ndarray:
    """Token values [..., N] placed on the grid: [..., rows * cols].

    `kept` [B, N] (broadcastable to `values`) holds each token's cell; None means the tokens
    are the cells in raster order already. Cells that are not tokens get zero.
    """
    values = np.asarray(values)
    if kept is None:
        return values
    full = np.zeros((*values.shape[:-1], grid[0] * grid[1]), values.dtype)
    np.put_along_axis(full, np.broadcast_to(kept, values.shape), values, axis=-1)
    return full


def token_cells(kept: np.ndarray | None, grid: tuple[int, int], batch: int) -> np.ndarray:
    """Bool [B, rows * cols]: which grid cells are image tokens (all, without `kept`)."""
    cells = np.zeros((batch, grid[0] * grid[1]), bool)
    if kept is None:
        cells[:] = True
    else:
        np.put_along_axis(cells, np.asarray(kept), True, axis=-1)
    return cells
