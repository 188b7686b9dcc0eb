"""A parser of drawn Sort-of-CLEVR images: are the scene's colours drawn in their order.

A generated image (an autoencoder's image decoded from z of the text alone, say) "draws the
objects" when each colour of the scene appears in it, left to right in the order of the scene.
`colour_centroids` parses an image: a pixel belongs to a colour when that colour is the nearest
of the palette (the six colours and the white background) and lies within `max_distance` of
it, so faint or mixed pixels (a blur of two colours, or of a colour and the background) belong
to none; a colour's position is the centroid of its pixels, if it has at least `min_pixels`.
`order_verdicts` then says, per object, whether its colour sits at its rank in the scene's
left-to-right order. On the generator's own images the parser recovers every scene's order
(tests/test_drawn_scenes.py).

`DrawnOrderEvaluator` ("drawn_order") scores the images of one or more sources of z.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mmjax.projects.sort_of_clevr import scenes

# The palette the parser knows: the six colours in `scenes.COLORS` order, then the background.
PALETTE = np.array([rgb for _, rgb in scenes.COLORS] + [(255, 255, 255)], np.float32) / 255.0


def colour_centroids(
    image: np.ndarray, max_distance: float = 0.3, min_pixels: int = 10
) -> np.ndarray:
    """(x, y) centroid of each colour's pixels in one image, NaN where the colour is missing.

    Args:
      image: [H, W, 3] uint8, or float in [0, 1] (values outside are clipped).
      max_distance: the largest Euclidean RGB distance (pixels in [0, 1]) of a pixel from its
        nearest palette colour for it to count as that colour.
      min_pixels: the fewest pixels of a colour for it to count as drawn (a disk of radius 5
        has 81, an 11x11 square 121).

    Returns:
      float64 [6, 2]: per colour of `scenes.COLORS`, the mean (column, row) of its pixels.
    """
    x = np.asarray(image)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else np.clip(x, 0.0, 1.0)
    distances = np.linalg.norm(x[:, :, None, :] - PALETTE[None, None], axis=-1)  # [H, W, 7]
    nearest = distances.argmin(-1)
    close = distances.min(-1) <= max_distance
    centroids = np.full((len(PALETTE) - 1, 2), np.nan)
    for colour in range(len(PALETTE) - 1):
        rows, cols = np.nonzero((nearest == colour) & close)
        if len(rows) >= min_pixels:
            centroids[colour] = cols.mean(), rows.mean()
    return centroids


def order_verdicts(found_x: np.ndarray, true_x: np.ndarray) -> np.ndarray:
    """Per object, whether its colour is drawn at its rank in the scene's left-to-right order.

    Args:
      found_x: [6] the parsed x of each colour (NaN: not drawn).
      true_x: [6] the scene's x of each colour's object.

    Returns:
      bool [6]. A drawn colour's rank is the number of drawn colours left of it (ties broken by
      colour index); it is right when it lies within the ranks its object may take in the scene
      (objects with equal x may come in either order). A missing colour is wrong, and so
      shifts the ranks of the colours right of it.
    """
    found_x, true_x = np.asarray(found_x, np.float64), np.asarray(true_x, np.float64)
    drawn = ~np.isnan(found_x)
    order = sorted(np.flatnonzero(drawn), key=lambda c: (found_x[c], c))
    rank = np.full(len(found_x), -1)
    rank[order] = np.arange(len(order))
    lowest = (true_x[None, :] < true_x[:, None]).sum(1)
    highest = (true_x[None, :] <= true_x[:, None]).sum(1) - 1
    return drawn & (rank >= lowest) & (rank <= highest)


class DrawnOrderEvaluator:
    """Share of objects whose colour a generated image draws in the scene's left-to-right order.

    Each batch holds `center_key` int [B, 6, 2] (each colour's object centre, x first) and
    `_mask` [B]; predictions hold "image_<s>" [B, H, W, 3] for each source s in `sources`.
    Metrics per source s: `<s>_objects_in_order` (the share of objects, `order_verdicts`),
    `<s>_scenes_in_order` (scenes with all six right) and `<s>_colours_drawn` (the share of
    colours the parser finds at all); and num_examples.

    Attributes:
      sources: the sources of z whose images are parsed.
      center_key: the objects' centres in the batch.
      max_distance, min_pixels: as in `colour_centroids`.
    """

    def __init__(
        self,
        sources: Sequence[str] = ("joint", "from_image", "from_text"),
        center_key: str = "object_center",
        max_distance: float = 0.3,
        min_pixels: int = 10,
    ):
        self.sources = tuple(sources)
        self.center_key = center_key
        self.max_distance = max_distance
        self.min_pixels = min_pixels

    def evaluate(self, batches: Iterable) -> dict[str, float]:
        """Scores an iterable of (batch, predictions) pairs of host NumPy dicts."""
        verdicts = {s: [] for s in self.sources}
        drawn = {s: [] for s in self.sources}
        for batch, predicted in batches:
            keep = np.asarray(batch["_mask"], bool).reshape(-1)
            centres = np.asarray(batch[self.center_key])[keep]
            for s in self.sources:
                for image, centre in zip(np.asarray(predicted[f"image_{s}"])[keep], centres):
                    found = colour_centroids(image, self.max_distance, self.min_pixels)
                    verdicts[s].append(order_verdicts(found[:, 0], centre[:, 0]))
                    drawn[s].append(~np.isnan(found[:, 0]))
        metrics = {"num_examples": float(len(verdicts[self.sources[0]]))}
        for s in self.sources:
            right = np.asarray(verdicts[s], bool).reshape(-1, len(PALETTE) - 1)
            metrics[f"{s}_objects_in_order"] = float(right.mean())
            metrics[f"{s}_scenes_in_order"] = float(right.all(1).mean())
            metrics[f"{s}_colours_drawn"] = float(np.mean(drawn[s]))
        return metrics
