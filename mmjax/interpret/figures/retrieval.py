"""The retrieval figure: which image tokens each caption's match with the image rests on.

Left: the scene upscaled (nearest neighbour). Right: one panel per caption, most similar first,
its per-token map (`RetrievalRelevance.maps`: each token's share of the cosine similarity, red
where it pulls the image towards the caption, blue where away) laid over the scene on one
colour scale centred on zero, with the caption, its rank and its similarity under it.
"""

from __future__ import annotations

import numpy as np

from mmjax.interpret.figures.canvas import FONT, LINE, Box, Canvas, lines, wrap
from mmjax.interpret.figures.heat import Scale, blend, colorbar, heat_pixels, panel_scale, upscale

PAD, GAP, BAR, BAR_TEXT = 20, 14, 16, 78
LABELS = {
    "contribution": "share of the similarity",
    "token_similarity": "token's cosine similarity",
}


def retrieval_figure(
    image,
    captions: list[str],
    similarity,
    maps,
    grid: tuple[int, int],
    kind: str = "contribution",
) -> Canvas:
    """The figure of captions [T] with their similarities [T] and maps [T, rows * cols].

    `image` is uint8 [H, W, 3]. Captions are drawn most similar first. Returns the `Canvas`;
    its boxes are "image", "caption{i}" (i = the caption's position in `captions`) and
    "colorbar".
    """
    image = np.asarray(image)
    similarity = np.asarray(similarity, np.float64)
    maps = np.asarray(maps, np.float64)
    size = image.shape[:2]
    big, small = panel_scale(max(size), 300), panel_scale(max(size), 225, 3)
    bh, bw = size[0] * big, size[1] * big
    sh, sw = size[0] * small, size[1] * small
    order = np.argsort(-similarity, kind="stable")
    texts = [wrap(captions[i], sw, FONT - 2) for i in order]
    top = PAD + 2 * LINE
    left = PAD + bw + 2 * GAP
    width = left + len(captions) * (sw + GAP) + 4 + BAR + BAR_TEXT
    height = top + max(bh, sh + 8 + max(lines(t) for t in texts) * (LINE - 2)) + PAD
    canvas = Canvas(width, height)
    canvas.image("image", Box(top, PAD, bh, bw), upscale(image, big), size, "scene")
    scale = Scale.of(maps, signed=kind == "contribution")
    up = upscale(image, small)
    for rank, (i, text) in enumerate(zip(order, texts)):
        box = Box(top, left + rank * (sw + GAP), sh, sw)
        pixels = blend(up, heat_pixels(maps[i], grid, size, small), scale)
        canvas.image(
            f"caption{i}", box, pixels, size, f"#{rank + 1}: similarity {similarity[i]:+.3f}"
        )
        canvas.text(box.left, top + sh + 6, text, size=FONT - 2)
    canvas.text(left, PAD - 8, f"per image token: {LABELS.get(kind, kind)}", size=FONT - 1)
    colorbar(
        canvas, "colorbar", Box(top, width - BAR - BAR_TEXT, sh, BAR), scale, LABELS.get(kind, kind)
    )
    return canvas
