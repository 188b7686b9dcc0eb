"""Classification metrics: accuracy overall and per slice, macro precision, recall and F1.

All functions take flat NumPy arrays of equal length N: integer labels, integer predictions
and (optionally) integer slice ids; padded entries are removed by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of the N predictions equal to their labels (NaN when N = 0)."""
    if labels.size == 0:
        return float("nan")
    return float(np.mean(labels == predictions))


def macro_precision_recall_f1(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> dict[str, float]:
    """Unweighted means over classes of precision, recall and F1.

    Classes absent from both labels and predictions are left out of the means; a class that
    is predicted but never right has precision 0, one that occurs but is never predicted has
    recall 0 (and F1 0).
    """
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
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
) -> dict[str, float]:
    """Accuracy for each slice id (named by slice_names) and for each named group of ids."""
    result = {}
    for index, name in enumerate(slice_names):
        keep = slices == index
        result[name] = accuracy(labels[keep], predictions[keep])
    for name, ids in dict(groups).items():
        keep = np.isin(slices, list(ids))
        result[name] = accuracy(labels[keep], predictions[keep])
    return result


class ClassificationEvaluator:
    """Runs a predict function over padded eval batches and scores its class predictions.

    Each batch holds `label_key` [B, ...] and optionally `slice_key` [B, ...] integer arrays
    and `_mask` [B]; the predict function returns a dict whose `prediction_key` entry has
    the label's shape. A negative label marks a padding entry (e.g. a VQA image with fewer
    questions than the batch's rows), left out like a masked example. Metrics: accuracy,
    accuracy/<slice or group>, precision, recall, f1.

    `num_classes` may come from the task (its evaluator context) when the config leaves it out,
    e.g. an answer vocabulary built from the data.
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
    ):
        self.num_classes = num_classes
        self.label_key = label_key
        self.prediction_key = prediction_key
        self.slice_key = slice_key
        self.slice_names = tuple(slice_names)
        self.groups = dict(groups or {})

    def evaluate(self, batches) -> dict[str, float]:
        """Scores an iterable of (batch, predictions) pairs of host NumPy dicts."""
        labels, predictions, slices = [], [], []
        for batch, predicted in batches:
            mask = np.asarray(batch["_mask"], bool)
            label = np.asarray(batch[self.label_key])
            # Broadcast the per-example mask over extra dims (e.g. 20 questions per image).
            keep = np.broadcast_to(mask.reshape(mask.shape + (1,) * (label.ndim - 1)), label.shape)
            keep = keep & (label >= 0)
            labels.append(label[keep])
            predictions.append(np.asarray(predicted[self.prediction_key])[keep])
            if self.slice_key:
                slices.append(np.asarray(batch[self.slice_key])[keep])
        labels = np.concatenate(labels)
        predictions = np.concatenate(predictions)
        metrics = {"accuracy": accuracy(labels, predictions), "count": float(labels.size)}
        metrics.update(macro_precision_recall_f1(labels, predictions, self.num_classes))
        if self.slice_key:
            per_slice = sliced_accuracy(
                labels, predictions, np.concatenate(slices), self.slice_names, self.groups
            )
            metrics.update({f"accuracy/{name}": value for name, value in per_slice.items()})
        return metrics
