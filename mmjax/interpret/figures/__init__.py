"""Figures a person reads at a glance: attention, relevance and reconstructions, as PNG.

Laid out in whole pixels (`canvas.Canvas`), so upscaled images are drawn pixel for pixel.

  vqa_figure             where the answer to a question comes from (rollout, per layer/head)
  caption_figure         the decoder's cross-attention for each word of a caption
  retrieval_figure       each image token's share of a caption's similarity to the image
  reconstruction_figure  an autoencoder's input and reconstructions from image, text, both
  heat_grid_figure       a grid of heat maps over images (a paper's panel of examples)

Each returns a `Canvas` (its matplotlib figure, and the pixel box of every panel); matplotlib
is imported when a figure is made.
"""

from mmjax.interpret.figures.canvas import Box, Canvas
from mmjax.interpret.figures.captioning import caption_figure
from mmjax.interpret.figures.heat_grid import HeatCell, heat_grid_figure
from mmjax.interpret.figures.reconstruction import Example, reconstruction_figure
from mmjax.interpret.figures.retrieval import retrieval_figure
from mmjax.interpret.figures.vqa import vqa_figure

__all__ = [
    "Box",
    "Canvas",
    "Example",
    "HeatCell",
    "caption_figure",
    "heat_grid_figure",
    "reconstruction_figure",
    "retrieval_figure",
    "vqa_figure",
]
