"""The captioning attention figure: where the decoder looked while writing each word.

Left: the scene upscaled (nearest neighbour) with the caption under it. Right: one small panel
per word, in writing order, titled with the word: the decoder's cross-attention to the image
tokens while it wrote that word (mean over heads and layers, `CaptionAttention.maps`), laid
over the scene, all on one colour scale with its colour bar.
"""

from __future__ import annotations

import math

import numpy as np

from mmjax.interpret.figures.canvas import FONT, LINE, Box, Canvas, lines, wrap
from mmjax.interpret.figures.heat import Scale, blend, colorbar, heat_pixels, panel_scale, upscale

PAD, GAP, BAR, BAR_TEXT = 20, 10, 16, 70


def caption_figure(
    image,
    words: list[str],
    maps,
    grid: tuple[int, int],
    caption: str | None = None,
    columns: int = 8,
) -> Canvas:
    """The figure of one caption: `words` (n of them) and their maps [n, rows * cols].

    `image` is uint8 [H, W, 3]; `caption` (default: the words joined) is printed under the
    scene. Returns the `Canvas`; its boxes are "image", "word{i}" for each word and
    "colorbar".
    """
    image = np.asarray(image)
    maps = np.asarray(maps, np.float64)[: len(words)]
    size = image.shape[:2]
    big, small = panel_scale(max(size), 300), max(2, panel_scale(max(size), 150, 2))
    bh, bw = size[0] * big, size[1] * big
    sh, sw = size[0] * small, size[1] * small
    columns = max(1, min(columns, len(words)))
    rows = max(1, math.ceil(len(words) / columns))
    text = wrap(caption if caption is not None else " ".join(words), bw, FONT)
    top = PAD + 2 * LINE
    grid_left = PAD + bw + 3 * GAP
    cell_h = sh + LINE + 6
    width = grid_left + columns * (sw + GAP) + 8 + BAR + BAR_TEXT
    height = top + max(bh + 10 + lines(text) * LINE, rows * cell_h) + PAD
    canvas = Canvas(width, height)
    canvas.image("image", Box(top, PAD, bh, bw), upscale(image, big), size, "scene, its caption:")
    canvas.text(PAD, top + bh + 8, text)
    scale = Scale.of(maps)
    up = upscale(image, small)
    for i, word in enumerate(words):
        box = Box(top + (i // columns) * cell_h, grid_left + (i % columns) * (sw + GAP), sh, sw)
        pixels = blend(up, heat_pixels(maps[i], grid, size, small), scale)
        canvas.image(f"word{i}", box, pixels, size, f"{i + 1}. {word}")
    canvas.text(
        grid_left,
        PAD - 8,
        "cross-attention while writing each word (mean over heads and layers)",
        size=FONT - 1,
    )
    bar = Box(top, width - BAR - BAR_TEXT, rows * cell_h - LINE - 6, BAR)
    colorbar(canvas, "colorbar", bar, scale, "attention weight")
    return canvas
