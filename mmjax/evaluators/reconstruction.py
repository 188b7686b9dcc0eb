"""Reconstruction metrics of an autoencoder, reconstruction grids, and linear probes on z.

`ReconstructionEvaluator` ("reconstruction"): for each source s of z (by default "joint",
"from_image" and "from_text", see `mmjax.tasks.autoencoding`) it scores the predictions
"image_<s>" [B, H, W, 3] in [0, 1] against the input image and "text_<s>" [B, L-1] (greedy
ids) against the input text [B, L] (BOS first):
  image_<s>_mse   mean over images of the per-pixel squared error (pixels in [0, 1]);
  image_<s>_psnr  mean over images of 10 log10(1 / that image's MSE), in dB;
  text_<s>_exact_match     fraction of texts generated exactly, token for token up to EOS;
  text_<s>_token_accuracy  teacher-forced: right target tokens / target tokens (from the
                           prediction "text_correct_<s>" [B]), when present;
  text_<s>_<caption metric>  BLEU-1..4, METEOR (with Java), ROUGE-L and CIDEr-D of the
                           generated texts against the input text as the one reference, for the
                           sources in `caption_metrics_for` (the cross-modal "from_image").
It also saves a grid of the first `grid_examples` examples as PNG in `<workdir>/<grid_dir>/`:
one row per example, columns input | reconstruction from image + text | from the image alone |
from the text alone, with the texts in a .txt file of the same name.

`LinearProbeEvaluator` ("linear_probe"): how linearly decodable the labels [B, T] are from each
embedding [B, D] among the predictions. The probe is a ridge-regularised least-squares
classifier (one-hot targets, closed form) on standardised features, scored by k-fold
cross-validation over the evaluated split: example i (in evaluation order) is in fold i mod k;
each fold is predicted by a probe fit on the other folds, with the ridge strength chosen by an
inner k-fold cross-validation on those folds only. So every example is scored once, by a probe
that never saw it, and no choice uses the scored examples. The majority class of the training
folds is the floor.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from mmjax.evaluators.captioning import caption_metrics, java_requirements

GRID_COLUMNS = ("input", "joint", "from_image", "from_text")


# ---------------------------------------------------------------------------------- metrics


def image_errors(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Per-image MSE [N] of reconstructions [N, H, W, C] in [0, 1] against images (uint8 ok)."""
    images = np.asarray(images)
    target = images.astype(np.float64) / 255.0 if images.dtype == np.uint8 else images
    diff = np.asarray(reconstructions, np.float64) - target
    return np.mean(np.square(diff).reshape(diff.shape[0], -1), axis=1)


def psnr(mse: np.ndarray, max_value: float = 1.0) -> np.ndarray:
    """PSNR 10 log10(max^2 / mse) in dB, elementwise (mse floored at 1e-10 to stay finite)."""
    return 10.0 * np.log10(max_value**2 / np.maximum(np.asarray(mse, np.float64), 1e-10))


def exact_matches(generated: np.ndarray, targets: np.ndarray, eos_id: int) -> np.ndarray:
    """Whether each generated row [N, T] equals its target [N, T'] token for token up to EOS.

    Tokens after the first EOS (padding) are ignored on both sides; a row without EOS is
    compared over its whole length.
    """

    def cut(row):
        row = list(np.asarray(row).tolist())
        return tuple(row[: row.index(eos_id) + 1] if eos_id in row else row)

    return np.array([cut(g) == cut(t) for g, t in zip(generated, targets)], bool)


# ---------------------------------------------------------------------------------- probes


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-8, std, 1.0)  # constant features become 0, not NaN
    return [(x - mean) / std for x in (train, *others)]


