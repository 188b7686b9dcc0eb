"""Disparity: a metric broken down by grouping attributes the dataset supplies.

`DisparityEvaluator` ("disparity") runs another evaluator (`base`: any `ExampleEvaluator`, e.g.
"classification", "vqa_accuracy", "retrieval", "counterfactual") and breaks each of its
per-example scores down by each attribute of `attributes` (a question's colour, shape or
quadrant on Sort-of-CLEVR; any field of the JSONL line of a custom dataset). For score s and
attribute a it reports

  s                     the overall metric (the mean of the per-example scores)
  s/a/<value>           the metric over the examples of each group (the value with runs of
                        characters other than letters, digits, "_.-" as "_": "top_left")
  s/a.gap               the best group's value minus the worst group's
  s/a.ratio             the worst group's value over the best group's (1: parity)
  s/a/<value>.count     the group's size (examples with a score s)
  s/a.gap_p             the permutation p-value of the gap (`permutation_p_value`)

each value with its interval when bootstrap_samples > 0 (images resampled). The gap of
estimated group values is biased upwards (noise alone makes groups differ), so its interval
excludes 0 even with no disparity: whether a disparity is real is what gap_p says, the share of
`permutations` shufflings of the group labels whose gap is as large. Groups smaller than
`min_count` are reported but left out of the gap and ratio. Examples lacking the attribute
form the group "(missing)". Group values add up to the overall metric, weighted by group size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mmjax.evaluators.bootstrap import weighted_mean
from mmjax.evaluators.examples import ExampleEvaluator, Scored
from mmjax.evaluators.groups import metric_name

MISSING = "(missing)"


def group_values(
    scores: np.ndarray, groups: np.ndarray, weights: np.ndarray, names: Sequence[str]
) -> np.ndarray:
    """The weighted means, float [G], of `scores` [N] over the groups `names`."""
    return np.asarray([weighted_mean(scores, weights, groups == name) for name in names])


def permutation_p_value(
    scores: np.ndarray,
    groups: np.ndarray,
    clusters: np.ndarray,
    eligible: np.ndarray,
    permutations: int,
    seed: int,
) -> float:
    """The share of group-label permutations whose gap is at least the observed one.

    The null hypothesis is that the metric does not depend on the group: the group labels are
    shuffled among the examples, or among the images when every image has one value (an image
    attribute), so that an image's questions or captions move together. Only the `eligible`
    groups (by position among the sorted group values) enter the gap; a permutation that
    leaves one of them empty counts as not exceeding. (1 + #{gap* >= gap}) / (1 + P).
    """
    keep = np.isfinite(scores)
    scores, groups, clusters = scores[keep], groups[keep], clusters[keep]
    names, codes = np.unique(groups, return_inverse=True)
    use = np.asarray(eligible, bool) & (np.bincount(codes, minlength=len(names)) > 0)
    if use.sum() < 2:
        return float("nan")

    def gap(labels: np.ndarray) -> float:
        counts = np.bincount(labels, minlength=len(names))[use].astype(np.float64)
        if np.any(counts == 0):
            return float("-inf")
        means = np.bincount(labels, weights=scores, minlength=len(names))[use] / counts
        return float(means.max() - means.min())

    observed = gap(codes)
    _, image_index = np.unique(clusters, return_inverse=True)
    per_image = np.zeros(image_index.max() + 1, np.int64)
    per_image[image_index] = codes
    image_level = np.array_equal(per_image[image_index], codes)
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(permutations):
        labels = rng.permutation(per_image)[image_index] if image_level else rng.permutation(codes)
        exceed += gap(labels) >= observed - 1e-12
    return (1 + exceed) / (1 + permutations)


def gap_and_ratio(values: np.ndarray) -> tuple[float, float]:
    """(best - worst, worst / best) of the finite group values; NaN when there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    best, worst = float(finite.max()), float(finite.min())
    return best - worst, (worst / best if best != 0 else float("nan"))


class DisparityEvaluator(ExampleEvaluator):
    """The base evaluator's per-example scores by group (see the module docstring).

    Args:
      base: the config entry of the evaluator to break down (its "type" and keys).
      attributes: the grouping attributes ("group/<attr>" in the batches).
      scores: the per-example scores to break down (default: all of the base's).
      min_count: the smallest group that takes part in the gap and the ratio.
      permutations: label permutations behind gap_p (0: none).
      context: what the task offers evaluators (passed by `build_evaluator`).
    """

    WANTS_CONTEXT = True

    def __init__(
        self,
        base: dict,
        attributes: Sequence[str],
        scores: Sequence[str] | None = None,
        min_count: int = 1,
        permutations: int = 1000,
        context: dict | None = None,
        bootstrap_samples: int = 0,
        confidence: float = 0.95,
        bootstrap_seed: int = 0,
    ):
        from mmjax.evaluators import build_evaluator

        super().__init__(bootstrap_samples, confidence, bootstrap_seed)
        self.base = build_evaluator("disparity.base", dict(base), context)
        if not isinstance(self.base, ExampleEvaluator):
            raise ValueError(f"base type {base.get('type')!r} does not score single examples")
        self.attributes = tuple(attributes)
        self.scores = None if scores is None else tuple(scores)
        self.min_count = int(min_count)
        self.permutations = int(permutations)

    def score(self, batches: Iterable) -> Scored:
        """The base's table and the statistic of every group's metric, gap and ratio."""
        table = self.base.score(batches).table
        names = self.scores or tuple(table.scores)
        unknown = [n for n in names if n not in table.scores]
        missing = [a for a in self.attributes if a not in table.groups]
        if unknown or missing:
            raise ValueError(
                f"disparity: the base scores {sorted(table.scores)} and groups "
                f"{sorted(table.groups)} lack scores {unknown} / attributes {missing}"
            )
        groups = {
            a: np.where(table.groups[a] == "", MISSING, table.groups[a]) for a in self.attributes
        }
        levels = {a: sorted(set(g.tolist())) for a, g in groups.items()}
        constants = {}
        eligible = {}
        for s in names:
            scored = np.isfinite(table.scores[s])
            for a in self.attributes:
                counts = [int(np.sum(scored & (groups[a] == v))) for v in levels[a]]
                constants.update(
                    {f"{s}/{a}/{metric_name(v)}.count": float(c) for v, c in zip(levels[a], counts)}
                )
                eligible[s, a] = np.asarray(counts) >= self.min_count
                if self.permutations > 0:
                    constants[f"{s}/{a}.gap_p"] = permutation_p_value(
                        table.scores[s],
                        groups[a],
                        table.clusters,
                        eligible[s, a],
                        self.permutations,
                        self.intervals.seed,
                    )

        def statistic(weights: np.ndarray) -> dict[str, float]:
            metrics = {}
            for s in names:
                metrics[s] = weighted_mean(table.scores[s], weights)
                for a in self.attributes:
                    values = group_values(table.scores[s], groups[a], weights, levels[a])
                    for v, value in zip(levels[a], values):
                        metrics[f"{s}/{a}/{metric_name(v)}"] = float(value)
                    gap, ratio = gap_and_ratio(values[eligible[s, a]])
                    metrics[f"{s}/{a}.gap"], metrics[f"{s}/{a}.ratio"] = gap, ratio
            return metrics

        return Scored(table, statistic, constants)
