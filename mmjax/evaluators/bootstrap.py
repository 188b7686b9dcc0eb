"""Bootstrap confidence intervals of evaluation metrics, resampling whole clusters (images).

A metric is computed by a `statistic(weights) -> {name: value}` over N scored examples, where
weights float [N] says how many times each example counts (all ones: the metric itself). One
bootstrap resample draws C clusters (the images of the split) with replacement out of the C
there are, and gives each example the number of times its cluster was drawn; questions or
captions of one image are resampled together, because they are not independent (one image
that a model misreads fails all its questions).

The interval is the percentile interval of the statistic over the resamples: the
(1 - confidence) / 2 and (1 + confidence) / 2 quantiles. A resample may leave a small slice
empty (its value NaN); such resamples are left out of that metric's interval.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

CI_LOW, CI_HIGH = ".ci_low", ".ci_high"  # suffixes of the interval's keys: "accuracy.ci_low"


@dataclasses.dataclass(frozen=True)
class IntervalOptions:
    """How an evaluator computes intervals (its config keys, see `from_config`).

    Attributes:
      samples: bootstrap resamples; 0 turns intervals off.
      confidence: the interval's nominal coverage, in (0, 1).
      seed: the resampling seed (intervals are reproducible).
    """

    samples: int = 0
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if int(self.samples) < 0:
            raise ValueError(f"bootstrap_samples={self.samples} must be >= 0")
        if not 0 < float(self.confidence) < 1:
            raise ValueError(f"confidence={self.confidence} must lie in (0, 1)")

    @classmethod
    def from_config(
        cls, bootstrap_samples: int = 0, confidence: float = 0.95, bootstrap_seed: int = 0
    ) -> IntervalOptions:
        """From an evaluator's config keys bootstrap_samples, confidence, bootstrap_seed."""
        return cls(int(bootstrap_samples), float(confidence), int(bootstrap_seed))


def dense_clusters(clusters: np.ndarray) -> tuple[np.ndarray, int]:
    """(cluster index 0..C-1 of each example [N], C) for arbitrary cluster labels [N]."""
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    return inverse.reshape(-1), len(labels)


def resample_weights(
    clusters: np.ndarray, samples: int, seed: int, chunk: int = 64
) -> Iterator[np.ndarray]:
    """Yields example weights float [b, N], b <= chunk, `samples` rows in all.

    Row r gives each example the number of times its cluster was drawn in resample r (C
    draws with replacement out of the C clusters). Chunks are smaller for large N, so that one
    holds at most 2^24 weights (128 MiB).
    """
    index, count = dense_clusters(clusters)
    chunk = max(1, min(chunk, 2**24 // max(len(index), 1)))
    rng = np.random.default_rng(seed)
    done = 0
    while done < samples:
        b = min(chunk, samples - done)
        draws = rng.integers(0, count, size=(b, count))
        # Per-row bincount in one call: row r's draws are offset by r * count.
        flat = (draws + count * np.arange(b)[:, None]).ravel()
        drawn = np.bincount(flat, minlength=b * count).reshape(b, count)
        yield drawn[:, index].astype(np.float64)
        done += b


def bootstrap_distribution(
    statistic: Callable[[np.ndarray], dict[str, float]],
    clusters: np.ndarray,
    samples: int,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Name -> float [samples]: `statistic` of each cluster-resample of the N examples."""
    values: dict[str, list[float]] = {}
    for weights in resample_weights(clusters, samples, seed):
        for row in weights:
            for name, value in statistic(row).items():
                values.setdefault(name, []).append(value)
    return {name: np.asarray(v, np.float64) for name, v in values.items()}


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The (1-c)/2 and (1+c)/2 quantiles of the finite `values`; NaNs when none is finite."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], dict[str, float]],
    clusters: np.ndarray,
    options: IntervalOptions,
) -> dict[str, tuple[float, float]]:
    """Name -> (low, high): the percentile interval of each metric `statistic` returns."""
    if options.samples <= 0 or len(clusters) == 0:
        return {}
    distribution = bootstrap_distribution(statistic, clusters, options.samples, options.seed)
    return {
        name: percentile_interval(values, options.confidence)
        for name, values in distribution.items()
    }


def with_intervals(metrics: dict[str, float], intervals: dict) -> dict[str, float]:
    """`metrics` with "<name>.ci_low" and "<name>.ci_high" after each metric that has one."""
    out = {}
    for name, value in metrics.items():
        out[name] = value
        if name in intervals:
            out[name + CI_LOW], out[name + CI_HIGH] = intervals[name]
    return out


def weighted_mean(values: np.ndarray, weights: np.ndarray, keep: np.ndarray | None = None):
    """sum(w x) / sum(w) over the examples with finite x (and `keep`); NaN when none counts."""
    values = np.asarray(values, np.float64)
    use = np.isfinite(values) if keep is None else np.isfinite(values) & keep
    total = float(np.sum(weights[use]))
    return float(np.dot(weights[use], values[use]) / total) if total > 0 else float("nan")
