"""Scores whether a generated Sort-of-CLEVR caption names each object's shape and place.

n-gram metrics reward a caption for the template words every scene shares; this evaluator
checks content. For each of the six colours it finds the caption's mention of that colour's
object ("a red circle in the top left", "a top left red circle", "the red circle is in the
center", "red circle" in a list) and compares the shape word, and the 3x3-grid position phrase
when the mention has one, with the scene's objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from mmjax.evaluators.bootstrap import weighted_mean
from mmjax.evaluators.examples import ExampleEvaluator, ExampleTable, Scored
from mmjax.projects.sort_of_clevr import scenes as sort_of_clevr

_POSITION = r"(?:top|middle|bottom) (?:left|center|right)|center"
_MENTION = {
    color: re.compile(
        rf"(?:(?P<before>{_POSITION}) )?{color} (?P<shape>square|circle)"
        rf"(?: (?:is )?(?:in|at) the (?P<after>{_POSITION}))?"
    )
    for color in sort_of_clevr.COLOR_NAMES
}


def scene_caption_scores(text: str, shapes: np.ndarray, positions: list[str]) -> dict[str, list]:
    """Per-colour verdicts for one caption.

    Args:
      text: the generated caption.
      shapes: int [6], shape index (0 square, 1 circle) of each colour's object.
      positions: the 3x3-grid phrase of each colour's object ("top left", "center", ...).

    Returns lists over the 6 colours: "mentioned" (bool), "shape" (bool: mentioned with the
    right shape), "position" (bool or None when the mention names no position).
    """
    out = {"mentioned": [], "shape": [], "position": []}
    for c, color in enumerate(sort_of_clevr.COLOR_NAMES):
        match = _MENTION[color].search(text)
        out["mentioned"].append(match is not None)
        out["shape"].append(
            match is not None and match["shape"] == sort_of_clevr.SHAPES[int(shapes[c])]
        )
        place = match and (match["before"] or match["after"])
        out["position"].append(None if not place else place == positions[c])
    return out


class SceneCaptionEvaluator(ExampleEvaluator):
    """Object-level accuracy of generated Sort-of-CLEVR captions.

    Each batch holds `shape_key` int [B, 6] (each colour's shape), `center_key` int [B, 6, 2]
    (x, y) and `_mask` [B]; predictions hold `prediction_key` int [B, T] token ids, decoded with
    the task's tokenizer. Metrics (fractions over real examples x 6 objects):
    objects_mentioned, object_shape_accuracy, object_position_accuracy (over mentions that name
    a position) and objects_all_correct (shape right and position right where named); each
    with its interval when bootstrap_samples > 0 (images resampled). Per-example table: one row
    per object, grouped by its "color" and "shape".

    Attributes:
      tokenizer: has decode(ids) -> str (the task's, passed by the trainer).
      image_size: S, to turn centres into grid phrases.
    """

    CONTEXT = ("tokenizer",)  # given by the task (see evaluators.build_evaluator)

    def __init__(
        self,
        tokenizer,
        prediction_key: str = "tokens",
        shape_key: str = "object_shape",
        center_key: str = "object_center",
        image_size: int = 75,
        bootstrap_samples: int = 0,
        confidence: float = 0.95,
        bootstrap_seed: int = 0,
    ):
        super().__init__(bootstrap_samples, confidence, bootstrap_seed)
        self.tokenizer = tokenizer
        self.prediction_key = prediction_key
        self.shape_key = shape_key
        self.center_key = center_key
        self.image_size = image_size

    def _verdicts(self, text: str, shapes: np.ndarray, centers: np.ndarray) -> list[list]:
        """[mentioned, shape right, position right (NaN: none named), all right] per object."""
        # The word tokenizer splits punctuation off; the patterns are on words.
        text = re.sub(r"\s+", " ", re.sub(r"[^\w ]", " ", text))
        positions = [
            sort_of_clevr.position_phrase(int(x), int(y), self.image_size) for x, y in centers
        ]
        scores = scene_caption_scores(text, shapes, positions)
        return [
            [m, s, np.nan if p is None else p, s and p is not False]
            for m, s, p in zip(scores["mentioned"], scores["shape"], scores["position"])
        ]

    def score(self, batches: Iterable) -> Scored:
        """Scores every object of every real example of `batches` ((batch, predictions))."""
        rows, clusters, colors, shapes, image = [], [], [], [], 0
        for batch, predictions in batches:
            mask = np.asarray(batch["_mask"])
            for i in np.flatnonzero(mask):
                text = self.tokenizer.decode(predictions[self.prediction_key][i])
                shape = np.asarray(batch[self.shape_key][i])
                rows += self._verdicts(text, shape, np.asarray(batch[self.center_key][i]))
                clusters += [image + int(i)] * len(shape)
                colors += list(sort_of_clevr.COLOR_NAMES[: len(shape)])
                shapes += [sort_of_clevr.SHAPES[int(k)] for k in shape]
            image += mask.shape[0]
        values = np.asarray(rows, np.float64).reshape(-1, 4)
        names = ("objects_mentioned", "object_shape_accuracy", "object_position_accuracy")
        names += ("objects_all_correct",)
        scores = {name: values[:, j] for j, name in enumerate(names)}
        groups = {"color": np.asarray(colors, str), "shape": np.asarray(shapes, str)}
        table = ExampleTable(np.asarray(clusters, np.int64), scores, groups)

        def statistic(weights: np.ndarray) -> dict[str, float]:
            return {name: weighted_mean(v, weights) for name, v in scores.items()}

        return Scored(table, statistic)
