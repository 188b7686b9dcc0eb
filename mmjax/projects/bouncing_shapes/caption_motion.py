"""Scores whether a generated bouncing-shapes caption names each object's motion correctly.

n-gram metrics reward the template words every caption shares; this evaluator checks what a
clip is about. For each object it reads the direction the caption gives the object's colour
(`captions.named_directions`: the first direction word after the colour, walls skipped) and
compares it with the object's starting direction (`captions.motion_verdicts`), which no
single frame shows. Importing the module registers it as the evaluator "motion_caption" (a
config lists the module in `config.imports`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mmjax import registry
from mmjax.evaluators.bootstrap import weighted_mean
from mmjax.evaluators.examples import ExampleEvaluator, ExampleTable, Scored
from mmjax.projects.bouncing_shapes import captions, motion


class MotionCaptionEvaluator(ExampleEvaluator):
    """Object-level motion accuracy of generated captions.

    Each batch holds `color_key` int [B, N] (colour ids, the dataset's "object_color"),
    `direction_key` int [B, N] (starting directions, "object_direction") and `_mask` [B];
    predictions hold `prediction_key` int [B, L] token ids, decoded with the task's tokenizer.
    Metrics, over real clips x N objects: "motion_named" (the colour is named), "motion_accuracy"
    (named with its right starting direction) and, per clip, "motion_all_correct" (every
    object's direction right, NaN on the other rows of the clip). With bootstrap_samples > 0
    each gets a 95% interval over clips. Per-example table: one row per object, grouped by
    "color" and "direction".

    Attributes:
      tokenizer: has decode(ids) -> str (the task's, passed by the trainer).
    """

    CONTEXT = ("tokenizer",)

    def __init__(
        self,
        tokenizer,
        prediction_key: str = "tokens",
        color_key: str = "object_color",
        direction_key: str = "object_direction",
        bootstrap_samples: int = 0,
        confidence: float = 0.95,
        bootstrap_seed: int = 0,
    ):
        super().__init__(bootstrap_samples, confidence, bootstrap_seed)
        self.tokenizer = tokenizer
        self.prediction_key = prediction_key
        self.color_key = color_key
        self.direction_key = direction_key

    def _rows(self, text: str, colors: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """[named, direction right, all right (first row only, else NaN)] per object: [N, 3]."""
        named = captions.named_directions(text)
        right = captions.motion_verdicts(text, colors, directions)
        rows = np.full((len(colors), 3), np.nan)
        rows[:, 0] = [motion.COLOR_NAMES[c] in named for c in colors]
        rows[:, 1] = right
        rows[0, 2] = right.all()
        return rows

    def score(self, batches: Iterable) -> Scored:
        """Scores every object of every real clip of `batches` ((batch, predictions))."""
        rows, clusters, colors, directions, offset = [], [], [], [], 0
        for batch, predictions in batches:
            mask = np.asarray(batch["_mask"])
            for i in np.flatnonzero(mask):
                text = self.tokenizer.decode(np.asarray(predictions[self.prediction_key][i]))
                color = np.asarray(batch[self.color_key][i])
                direction = np.asarray(batch[self.direction_key][i])
                rows.append(self._rows(text, color, direction))
                clusters += [offset + int(i)] * len(color)
                colors += [motion.COLOR_NAMES[c] for c in color]
                directions += [motion.DIRECTIONS[d] for d in direction]
            offset += mask.shape[0]
        values = np.concatenate(rows) if rows else np.zeros((0, 3))
        names = ("motion_named", "motion_accuracy", "motion_all_correct")
        scores = {name: values[:, j] for j, name in enumerate(names)}
        groups = {"color": np.asarray(colors, str), "direction": np.asarray(directions, str)}
        table = ExampleTable(np.asarray(clusters, np.int64), scores, groups)

        def statistic(weights: np.ndarray) -> dict[str, float]:
            return {name: weighted_mean(v, weights) for name, v in scores.items()}

        return Scored(table, statistic)


registry.EVALUATORS.register("motion_caption", f"{__name__}:MotionCaptionEvaluator")
