"""Classification metrics: accuracy overall and per slice, macro precision, recall and F1.

All functions take flat NumPy arrays of equal length N: integer labels, integer predictions
and (optionally) integer slice ids; padded entries are removed by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mmjax.evaluators.examples import ExampleEvaluator, ExampleTable, Scored
from mmjax.evaluators.groups import batch_groups, concat_groups


def _weights(labels: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    return np.ones(labels.shape, np.float64) if weights is None else np.asarray(weights, float)


def accuracy(labels: np.ndarray, predictions: np.ndarray, weights=None) -> float:
    """Fraction of the N predictions equal to their labels (NaN when N = 0).

    `weights` float [N] counts example i w_i times (a bootstrap resample); None: once each.
    """
    weights = _weights(labels, weights)
    total = float(weights.sum())
    if labels.size == 0 or total <= 0:
        return float("nan")
    return float(np.dot(weights, labels == predictions) / total)


def macro_precision_recall_f1(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, weights=None
) -> dict[str, float]:
    """Unweighted means over classes of precision, recall and F1.

    Classes absent from both labels and predictions are left out of the means; a class that
    is predicted but never right has precision 0, one that occurs but is never predicted has
    recall 0 (and F1 0). `weights` as in `accuracy`.
    """
    weights = _weights(labels, weights)
    cells = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    confusion = np.bincount(cells, weights=weights, minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes)
    true_pos = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    present = (predicted + actual) > 0
    precision = np.divide(true_pos, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros(num_classes), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(num_classes), where=denom > 0)
    return {
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
        "f1": float(f1[present].mean()),
    }


def sliced_accuracy(
    labels: np.ndarray,
    predictions: np.ndarray,
    slices: np.ndarray,
    slice_names: Sequence[str],
    groups: Mapping[str, Sequence[int]] = (),
    weights=None,
) -> dict[str, float]:
    """Accuracy for each slice id (named by slice_names) and for each named group of ids."""
    weights = _weights(labels, weights)
    result = {}
    for index, name in enumerate(slice_names):
        keep = slices == index
        result[name] = accuracy(labels[keep], predictions[keep], weights[keep])
    for name, ids in dict(groups).items():
        keep = np.isin(slices, list(ids))
        result[name] = accuracy(labels[keep], predictions[keep], weights[keep])
    return result


class ClassificationEvaluator(ExampleEvaluator):
    """Runs a predict function over padded eval batches and scores its class predictions.

    Each batch holds `label_key` [B, ...] and optionally `slice_key` [B, ...] integer arrays
    and `_mask` [B]; the predict function returns a dict whose `prediction_key` entry has
    the label's shape. A negative label marks a padding entry (e.g. a VQA image with fewer
    questions than the batch's rows), left out like a masked example. Metrics: accuracy,
    accuracy/<slice or group>, precision, recall, f1 (each with its interval when
    bootstrap_samples > 0, resampling images: the batch rows), and count.

    `num_classes` may come from the task (its evaluator context) when the config leaves it out,
    e.g. an answer vocabulary built from the data. Per-example table: score "accuracy" (1/0),
    and the batch's "group/<attr>" values.
    """

    CONTEXT = ("num_classes",)

    def __init__(
        self,
        num_classes: int,
        label_key: str = "label",
        prediction_key: str = "label",
        slice_key: str | None = None,
        slice_names: Sequence[str] = (),
        groups: Mapping[str, Sequence[int]] | None = None,
        bootstrap_samples: int = 0,
        confidence: float = 0.95,
        bootstrap_seed: int = 0,
    ):
        super().__init__(bootstrap_samples, confidence, bootstrap_seed)
        self.num_classes = num_classes
        self.label_key = label_key
        self.prediction_key = prediction_key
        self.slice_key = slice_key
        self.slice_names = tuple(slice_names)
        self.groups = dict(groups or {})

    def collect(self, batches) -> dict[str, np.ndarray]:
        """Flat arrays over the kept entries: label, prediction, cluster, slice; and groups."""
        columns = {"label": [], "prediction": [], "cluster": [], "slice": []}
        group_parts, sizes, images = [], [], 0
        for batch, predicted in batches:
            mask = np.asarray(batch["_mask"], bool)
            label = np.asarray(batch[self.label_key])
            # Broadcast the per-example mask over extra dims (e.g. 20 questions per image).
            expand = mask.shape + (1,) * (label.ndim - 1)
            keep = np.broadcast_to(mask.reshape(expand), label.shape) & (label >= 0)
            image = np.broadcast_to((images + np.arange(mask.shape[0])).reshape(expand), keep.shape)
            images += mask.shape[0]
            columns["label"].append(label[keep])
            columns["prediction"].append(np.asarray(predicted[self.prediction_key])[keep])
            columns["cluster"].append(image[keep])
            if self.slice_key:
                columns["slice"].append(np.asarray(batch[self.slice_key])[keep])
            group_parts.append(batch_groups(batch, keep))
            sizes.append(int(keep.sum()))
        out = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in columns.items()}
        out["groups"] = concat_groups(group_parts, sizes)
        return out

    def score(self, batches) -> Scored:
        """The per-example table and the weighted statistic of every metric."""
        data = self.collect(batches)
        labels, predictions = data["label"], data["prediction"]

        def statistic(weights: np.ndarray) -> dict[str, float]:
            metrics = {"accuracy": accuracy(labels, predictions, weights)}
            metrics.update(
                macro_precision_recall_f1(labels, predictions, self.num_classes, weights)
            )
            if self.slice_key:
                per_slice = sliced_accuracy(
                    labels, predictions, data["slice"], self.slice_names, self.groups, weights
                )
                metrics.update({f"accuracy/{name}": v for name, v in per_slice.items()})
            return metrics

        table = ExampleTable(
            clusters=data["cluster"],
            scores={"accuracy": (labels == predictions).astype(np.float64)},
            groups=data["groups"],
        )
        return Scored(table, statistic, {"count": float(labels.size)})
