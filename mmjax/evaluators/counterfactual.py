"""A counterfactual probe of VQA: whether answers follow the image when a question changes.

The evaluation reads a probe split ("<split>:<probe>", `Dataset.eval_source`): the split's
questions with one word changed (Sort-of-CLEVR's "color_swap": the colour word swapped for
another colour of the same scene), their answers recomputed from the image, and the answers
before the change kept as "original_answer". For the questions whose right answer changed,
a model that reads the image and the new word gives the new answer ("follows_image"); one that
answers from something else than the changed word (a language prior, the old object) tends to
give the old one ("keeps_original").

`CounterfactualEvaluator` ("counterfactual") scores, per question (batch `label_key` and
`original_key` int [B, Q], -1 pads; predictions `prediction_key` int [B, Q]):

  accuracy        on every changed question;
  follows_image   on those whose answer changed: the prediction is the new answer;
  keeps_original  on those whose answer changed: the prediction is the old answer;
  changed         the fraction of questions whose answer changed (a property of the probe);

each with its interval when bootstrap_samples > 0 (images resampled); count.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mmjax.evaluators.bootstrap import weighted_mean
from mmjax.evaluators.examples import ExampleEvaluator, ExampleTable, Scored
from mmjax.evaluators.groups import batch_groups, concat_groups


class CounterfactualEvaluator(ExampleEvaluator):
    """Scores a model on a counterfactual probe split (see the module docstring)."""

    def __init__(
        self,
        label_key: str = "answer",
        original_key: str = "original_answer",
        prediction_key: str = "answer",
        bootstrap_samples: int = 0,
        confidence: float = 0.95,
        bootstrap_seed: int = 0,
    ):
        super().__init__(bootstrap_samples, confidence, bootstrap_seed)
        self.label_key = label_key
        self.original_key = original_key
        self.prediction_key = prediction_key

    def score(self, batches: Iterable) -> Scored:
        """The per-question outcomes and the weighted statistic of every metric."""
        columns = {"label": [], "original": [], "prediction": [], "cluster": []}
        group_parts, sizes, images = [], [], 0
        for batch, predicted in batches:
            if self.original_key not in batch:
                raise ValueError(
                    f"counterfactual: the batch has no {self.original_key!r}; evaluate a probe "
                    "split such as split='test:color_swap'"
                )
            mask = np.asarray(batch["_mask"], bool)
            label = np.asarray(batch[self.label_key])
            keep = mask[:, None] & (label >= 0)
            image = np.broadcast_to((images + np.arange(mask.shape[0]))[:, None], keep.shape)
            images += mask.shape[0]
            columns["label"].append(label[keep])
            columns["original"].append(np.asarray(batch[self.original_key])[keep])
            columns["prediction"].append(np.asarray(predicted[self.prediction_key])[keep])
            columns["cluster"].append(image[keep])
            group_parts.append(batch_groups(batch, keep))
            sizes.append(int(keep.sum()))
        data = {k: np.concatenate(v) for k, v in columns.items()}
        changed = data["label"] != data["original"]
        nan = np.full(changed.shape, np.nan)
        scores = {
            "accuracy": (data["prediction"] == data["label"]).astype(np.float64),
            "follows_image": np.where(changed, data["prediction"] == data["label"], nan),
            "keeps_original": np.where(changed, data["prediction"] == data["original"], nan),
        }
        table = ExampleTable(data["cluster"], scores, concat_groups(group_parts, sizes))

        def statistic(weights: np.ndarray) -> dict[str, float]:
            metrics = {name: weighted_mean(values, weights) for name, values in scores.items()}
            metrics["changed"] = weighted_mean(changed.astype(np.float64), weights)
            return metrics

        return Scored(table, statistic, {"count": float(changed.size)})