def ridge_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, l2: float, num_classes: int
) -> np.ndarray:
    """Fit a ridge least-squares classifier per task and predict: labels [N_test, T].

    Args:
      x_train: [N, D] features; standardised with the training statistics inside.
      y_train: [N, T] int labels in [0, num_classes) of T tasks.
      x_test: [M, D] features.
      l2: ridge strength on the weights (not on the bias).
      num_classes: classes per task.

    W = (X^T X + l2 I')^-1 X^T Y for X = [features, 1] and Y the one-hot labels [N, T * C]; a
    test example takes the class with the largest score in each task.
    """
    x_train, x_test = _standardise(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64))
    ones = np.ones((x_train.shape[0], 1))
    x1 = np.concatenate([x_train, ones], 1)
    penalty = np.full(x1.shape[1], float(l2))
    penalty[-1] = 0.0
    onehot = np.eye(num_classes)[np.asarray(y_train)].reshape(len(y_train), -1)  # [N, T*C]
    weights = np.linalg.solve(x1.T @ x1 + np.diag(penalty), x1.T @ onehot)
    scores = np.concatenate([x_test, np.ones((len(x_test), 1))], 1) @ weights
    return scores.reshape(len(x_test), -1, num_classes).argmax(-1)


def _choose_l2(x, y, l2s, folds, num_classes) -> float:
    """The ridge strength of `l2s` with the best mean k-fold accuracy on (x, y)."""
    if len(l2s) == 1:
        return float(l2s[0])
    fold = np.arange(len(x)) % folds
    scores = []
    for l2 in l2s:
        correct = 0.0
        for f in range(folds):
            train, test = fold != f, fold == f
            predicted = ridge_fit_predict(x[train], y[train], x[test], l2, num_classes)
            correct += (predicted == y[test]).sum()
        scores.append(correct)
    return float(l2s[int(np.argmax(scores))])  # ties go to the first (weakest) strength


