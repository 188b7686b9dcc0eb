"""VQAv2 accuracy: the official soft score of an answer against the humans' answers.

For a question with n human answers of which m equal the prediction (after the official
normalisation, `mmjax.data.vqa_normalize`), the score averages, over the n ways of leaving one
human answer out, min(#matches among the other n - 1 / 3, 1):

    score = (m * min((m - 1) / d, 1) + (n - m) * min(m / d, 1)) / n,   d = 3

which is the official formula for VQAv2 and OK-VQA (n = 10). For fewer answers, which custom
data may have, d = min(3, n - 1) so that agreeing with every human still scores 1 (for n >= 4
this is the official formula), and a single answer (n = 1) is scored by exact match.

In mmjax the human answers arrive as ids of the run's answer vocabulary, whose entries are
normalised answers (`AnswerVocabulary` with normalization="vqa"), so equal ids are equal
normalised answers; a human answer outside the vocabulary never matches a prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mmjax.data.vqa_normalize import normalize_vqa_answer
from mmjax.evaluators.bootstrap import weighted_mean
from mmjax.evaluators.examples import ExampleEvaluator, ExampleTable, Scored
from mmjax.evaluators.groups import batch_groups, concat_groups, metric_name


def soft_scores(matches, answers, xp=np):
    """The score of the module docstring for m = `matches` and n = `answers` (arrays alike).

    Works on NumPy (xp=np) and JAX (xp=jax.numpy) arrays; NaN-free: n = 0 scores 0.
    """
    m = matches.astype(xp.float32) if xp is not np else np.asarray(matches, np.float64)
    n = answers.astype(m.dtype) if xp is not np else np.asarray(answers, np.float64)
    d = xp.maximum(xp.minimum(n - 1, 3), 1)
    leave_one_out = (m * xp.minimum((m - 1) / d, 1) + (n - m) * xp.minimum(m / d, 1)) / (
        xp.maximum(n, 1)
    )
    exact = xp.minimum(m, 1)
    return xp.where(n >= 2, leave_one_out, exact)


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """The soft score of answer text `prediction` against the humans' answer texts."""
    if not human_answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    predicted = normalize_vqa_answer(prediction)
    matches = sum(normalize_vqa_answer(a) == predicted for a in human_answers)
    return float(soft_scores(np.asarray(matches), np.asarray(len(human_answers))))


class VQAAccuracyEvaluator(ExampleEvaluator):
    """VQAv2 accuracy ("vqa_accuracy") of predicted answer ids against the humans' answer ids.

    Each batch holds `answers_key` int [B, Q, A] (the A human answers of each question as
    vocabulary ids; -1 pads), or, when it has none, `label_key` int [B, Q] as the one human
    answer; and `_mask` [B]. The predictions hold `prediction_key` int [B, Q]. A question with
    no human answer (padding) is left out.

    Metrics: vqa_accuracy overall and vqa_accuracy/<type> for each value of the batch's
    "group/<type_attribute>" (VQAv2's "yes/no", "number", "other" named yes_no, number,
    other), each with its interval when bootstrap_samples > 0 (resampling images); count.
    """

    def __init__(
        self,
        answers_key: str = "answers",
        label_key: str = "answer",
        prediction_key: str = "answer",
        type_attribute: str = "answer_type",
        bootstrap_samples: int = 0,
        confidence: float = 0.95,
        bootstrap_seed: int = 0,
    ):
        super().__init__(bootstrap_samples, confidence, bootstrap_seed)
        self.answers_key = answers_key
        self.label_key = label_key
        self.prediction_key = prediction_key
        self.type_attribute = type_attribute

    def _humans(self, batch) -> np.ndarray:
        if self.answers_key in batch:
            return np.asarray(batch[self.answers_key])
        return np.asarray(batch[self.label_key])[..., None]

    def score(self, batches: Iterable) -> Scored:
        """The per-question soft scores and the weighted statistic of every metric."""
        scores, clusters, group_parts, sizes, images = [], [], [], [], 0
        for batch, predicted in batches:
            mask = np.asarray(batch["_mask"], bool)
            humans = self._humans(batch)  # [B, Q, A]
            prediction = np.asarray(predicted[self.prediction_key])  # [B, Q]
            count = (humans >= 0).sum(-1)
            matches = ((humans == prediction[..., None]) & (humans >= 0)).sum(-1)
            keep = mask[:, None] & (count > 0)
            image = np.broadcast_to((images + np.arange(mask.shape[0]))[:, None], keep.shape)
            images += mask.shape[0]
            scores.append(soft_scores(matches, count)[keep])
            clusters.append(image[keep])
            group_parts.append(batch_groups(batch, keep))
            sizes.append(int(keep.sum()))
        table = ExampleTable(
            clusters=np.concatenate(clusters) if clusters else np.zeros(0, np.int64),
            scores={"vqa_accuracy": np.concatenate(scores) if scores else np.zeros(0)},
            groups=concat_groups(group_parts, sizes),
        )
        types = table.groups.get(self.type_attribute)
        values = table.scores["vqa_accuracy"]

        def statistic(weights: np.ndarray) -> dict[str, float]:
            metrics = {"vqa_accuracy": weighted_mean(values, weights)}
            for kind in sorted(set(types.tolist())) if types is not None else ():
                if kind:
                    key = f"vqa_accuracy/{metric_name(kind)}"
                    metrics[key] = weighted_mean(values, weights, types == kind)
            return metrics

        return Scored(table, statistic, {"count": float(len(values))})
