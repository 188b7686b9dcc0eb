"""Zero-shot classification with a dual encoder: classes named in words, never trained on.

As big_vision's `discriminative_classifier` and open_clip's `zero_shot_classifier`: every class
name is put into every prompt template ("a photo of a {}."); the C x T prompts are embedded by
the text tower and L2-normalised, each class's T embeddings averaged and normalised again
(prompt ensembling): class embeddings [C, D]. An image is classified by the cosine similarity
of its embedding to each class embedding; top-K accuracy counts an image as right when its
label is among the K best-scored classes. Ties count against the model (the label's rank is
the number of other classes scored at least as high), as in the retrieval evaluator, so a
model that scores every class alike gets no credit for an arbitrary tie-break.

The evaluator embeds its prompts itself: the trainer calls `use_params(params)` before each
evaluation (an evaluator with that method), and the task supplies `text_embedder`, a function
(params, texts) -> unit-norm embeddings [N, D] (the retrieval task's `embed_class_texts`).
Labels come from the batch: `label_key`, int [B] or [B, T] (then `label_index` picks a
column), negative for an image without a label (left out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def prompts(classes: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every class in every template, class-major: [C * T] texts ("{}" marks the class)."""
    for template in templates:
        if "{}" not in template:
            raise ValueError(f"zero_shot template {template!r} has no {{}} for the class name")
    return [template.format(name) for name in classes for template in templates]


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(text_embeddings: np.ndarray, num_classes: int) -> np.ndarray:
    """Prompt-ensembled class embeddings [C, D] from prompt embeddings [C * T, D], class-major.

    Each prompt's embedding is normalised, the T of a class averaged, the mean normalised.
    """
    per_class = _normalize(np.asarray(text_embeddings, np.float64)).reshape(
        num_classes, -1, text_embeddings.shape[-1]
    )
    return _normalize(per_class.mean(axis=1))


def label_ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pessimistic rank [N] of each label: the number of other classes scored >= it."""
    right = np.take_along_axis(scores, labels[:, None], axis=1)  # [N, 1]
    others = np.ones_like(scores, bool)
    np.put_along_axis(others, labels[:, None], False, axis=1)
    return np.sum(others & (scores >= right), axis=1)


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """{k: fraction of rows whose label ranks < k} for scores [N, C] and labels int [N]."""
    ranks = label_ranks(scores, labels)
    return {int(k): float(np.mean(ranks < k)) if len(ranks) else float("nan") for k in ks}


class ZeroShotEvaluator:
    """Zero-shot top-K accuracy of a dual encoder's image embeddings (module docstring).

    Metrics: "top<k>" for each k of `ks` not above the number of classes, "chance_top<k>"
    (k / C) beside each, and "num_examples".

    Attributes:
      classes: the class names, in label order (label i is classes[i]).
      templates: prompt templates, each with one "{}" for the class name.
      label_key: the batch entry holding the labels.
      label_index: the column of a [B, T] label array (None for [B] labels).
      ks: the K of top-K accuracy.
      embedding_key: the prediction holding the image embeddings [B, D].
      text_embedder: (params, texts) -> [N, D] text embeddings, from the task.
    """

    CONTEXT = ("text_embedder",)  # given by the task (see evaluators.build_evaluator)

    def __init__(
        self,
        classes: Sequence[str],
        templates: Sequence[str] = ("{}",),
        label_key: str = "label",
        label_index: int | None = None,
        ks: Sequence[int] = (1, 5),
        embedding_key: str = "image_embedding",
        text_embedder: Callable | None = None,
    ):
        if len(classes) < 2:
            raise ValueError(f"zero_shot needs at least two classes, got {list(classes)}")
        self.classes = [str(c) for c in classes]
        self.templates = [str(t) for t in templates]
        self.prompts = prompts(self.classes, self.templates)
        self.label_key = label_key
        self.label_index = label_index
        self.ks = tuple(int(k) for k in ks if 0 < int(k) <= len(self.classes))
        self.embedding_key = embedding_key
        self.text_embedder = text_embedder
        self.class_embeddings = None

    def use_params(self, params) -> None:
        """Embeds the prompts with `params` (the trainer calls it before each evaluation)."""
        embedded = np.asarray(self.text_embedder(params, self.prompts))
        self.class_embeddings = class_embeddings(embedded, len(self.classes))

    def _labels(self, batch) -> np.ndarray:
        labels = np.asarray(batch[self.label_key])
        if self.label_index is not None:
            labels = labels[:, self.label_index]
        if labels.ndim != 1:
            raise ValueError(
                f"zero_shot: batch[{self.label_key!r}] is {labels.shape}; give label_index to "
                "pick a column"
            )
        if labels.size and labels.max() >= len(self.classes):
            raise ValueError(
                f"zero_shot: label {labels.max()} is outside the {len(self.classes)} classes"
            )
        return labels.astype(np.int64)

    def evaluate(self, batches) -> dict[str, float]:
        """Scores an iterable of (batch, predictions) pairs of host NumPy dicts."""
        if self.class_embeddings is None:
            raise ValueError("zero_shot: use_params(params) must embed the prompts first")
        scores, labels = [], []
        for batch, predicted in batches:
            keep = np.asarray(batch["_mask"], bool).reshape(-1)
            batch_labels = self._labels(batch)
            keep &= batch_labels >= 0
            images = _normalize(np.asarray(predicted[self.embedding_key], np.float64))[keep]
            scores.append(images @ self.class_embeddings.T)
            labels.append(batch_labels[keep])
        scores = np.concatenate(scores) if scores else np.zeros((0, len(self.classes)))
        labels = np.concatenate(labels) if labels else np.zeros((0,), np.int64)
        metrics = {"num_examples": float(len(labels))}
        for k, accuracy in top_k_accuracy(scores, labels, self.ks).items():
            metrics[f"top{k}"] = accuracy
            metrics[f"chance_top{k}"] = k / len(self.classes)
        return metrics