def linear_probe_accuracy(
    features: np.ndarray,
    labels: np.ndarray,
    folds: int = 5,
    l2s: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-validated accuracy per task of a linear probe, and of the majority class.

    Args:
      features: [N, D] embeddings.
      labels: [N, T] int labels of T tasks.
      folds: k; example i is scored by the probe fit on the examples of the other folds.
      l2s: candidate ridge strengths, chosen per outer fold by an inner k-fold cross-validation
        on its training folds.
      num_classes: classes per task (default: the largest label + 1, at least 2).

    Returns:
      (probe accuracy [T], majority-class accuracy [T]), each over the N examples.
    """
    features = np.asarray(features, np.float64).reshape(len(features), -1)
    labels = np.asarray(labels).reshape(len(labels), -1)
    if len(features) < 2 * folds:
        raise ValueError(f"linear probe: {len(features)} examples are too few for {folds} folds")
    num_classes = num_classes or max(2, int(labels.max()) + 1)
    fold = np.arange(len(features)) % folds
    correct = np.zeros(labels.shape[1])
    majority = np.zeros(labels.shape[1])
    for f in range(folds):
        train, test = fold != f, fold == f
        l2 = _choose_l2(features[train], labels[train], l2s, folds, num_classes)
        predicted = ridge_fit_predict(
            features[train], labels[train], features[test], l2, num_classes
        )
        correct += (predicted == labels[test]).sum(0)
        counts = np.stack([(labels[train] == c).sum(0) for c in range(num_classes)])  # [C, T]
        majority += (labels[test] == counts.argmax(0)).sum(0)
    return correct / len(features), majority / len(features)


# ---------------------------------------------------------------------------------- grids


def _to_uint8(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def image_grid(rows: Sequence[Sequence[np.ndarray]], scale: int = 1, gap: int = 2) -> np.ndarray:
    """Tiles images [H, W, 3] (uint8, or float in [0, 1]) into one uint8 [R*(H+gap)+gap, ...].

    rows[r][c] is the tile at row r, column c; tiles are enlarged `scale` times (nearest pixel)
    and separated by `gap` pixels of mid grey.
    """
    tiles = [[np.kron(_to_uint8(t), np.ones((scale, scale, 1), np.uint8)) for t in r] for r in rows]
    h, w = tiles[0][0].shape[:2]
    cols = max(len(r) for r in tiles)
    grid = np.full((len(tiles) * (h + gap) + gap, cols * (w + gap) + gap, 3), 96, np.uint8)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            top, left = gap + i * (h + gap), gap + j * (w + gap)
            grid[top : top + h, left : left + w] = tile
    return grid


def _next_index(directory: str, prefix: str) -> int:
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)\.png$")
    found = [int(m.group(1)) for name in os.listdir(directory) if (m := pattern.match(name))]
    return max(found, default=-1) + 1


def save_grid(grid: np.ndarray, directory: str, prefix: str, lines: Sequence[str]) -> str:
    """Writes grid as <directory>/<prefix>_<k>.png (k: the next free number) plus a .txt.

    Numbered rather than named by step, since evaluators do not know the step; a resumed run
    continues the numbering instead of overwriting. Returns the PNG's path.
    """
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{prefix}_{_next_index(directory, prefix):04d}")
    Image.fromarray(grid).save(path + ".png.tmp", format="PNG")
    with open(path + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".png.tmp", path + ".png")
    return path + ".png"


# ---------------------------------------------------------------------------------- evaluators


class ReconstructionEvaluator:
    """Image and text reconstruction metrics per source of z, and a PNG grid (module docstring).

    Each batch holds `image_key` [B, H, W, 3], `text_key` [B, L] (BOS ... EOS, 0 = padding)
    and `_mask` [B]; predictions hold "image_<s>", "text_<s>" and optionally
    "text_correct_<s>" for each source s in `sources`.

    Attributes:
      tokenizer: has decode(ids) -> str (the task's, given by the trainer).
      workdir: where grids go (None: no grid; given by the trainer).
      sources: the sources of z to score.
      caption_metrics_for: sources whose texts also get caption metrics.
      grid_examples: examples in the grid (0: none).
      grid_scale: enlargement of the grid's tiles.
      grid_dir: the grids' folder under workdir.
      eos_id: end-of-sequence id.
      java: as in `caption_metrics` (None: METEOR when Java and pycocoevalcap are there).
    """

    CONTEXT = ("tokenizer", "workdir")  # given by the task (see evaluators.build_evaluator)

    @classmethod
    def requirements(cls, eval_config: dict) -> list:
        """What the config entry `eval_config` needs beyond the plain install (setup_check)."""
        if not eval_config.get("caption_metrics_for", ("from_image",)):
            return []
        return java_requirements(eval_config.get("java"))

    def __init__(
        self,
        tokenizer,
        workdir: str | None,
        image_key: str = "image",
        text_key: str = "text",
        sources: Sequence[str] = ("joint", "from_image", "from_text"),
        caption_metrics_for: Sequence[str] = ("from_image",),
        grid_examples: int = 8,
        grid_scale: int = 2,
        grid_dir: str = "reconstructions",
        eos_id: int = 3,
        java: bool | None = None,
    ):
        self.tokenizer = tokenizer
        self.workdir = workdir
        self.image_key = image_key
        self.text_key = text_key
        self.sources = tuple(sources)
        self.caption_metrics_for = tuple(caption_metrics_for)
        self.grid_examples = grid_examples
        self.grid_scale = grid_scale
        self.grid_dir = grid_dir
        self.eos_id = eos_id
        self.java = java

    def evaluate(self, batches: Iterable) -> dict[str, float]:
        """Scores an iterable of (batch, predictions) pairs of host NumPy dicts."""
        mse = {s: [] for s in self.sources}
        exact = {s: [] for s in self.sources}
        correct = {s: 0 for s in self.sources}
        candidates = {s: {} for s in self.caption_metrics_for}
        references, tokens, grid_rows, texts = {}, 0, [], []
        scored_tokens = set()  # the sources whose teacher-forced counts were predicted
        position = 0
        for batch, predicted in batches:
            keep = np.asarray(batch["_mask"], bool).reshape(-1)
            images = np.asarray(batch[self.image_key])[keep]
            text = np.asarray(batch[self.text_key])[keep]
            targets = text[:, 1:]
            tokens += int((targets != 0).sum())
            rows = {s: np.asarray(predicted[f"text_{s}"])[keep] for s in self.sources}
            recon = {s: np.asarray(predicted[f"image_{s}"])[keep] for s in self.sources}
            for s in self.sources:
                mse[s].append(image_errors(images, recon[s]))
                exact[s].append(exact_matches(rows[s], targets, self.eos_id))
                if f"text_correct_{s}" in predicted:
                    scored_tokens.add(s)
                    correct[s] += int(np.asarray(predicted[f"text_correct_{s}"])[keep].sum())
            for i in range(len(text)):
                key = position + i
                if self.caption_metrics_for:
                    references[key] = [self.tokenizer.decode(text[i])]
                for s in self.caption_metrics_for:
                    candidates[s][key] = self.tokenizer.decode(rows[s][i])
                if len(grid_rows) < self.grid_examples:
                    grid_rows.append(
                        [images[i]] + [recon[s][i] for s in GRID_COLUMNS[1:] if s in recon]
                    )
                    texts.append(f"{len(grid_rows) - 1} input: {self.tokenizer.decode(text[i])}")
                    texts += [f"  {s}: {self.tokenizer.decode(rows[s][i])}" for s in self.sources]
            position += len(text)

        metrics = {"num_examples": float(position)}
        for s in self.sources:
            errors = np.concatenate(mse[s])
            metrics[f"image_{s}_mse"] = float(errors.mean())
            metrics[f"image_{s}_psnr"] = float(psnr(errors).mean())
            metrics[f"text_{s}_exact_match"] = float(np.concatenate(exact[s]).mean())
            if s in scored_tokens:
                metrics[f"text_{s}_token_accuracy"] = correct[s] / max(tokens, 1)
        for s in self.caption_metrics_for:
            scores = caption_metrics(references, candidates[s], java=self.java)
            metrics.update({f"text_{s}_{name}": value for name, value in scores.items()})
        if self.workdir and grid_rows and _is_main_process():
            directory = os.path.join(self.workdir, self.grid_dir)
            header = "columns: " + " | ".join(GRID_COLUMNS[: len(grid_rows[0])])
            save_grid(image_grid(grid_rows, self.grid_scale), directory, "grid", [header] + texts)
        return metrics


def _is_main_process() -> bool:
    """Whether this is process 0: only it writes files (imported late: the metrics need no JAX)."""
    import jax

    return jax.process_index() == 0


class LinearProbeEvaluator:
    """Cross-validated linear-probe accuracy of embeddings (module docstring).

    Each batch holds `label_key` [B, T] int labels and `_mask` [B]; each feature key names a
    prediction [B, D]. Metrics, for each feature f: f_accuracy over all tasks, f_<group> over
    the tasks of each group; majority_accuracy and majority_<group> for the majority class;
    num_examples.

    Attributes:
      feature_keys: the predictions to probe; None: every prediction whose name starts "z_".
      label_key: the labels in the batch.
      groups: group name -> task indices (columns of the labels), for per-group accuracy.
      folds: k of the k-fold cross-validation.
      l2s: candidate ridge strengths (chosen by inner cross-validation).
    """

    def __init__(
        self,
        feature_keys: Sequence[str] | None = None,
        label_key: str = "probe_labels",
        groups: Mapping[str, Sequence[int]] | None = None,
        folds: int = 5,
        l2s: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
    ):
        self.feature_keys = None if feature_keys is None else tuple(feature_keys)
        self.label_key = label_key
        self.groups = {k: list(v) for k, v in (groups or {}).items()}
        self.folds = folds
        self.l2s = tuple(l2s)

    def evaluate(self, batches: Iterable) -> dict[str, float]:
        """Scores an iterable of (batch, predictions) pairs of host NumPy dicts."""
        features, labels = {}, []
        for batch, predicted in batches:
            keep = np.asarray(batch["_mask"], bool).reshape(-1)
            labels.append(np.asarray(batch[self.label_key])[keep])
            keys = self.feature_keys or [k for k in predicted if k.startswith("z_")]
            for key in keys:
                features.setdefault(key, []).append(np.asarray(predicted[key])[keep])
        labels = np.concatenate(labels)
        metrics = {"num_examples": float(len(labels))}

        def add(name, per_task):
            metrics[f"{name}_accuracy"] = float(per_task.mean())
            for group, tasks in self.groups.items():
                metrics[f"{name}_{group}"] = float(per_task[tasks].mean())

        majority = None
        for key, values in features.items():
            accuracy, majority = linear_probe_accuracy(
                np.concatenate(values), labels, self.folds, self.l2s
            )
            add(key, accuracy)
        if majority is not None:
            add("majority", majority)
        return metrics
