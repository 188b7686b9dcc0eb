"""A grid of heat maps over images, on one colour scale: a paper's panel of examples.

Each cell is an image upscaled (nearest neighbour) with a token-grid map laid over it, a title
(e.g. the question and the answer) and optional markers in image pixel coordinates (e.g. the
object the question names). Rows may be labelled (e.g. by scene).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmjax.interpret.figures.canvas import DPI, FONT, LINE, Box, Canvas, lines, wrap
from mmjax.interpret.figures.heat import Scale, blend, colorbar, heat_pixels, panel_scale, upscale

PAD, GAP, BAR, BAR_TEXT = 20, 14, 16, 78


@dataclasses.dataclass
class HeatCell:
    """One panel of a heat grid.

    Attributes:
      image: uint8 [H, W, 3].
      heat: the map, [rows * cols] values on `grid`.
      grid: (rows, cols) of the map.
      title: text over the panel (wrapped to its width).
      markers: (x, y, style) in image pixels, style a matplotlib marker spec such as "wo".
    """

    image: np.ndarray
    heat: np.ndarray
    grid: tuple[int, int]
    title: str = ""
    markers: list[tuple[float, float, str]] = dataclasses.field(default_factory=list)


def heat_grid_figure(
    cells: list[list[HeatCell]],
    label: str,
    title: str | None = None,
    scale: int | None = None,
    row_labels: list[str] | None = None,
    signed: bool = False,
) -> Canvas:
    """Rows of panels (see module docstring), one colour bar labelled `label` for all.

    Returns the `Canvas`; its boxes are "cell{r}_{c}" and "colorbar".
    """
    size = cells[0][0].image.shape[:2]
    s = scale or panel_scale(max(size), 225, 3)
    ph, pw = size[0] * s, size[1] * s
    columns = max(len(r) for r in cells)
    titles = [[wrap(c.title, pw, FONT - 1) for c in r] for r in cells]
    title_h = [max(lines(t) for t in r) * (LINE - 1) + 4 for r in titles]
    left = PAD + (LINE * 2 if row_labels else 0)
    width = left + columns * (pw + GAP) + 4 + BAR + BAR_TEXT
    title = wrap(title or "", width - 2 * PAD, FONT + 2)
    head = (lines(title) * (LINE + 3) + 14) if title else 0
    height = PAD + head + sum(h + ph + GAP for h in title_h) + PAD
    canvas = Canvas(width, height, title=title or None)
    color_scale = Scale.of(np.concatenate([np.ravel(c.heat) for r in cells for c in r]), signed)
    top = PAD + head
    for r, row in enumerate(cells):
        top += title_h[r]
        for c, cell in enumerate(row):
            box = Box(top, left + c * (pw + GAP), ph, pw)
            pixels = blend(
                upscale(cell.image, s), heat_pixels(cell.heat, cell.grid, size, s), color_scale
            )
            ax = canvas.image(f"cell{r}_{c}", box, pixels, size)
            ax.set_title(titles[r][c], fontsize=FONT - 1, pad=3)
            for x, y, style in cell.markers:
                # A ring 16 image pixels wide (wider than a small object), so the cells under
                # it stay visible; markersize is in points.
                size_pt = 16 * s * 72 / DPI
                ax.plot(
                    x, y, style, markersize=size_pt, markerfacecolor="none", markeredgewidth=1.5
                )
        if row_labels:
            canvas.figure.text(
                PAD / canvas.width,
                1 - (top + ph / 2) / canvas.height,
                row_labels[r],
                rotation=90,
                va="center",
                fontsize=FONT,
            )
        top += ph + GAP
    bar = Box(
        PAD + head + title_h[0], width - BAR - BAR_TEXT, top - GAP - PAD - head - title_h[0], BAR
    )
    colorbar(canvas, "colorbar", bar, color_scale, label)
    return canvas
