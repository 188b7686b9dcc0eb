"""Per-example scores of an evaluation: the base of intervals, comparisons and disparity.

An evaluator built on `ExampleEvaluator` first scores every example (`score(batches)` ->
`Scored`), then computes its metrics from those scores under example weights, so the same
function gives the metric (all weights 1) and each bootstrap resample (`mmjax.evaluators.
bootstrap`). Its `ExampleTable` is kept as `evaluator.last_examples`, and the trainer writes it
as `workdir/eval/<eval name>_step<step>.npz` (`save_examples`), which `python -m mmjax.compare`
reads:

  cluster          int64 [N]   the image each example belongs to (its index in the split)
  score/<metric>   float [N]   a per-example score whose mean over the finite rows is the metric
                               (accuracy: 1/0 right; vqa_accuracy: the soft score; Recall@K:
                               1/0 hit; NaN where the metric does not apply to the row)
  group/<attr>     str [N]     the example's value of a grouping attribute (colour, shape, ...)
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Callable, Iterable

import numpy as np

from mmjax.evaluators.bootstrap import IntervalOptions, bootstrap_intervals, with_intervals

EVAL_DIR = "eval"
_FILE = re.compile(r"^(?P<name>.+)_step(?P<step>\d+)\.npz$")


@dataclasses.dataclass
class ExampleTable:
    """The N scored examples of one evaluation (see the module docstring).

    Attributes:
      clusters: int [N], the image of each example.
      scores: metric -> float [N] per-example scores (NaN: not applicable to the row).
      groups: attribute -> str [N] group values.
    """

    clusters: np.ndarray
    scores: dict[str, np.ndarray]
    groups: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clusters)


@dataclasses.dataclass
class Scored:
    """What an evaluator's `score` returns.

    Attributes:
      table: the per-example table.
      statistic: example weights float [N] -> the evaluator's metrics under those weights.
      constants: metrics with no interval (counts, chance levels, corpus scores).
    """

    table: ExampleTable
    statistic: Callable[[np.ndarray], dict[str, float]]
    constants: dict[str, float] = dataclasses.field(default_factory=dict)


def summarize(scored: Scored, options: IntervalOptions) -> dict[str, float]:
    """The metrics (statistic at unit weights), their intervals when asked, then constants."""
    metrics = scored.statistic(np.ones(len(scored.table), np.float64))
    intervals = bootstrap_intervals(scored.statistic, scored.table.clusters, options)
    return {**with_intervals(metrics, intervals), **scored.constants}


class ExampleEvaluator:
    """Base of evaluators that score each example; subclasses implement `score(batches)`.

    Config keys it adds to every subclass: bootstrap_samples (0: no intervals), confidence
    (0.95), bootstrap_seed (0). `evaluate` returns the metrics with "<metric>.ci_low" and
    "<metric>.ci_high" when bootstrap_samples > 0, and keeps the table in `last_examples`.
    """

    def __init__(self, bootstrap_samples: int = 0, confidence: float = 0.95, bootstrap_seed=0):
        self.intervals = IntervalOptions.from_config(bootstrap_samples, confidence, bootstrap_seed)
        self.last_examples: ExampleTable | None = None

    def score(self, batches: Iterable) -> Scored:
        """Scores every example of an iterable of (batch, predictions) pairs."""
        raise NotImplementedError

    def evaluate(self, batches: Iterable) -> dict[str, float]:
        """Scores an iterable of (batch, predictions) pairs of host NumPy dicts."""
        scored = self.score(batches)
        self.last_examples = scored.table
        return summarize(scored, self.intervals)


def example_file(workdir: str, name: str, step: int) -> str:
    """workdir/eval/<name>_step<step>.npz."""
    return os.path.join(workdir, EVAL_DIR, f"{name}_step{int(step)}.npz")


def save_table(path: str, table: ExampleTable) -> None:
    """Writes `table` to `path` (.npz, atomically: a temporary file renamed into place)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {"cluster": np.asarray(table.clusters, np.int64)}
    arrays.update({f"score/{k}": np.asarray(v, np.float64) for k, v in table.scores.items()})
    arrays.update({f"group/{k}": np.asarray(v, str) for k, v in table.groups.items()})
    with open(path + ".tmp", "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(path + ".tmp", path)


def load_table(path: str) -> ExampleTable:
    """Reads a table written by `save_table`; FileNotFoundError naming `path`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no per-example file {path}")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return ExampleTable(
        clusters=arrays.pop("cluster"),
        scores={k[6:]: v for k, v in arrays.items() if k.startswith("score/")},
        groups={k[6:]: v for k, v in arrays.items() if k.startswith("group/")},
    )


def saved_steps(workdir: str, name: str) -> list[int]:
    """The steps at which evaluation `name` saved its examples in `workdir`, ascending."""
    steps = []
    for path in glob.glob(os.path.join(workdir, EVAL_DIR, "*.npz")):
        match = _FILE.match(os.path.basename(path))
        if match and match["name"] == name:
            steps.append(int(match["step"]))
    return sorted(steps)


def save_examples(evaluator, workdir: str, name: str, step: int, writer: bool = True) -> None:
    """Writes the evaluator's `last_examples` (when it keeps them) for evaluation `name`."""
    table = getattr(evaluator, "last_examples", None)
    if writer and table is not None and getattr(evaluator, "save_examples", True):
        save_table(example_file(workdir, name, step), table)
