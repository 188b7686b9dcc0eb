"""A loaded model's prediction for one image, drawn: attention, relevance or reconstructions.

  from mmjax import predict
  from mmjax.predict import figures
  model = predict.load("runs/vqa")
  drawn = figures.attention(model, "scene.png", question="is the red object on the left?")
  drawn.save("attention.png")   # attention.png (the figure) and attention.npy (the raw map)

`attention` draws the run's task: VQA the rollout relevance of the answer (`vqa_figure`),
captioning the cross-attention of each word of its caption (`caption_figure`), retrieval each
image token's share of each caption's similarity (`retrieval_figure`). `reconstructions`
draws an autoencoder's input and its reconstructions (`reconstruction_figure`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from mmjax.predict.errors import InputError


@dataclasses.dataclass
class Drawn:
    """A figure and the raw array it shows.

    Attributes:
      canvas: the `mmjax.interpret.figures.Canvas` (matplotlib figure and panel boxes).
      raw: the map(s) drawn, float32 on the token grid: VQA [rows, cols]; captioning
        [words, rows, cols]; retrieval [captions, rows, cols] in the given order; None for
        reconstructions.
      summary: one line saying what was drawn.
    """

    canvas: object
    raw: np.ndarray | None
    summary: str

    def save(self, path: str | os.PathLike) -> list[str]:
        """Writes the figure to `path` (PNG) and the raw map beside it (.npy); returns paths."""
        path = os.fspath(path)
        written = [self.canvas.save(path)]
        if self.raw is not None:
            raw_path = os.path.splitext(path)[0] + ".npy"
            np.save(raw_path, np.asarray(self.raw, np.float32))
            written.append(raw_path)
        return written

    def _repr_png_(self) -> bytes:
        """Jupyter shows the figure."""
        return self.canvas.png()

    def __repr__(self) -> str:
        shape = None if self.raw is None else list(np.shape(self.raw))
        return f"Drawn({self.summary!r}, raw {shape})"


def check_output(path: str | os.PathLike, flag: str) -> None:
    """Raises InputError when the figure of `--flag` cannot be written to `path`.

    That is when matplotlib is missing or `path`'s directory does not exist; called before any
    model runs, so nothing is computed for a figure that cannot be saved.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(f'--{flag} needs matplotlib (pip install -e ".[plot]")') from None
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(folder):
        raise InputError(f"--{flag}={os.fspath(path)!r}: no directory {folder!r}")


def attention(predictor, image, *, question=None, captions=None, per_head=False) -> Drawn:
    """The attention figure of the run's task for `image` (see the module docstring).

    VQA needs `question` (`per_head` adds a panel per fusion layer and head); retrieval needs
    `captions`; captioning draws the model's own caption.
    """
    task = predictor.task_name
    if task == "vqa":
        if not question:
            raise InputError("the VQA attention figure needs a question")
        return _vqa(predictor, image, question, per_head)
    if task == "captioning":
        return _captioning(predictor, image)
    if task == "retrieval":
        if not captions:
            raise InputError("the retrieval figure needs at least one caption")
        return _retrieval(predictor, image, list(captions))
    raise InputError(f"no attention figure for task {task!r}; vqa, captioning and retrieval have")


def _vqa(predictor, image, question: str, per_head: bool) -> Drawn:
    from mmjax.interpret.figures import vqa_figure

    pixels = predictor.image(image)
    answer = predictor.answer(pixels, question)
    maps = predictor.attention(pixels, question)
    canvas = vqa_figure(pixels, maps, question, answer.text, answer.probability, per_head=per_head)
    raw = maps.relevance[0, 0].reshape(maps.grid)
    return Drawn(canvas, raw, f"attention rollout of the answer {answer.text!r}")


def _captioning(predictor, image) -> Drawn:
    from mmjax.interpret.figures import caption_figure

    pixels = predictor.image(image)
    maps = predictor.caption_attention(pixels)
    length = int(maps.lengths[0])
    tokens = maps.tokens[0, :length]
    words = [predictor.task.tokenizer.decode([t]) for t in tokens]
    caption = predictor.task.tokenizer.decode(tokens)
    canvas = caption_figure(pixels, words, maps.maps[0, :length], maps.grid, caption)
    raw = maps.maps[0, :length].reshape(length, *maps.grid)
    return Drawn(canvas, raw, f"cross-attention of the {length} words of {caption!r}")


def _retrieval(predictor, image, captions: list[str]) -> Drawn:
    from mmjax.interpret.figures import retrieval_figure

    pixels = predictor.image(image)
    rel = predictor.relevance(pixels, captions)
    canvas = retrieval_figure(
        pixels, captions, rel.similarity[0], rel.maps[0], rel.grid, kind=rel.kind
    )
    raw = rel.maps[0].reshape(len(captions), *rel.grid)
    return Drawn(canvas, raw, f"each image token's {rel.kind} for {len(captions)} captions")


def reconstructions(predictor, image, text: str | None = None) -> Drawn:
    """An autoencoder's input and its reconstructions, with the decoded texts.

    From z of the image, and with `text` also from z of the text and of both.
    """
    from mmjax.interpret.figures import Example, reconstruction_figure

    pixels = predictor.image(image)
    results = predictor.reconstructions(pixels, text)
    example = Example(pixels, text, {k: (r.image, r.text) for k, r in results.items()})
    canvas = reconstruction_figure([example])
    return Drawn(canvas, None, f"reconstructions from {', '.join(results)}")
