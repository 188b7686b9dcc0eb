"""The autoencoder figure: an input and its reconstructions from each source of z, with texts.

One row per example: the input image and text, then the image and text decoded from z of the
image alone, of the text alone and of both, each image upscaled (nearest neighbour) with its
mean squared error against the input in the title and its decoded text under it, with how many
words it differs from the input text by.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmjax.interpret.figures.canvas import FONT, LINE, Box, Canvas, lines, wrap
from mmjax.interpret.figures.heat import panel_scale, upscale

PAD, GAP = 20, 18
TITLES = {
    "from_image": "from the image",
    "from_text": "from the text",
    "joint": "from image + text",
}


@dataclasses.dataclass
class Example:
    """One input and its reconstructions.

    Attributes:
      image: uint8 [H, W, 3], the input image.
      text: the input text (None when only the image was given).
      reconstructions: source ("from_image", "from_text", "joint") -> (uint8 [H, W, 3] image,
        decoded text); absent sources are left out.
    """

    image: np.ndarray
    text: str | None
    reconstructions: dict[str, tuple[np.ndarray, str]]


def mse(a, b) -> float:
    """Mean squared error of two uint8 images, on the [0, 1] scale the task's metrics use."""
    return float(np.mean((np.asarray(a, np.float64) / 255 - np.asarray(b, np.float64) / 255) ** 2))


def words_differing(text: str, reference: str) -> int:
    """The word-level edit distance of `text` from `reference`.

    The fewest words to substitute, insert or delete; case and spacing (also around
    punctuation) are ignored.
    """
    from mmjax.data.tokenizer import split_words

    a, b = split_words(text), split_words(reference)
    row = list(range(len(b) + 1))  # distances of a[:0] to every prefix of b
    for i, word in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


def reconstruction_figure(examples: list[Example], scale: int | None = None) -> Canvas:
    """Rows of input | from image | from text | joint (the sources present), texts under each.

    Returns the `Canvas`; its boxes are "input{r}" and "{source}{r}" for row r.
    """
    sources = [s for s in TITLES if any(s in e.reconstructions for e in examples)]
    size = examples[0].image.shape[:2]
    s = scale or panel_scale(max(size), 300)
    ph, pw = size[0] * s, size[1] * s
    rows = []
    for e in examples:
        texts = [e.text or ""]
        for k in sources:
            decoded = e.reconstructions.get(k, (None, ""))[1]
            if e.text and k in e.reconstructions:
                wrong = words_differing(decoded, e.text)
                decoded += f" ({wrong} word{'' if wrong == 1 else 's'} wrong)"
            texts.append(decoded)
        rows.append([wrap(t, pw, FONT - 1) for t in texts])
    text_h = [max(lines(t) for t in r) * (LINE - 1) for r in rows]
    width = PAD + (1 + len(sources)) * (pw + GAP) - GAP + PAD
    height = PAD + sum(LINE + ph + 8 + h + GAP for h in text_h) + PAD
    canvas = Canvas(width, height)
    top = PAD
    for r, (e, texts) in enumerate(zip(examples, rows)):
        top += LINE
        panels = [("input", "input", e.image)]
        for k in sources:
            if k in e.reconstructions:
                picture = e.reconstructions[k][0]
                panels.append((k, f"{TITLES[k]} (MSE {mse(picture, e.image):.4f})", picture))
            else:
                panels.append((k, f"{TITLES[k]}: no text given", None))
        for c, ((name, title, picture), text) in enumerate(zip(panels, texts)):
            box = Box(top, PAD + c * (pw + GAP), ph, pw)
            if picture is None:
                canvas.add(f"{name}{r}", box).set_title(title, fontsize=FONT)
            else:
                canvas.image(f"{name}{r}", box, upscale(picture, s), size, title)
            canvas.text(box.left, top + ph + 6, text, size=FONT - 1)
        top += ph + 8 + text_h[r] + GAP
    return canvas
