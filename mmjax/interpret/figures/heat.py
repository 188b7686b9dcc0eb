"""Heat maps of token-grid values: nearest-neighbour upscaling, colouring, blending, colour bars.

A map holds one value per image-token cell (rows x cols). It is drawn as blocks (nearest
neighbour), one per cell, so a bright block is one token and nothing is smoothed away; its
colours come from a perceptual colormap: "inferno" for values from zero up (attention, shares),
"RdBu_r" centred on zero for signed values (contributions to a similarity).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmjax.interpret.figures.canvas import FONT, Box, Canvas


def upscale(image, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of [H, W, ...] by an integer `scale`: [H s, W s, ...]."""
    image = np.asarray(image)
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def panel_scale(size: int, target: int = 450, minimum: int = 4) -> int:
    """The integer upscale that brings an image side of `size` near `target` pixels."""
    return max(minimum, round(target / size))


def cells_to_pixels(values, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A grid map ([rows * cols] or [rows, cols]) as blocks of [H, W] = `size` pixels.

    Pixel (y, x) gets the value of cell (y * rows // H, x * cols // W): the nearest-neighbour
    upscale of the grid.
    """
    values = np.asarray(values, np.float64).reshape(grid)
    rows = np.arange(size[0]) * grid[0] // size[0]
    cols = np.arange(size[1]) * grid[1] // size[1]
    return values[rows[:, None], cols[None, :]]


@dataclasses.dataclass(frozen=True)
class Scale:
    """How values map to colours: `cmap` over [vmin, vmax] (diverging maps centre on zero)."""

    vmin: float
    vmax: float
    cmap: str = "inferno"

    @classmethod
    def of(cls, values, signed: bool = False) -> Scale:
        """From zero to the largest value, or symmetric about zero when `signed`."""
        values = np.asarray(values, np.float64)
        top = float(np.abs(values).max()) if values.size else 0.0
        top = top if top > 0 else 1.0
        return cls(-top, top, "RdBu_r") if signed else cls(0.0, top, "inferno")

    @property
    def signed(self) -> bool:
        """Whether the scale is centred on zero."""
        return self.vmin < 0

    def unit(self, values) -> np.ndarray:
        """Values mapped to [0, 1] along the colormap."""
        return np.clip((np.asarray(values, np.float64) - self.vmin) / (self.vmax - self.vmin), 0, 1)

    def colors(self, values) -> np.ndarray:
        """uint8 RGB [..., 3] of values [...]."""
        import matplotlib

        rgba = matplotlib.colormaps[self.cmap](self.unit(values))
        return np.round(rgba[..., :3] * 255).astype(np.uint8)

    def strength(self, values) -> np.ndarray:
        """How strongly a value marks its cell, in [0, 1]: |value| over the scale's reach."""
        reach = max(abs(self.vmin), abs(self.vmax))
        return np.clip(np.abs(np.asarray(values, np.float64)) / reach, 0, 1)


def blend(image, heat, scale: Scale, alpha: float = 0.55) -> np.ndarray:
    """The heat map's colours laid over `image` (uint8 [H, W, 3]), heat [H, W] per pixel.

    The scene is drawn in grey so that its own colours do not mix with the map's. For a map
    from zero up every pixel takes the map's colour with opacity `alpha` over the grey scene
    (the colours keep their meaning on the colour bar, and the bright high values stand out on
    the darkened scene); for a signed map (colours white at zero) a pixel takes the colour with
    opacity alpha * sqrt(|value| / reach) over a lighter grey, so cells near zero keep the
    scene.
    """
    image = np.asarray(image, np.float64)
    gray = (image @ np.array([0.299, 0.587, 0.114]))[..., None]
    if scale.signed:
        base = 0.35 * 255 + 0.6 * gray
        opacity = (alpha * np.sqrt(scale.strength(heat)))[..., None]
    else:
        base = 0.3 * 255 + 0.55 * gray
        opacity = alpha
    out = (1 - opacity) * base + opacity * scale.colors(heat)
    return np.round(np.clip(out, 0, 255)).astype(np.uint8)


def colorbar(canvas: Canvas, name: str, box: Box, scale: Scale, label: str) -> None:
    """A vertical colour bar of `scale` in `box`, labelled on its right."""
    import matplotlib

    ax = canvas.add(name, box, axis_off=False)
    norm = matplotlib.colors.Normalize(scale.vmin, scale.vmax)
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=scale.cmap)
    bar = canvas.figure.colorbar(mappable, cax=ax)
    bar.ax.tick_params(labelsize=FONT - 2)
    bar.set_label(label, fontsize=FONT - 1)


def heat_pixels(values, grid, image_size: tuple[int, int], scale: int) -> np.ndarray:
    """A grid map as [H s, W s] blocks over an image of `image_size` upscaled by `scale`."""
    return cells_to_pixels(values, grid, (image_size[0] * scale, image_size[1] * scale))
