"""The VQA attention figure: where the answer to one question comes from in the image.

Top row: the scene upscaled (nearest neighbour), the rollout relevance of every image-token
cell as a heat map with its colour bar, and the same map laid over the scene; the question,
the answer and its probability in the title. With `per_head`, below it one row per fusion
layer and one panel per head: that head's attention from the answer's token(s) to the image
tokens, all on one colour scale.
"""

from __future__ import annotations

import numpy as np

from mmjax.interpret.figures.canvas import FONT, LINE, Box, Canvas, lines, wrap
from mmjax.interpret.figures.heat import Scale, blend, colorbar, heat_pixels, panel_scale, upscale

PAD, GAP, BAR, BAR_TEXT = 20, 24, 16, 78
HEAD_LABEL, HEAD_GAP = 64, 12  # the per-head rows' label column and gap between panels


def _title(question: str, answer: str, probability: float, share: float, width: int) -> str:
    head = wrap(f'"{question}"', width - 2 * PAD, FONT + 2)
    return (
        f"{head}\nanswer: {answer} (p = {probability:.2f})   ·   "
        f"share of the answer from the image: {share:.2f}"
    )


def _heat_row(canvas, image, heat, grid, scale: Scale, top: int, panel_scale_: int):
    """The scene, the heat map alone and the blend, side by side from `top`.

    Returns the left edge of the colour bar beside them.
    """
    size = image.shape[:2]
    ph, pw = size[0] * panel_scale_, size[1] * panel_scale_
    up = upscale(image, panel_scale_)
    heat = heat_pixels(heat, grid, size, panel_scale_)
    titles = (
        f"scene ({panel_scale_}x, nearest)",
        "relevance per token cell",
        "relevance over the scene",
    )
    pictures = (up, scale.colors(heat), blend(up, heat, scale))
    for i, (name, title, pixels) in enumerate(
        zip(("image", "heatmap", "overlay"), titles, pictures)
    ):
        box = Box(top, PAD + i * (pw + GAP), ph, pw)
        canvas.image(name, box, pixels, extent_size=size, title=title)
    return PAD + 3 * pw + 2 * GAP + 14


def vqa_figure(
    image,
    maps,
    question: str,
    answer: str,
    probability: float,
    *,
    index=(0, 0),
    per_head: bool = False,
) -> Canvas:
    """The attention figure of question `index` = (b, q) of `maps` (a `VQAAttention`).

    `image` is uint8 [H, W, 3] (image b); the heat map is `maps.relevance[b, q]`, the rollout
    share of the answer that flows from each image-token cell. Returns the `Canvas`; its
    boxes are "image", "heatmap", "overlay" and "colorbar" (and "layer{l}_head{h}" panels
    and "head_colorbar" with `per_head`), its axes take markers in image pixel coordinates.
    """
    image = np.asarray(image)
    b, q = index
    relevance = np.asarray(maps.relevance[b, q], np.float64)
    s = panel_scale(max(image.shape[:2]))
    ph, pw = image.shape[0] * s, image.shape[1] * s
    heads = [np.asarray(layer[b, q], np.float64) for layer in maps.answer_to_image]
    small = max(2, s // 2)
    width = PAD + 3 * pw + 2 * GAP + 14 + BAR + BAR_TEXT + PAD
    if per_head:  # many heads widen the figure
        head_panels = len(heads[0]) * (image.shape[1] * small + HEAD_GAP)
        width = max(width, PAD + HEAD_LABEL + head_panels + 4 + BAR + BAR_TEXT + PAD)
    title = _title(question, answer, probability, relevance.sum(), width)
    top = 14 + lines(title) * (LINE + 3) + 10 + LINE
    head_height = (len(heads) * (image.shape[0] * small + LINE + 8) + LINE + 20) if per_head else 0
    canvas = Canvas(width, top + ph + PAD + head_height, title=title)
    scale = Scale.of(relevance)
    bar_left = _heat_row(canvas, image, relevance, maps.grid, scale, top, s)
    colorbar(canvas, "colorbar", Box(top, bar_left, ph, BAR), scale, "share of the answer")
    if per_head:
        _head_rows(canvas, image, heads, maps.grid, top + ph + PAD + LINE, small)
    return canvas


def _head_rows(canvas: Canvas, image, heads: list[np.ndarray], grid, top: int, s: int) -> None:
    """One row per layer, one panel per head, on one colour scale (see module docstring)."""
    size = image.shape[:2]
    ph, pw = size[0] * s, size[1] * s
    scale = Scale.of(np.stack(heads))
    up = upscale(image, s)
    canvas.text(
        PAD,
        top - LINE - 4,
        "attention of the answer's token to the image tokens, "
        "per layer and head (the title: the head's total weight on the image)",
    )
    label = HEAD_LABEL
    for layer, weights in enumerate(heads):
        row_top = top + LINE + layer * (ph + LINE + 8)
        canvas.text(PAD, row_top + ph // 2, f"layer {layer}", size=FONT)
        for head, w in enumerate(weights):
            box = Box(row_top, PAD + label + head * (pw + HEAD_GAP), ph, pw)
            pixels = blend(up, heat_pixels(w, grid, size, s), scale)
            canvas.image(
                f"layer{layer}_head{head}",
                box,
                pixels,
                extent_size=size,
                title=f"head {head}: {w.sum():.2f}",
            )
    right = PAD + label + len(heads[0]) * (pw + HEAD_GAP) + 4
    bar = Box(top + LINE, right, len(heads) * (ph + LINE + 8) - LINE - 8, BAR)
    colorbar(canvas, "head_colorbar", bar, scale, "attention weight")
