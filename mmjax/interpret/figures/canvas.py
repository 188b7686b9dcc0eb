"""A matplotlib figure laid out in whole pixels, so that image panels are drawn pixel for pixel.

Every panel is an axes placed at an integer pixel box and every image is drawn with
`interpolation="none"` at exactly its box's size, so the PNG holds the panel's pixels unchanged:
an upscaled image stays the nearest-neighbour upscale of the input, and tests can read any
panel back from the file by its box (`Canvas.boxes`). matplotlib is imported only here, when a
figure is made (`pip install -e ".[plot]"`), and figures are made outside pyplot (no global
state, nothing to close).
"""

from __future__ import annotations

import dataclasses
import io
import os
import textwrap

import numpy as np

DPI = 100
FONT = 10  # points
LINE = round(FONT * DPI / 72 * 1.35)  # pixels per line of FONT-sized text


def new_figure(width: int, height: int):
    """A matplotlib Figure of `width` x `height` pixels, drawn by Agg.

    It is not in pyplot's list of open figures: nothing to close, and a notebook shows it only
    when asked. ImportError, saying what to install, without matplotlib.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'figures need matplotlib, which is not installed (pip install -e ".[plot]")'
        ) from None
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


@dataclasses.dataclass(frozen=True)
class Box:
    """A pixel rectangle of the figure: top and left edges, height and width (PNG rows/cols)."""

    top: int
    left: int
    height: int
    width: int

    def crop(self, pixels: np.ndarray) -> np.ndarray:
        """The rectangle of an image [H, W, ...] read from the saved figure."""
        return pixels[self.top : self.top + self.height, self.left : self.left + self.width]


class Canvas:
    """A figure of `width` x `height` pixels whose axes are placed at integer pixel boxes.

    Attributes:
      figure: the matplotlib Figure.
      boxes: name -> Box of every named panel (and colour bar).
      axes: name -> the matplotlib Axes of that panel.
    """

    def __init__(self, width: int, height: int, title: str | None = None):
        self.width, self.height = int(width), int(height)
        self.figure = new_figure(self.width, self.height)
        self.figure.patch.set_facecolor("white")
        self.boxes: dict[str, Box] = {}
        self.axes: dict = {}
        if title:
            self.figure.text(
                0.5, 1 - 8 / self.height, title, ha="center", va="top", fontsize=FONT + 2
            )

    def add(self, name: str, box: Box, axis_off: bool = True):
        """An axes named `name` filling `box`; returns it."""
        w, h = self.width, self.height
        rect = [box.left / w, 1 - (box.top + box.height) / h, box.width / w, box.height / h]
        ax = self.figure.add_axes(rect)
        if axis_off:
            ax.set_axis_off()
        self.boxes[name], self.axes[name] = box, ax
        return ax

    def image(self, name: str, box: Box, pixels, extent_size=None, title: str | None = None):
        """Draws uint8 [box.height, box.width, 3] pixels 1:1 into a panel named `name`.

        `extent_size` = (H, W) sets the axes' data coordinates to the original image's pixels
        (x from 0 to W, y from 0 to H downwards), so markers can be drawn in image coordinates.
        """
        pixels = np.asarray(pixels)
        if pixels.shape[:2] != (box.height, box.width):
            raise ValueError(f"pixels {pixels.shape[:2]} do not fill the box {box}")
        ax = self.add(name, box)
        self.frame(box)
        height, width = extent_size or pixels.shape[:2]
        ax.imshow(pixels, interpolation="none", extent=(0, width, height, 0))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        if title:
            ax.set_title(title, fontsize=FONT, pad=4)
        return ax

    def frame(self, box: Box, color: str = "0.6") -> None:
        """A one-pixel line just outside `box`, leaving the box's own pixels untouched.

        A white scene on the white page keeps its edge.
        """
        from matplotlib.patches import Rectangle

        # Display coordinates: pixels from the bottom left; the line's centre 2 px outside.
        bottom = self.height - (box.top + box.height)
        rect = Rectangle(
            (box.left - 2, bottom - 2),
            box.width + 4,
            box.height + 4,
            fill=False,
            edgecolor=color,
            linewidth=72 / DPI,
            transform=None,
            antialiased=False,
        )
        self.figure.patches.append(rect)

    def text(self, left: int, top: int, text: str, size: int = FONT, **kw) -> None:
        """Text whose top-left corner is at pixel (left, top)."""
        x, y = left / self.width, 1 - top / self.height
        self.figure.text(x, y, text, ha="left", va="top", fontsize=size, **kw)

    def pixels(self) -> np.ndarray:
        """The rendered figure, uint8 [height, width, 3] (the page is opaque white)."""
        self.figure.canvas.draw()
        return np.asarray(self.figure.canvas.buffer_rgba())[..., :3].copy()

    def save(self, path: str | os.PathLike) -> str:
        """Writes the figure as an RGB PNG of its pixel size; returns the path."""
        from PIL import Image

        path = os.fspath(path)
        Image.fromarray(self.pixels()).save(path, format="PNG", optimize=True)
        return path

    def png(self) -> bytes:
        """The PNG file's bytes."""
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(self.pixels()).save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()

    def __repr__(self) -> str:
        return f"Canvas({self.width}x{self.height} px, panels {sorted(self.boxes)})"

    def _repr_png_(self) -> bytes:
        """Jupyter shows a Canvas as its PNG, pixel for pixel."""
        return self.png()


def wrap(text: str, width_px: int, size: int = FONT) -> str:
    """`text` wrapped into lines that fit `width_px` pixels at `size` points (a rough width)."""
    chars = max(8, int(width_px / (size * DPI / 72 * 0.55)))
    return "\n".join(textwrap.wrap(text, chars)) if text else ""


def lines(text: str) -> int:
    """How many lines `text` takes."""
    return text.count("\n") + 1 if text else 0
