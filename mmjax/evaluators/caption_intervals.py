"""Caption metrics under example weights: the per-example form behind their intervals.

BLEU-n is a corpus score: it is computed from the sums over examples of each example's
sufficient statistics (`caption_scores.bleu_statistics`), so a bootstrap resample sums them
with the resample's weights. ROUGE-L and CIDEr-D are means of per-example scores, so a resample
weights those; a CIDEr-D example's score keeps the document frequencies of the whole evaluated
set (recomputing them for each resample would score a repeated image as a more common one).
METEOR comes from one Java run over the corpus and gets no interval.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np

from mmjax.evaluators import caption_scores
from mmjax.evaluators.bootstrap import weighted_mean
from mmjax.evaluators.examples import ExampleTable, Scored

BLEU_ORDER = 4


def scored_captions(
    gts: Mapping[Hashable, list[str]],
    res: Mapping[Hashable, list[str]],
    groups: dict[str, np.ndarray],
    meteor: float | None = None,
) -> Scored:
    """The `Scored` of N tokenized examples (keys in the order of `gts`).

    Args:
      gts: key -> tokenized references; res: key -> [tokenized candidate].
      groups: attribute -> str [N] group values of the examples.
      meteor: the corpus METEOR, when computed (a constant: no interval).

    Metrics: bleu_1..bleu_4, rouge_l, cider_d (statistic), meteor, num_examples (constants).
    Table: one row per example (its own cluster), scores rouge_l and cider_d.
    """
    keys = list(gts)
    statistics = caption_scores.bleu_statistics(gts, res, BLEU_ORDER)
    correct = np.asarray([s[0] for s in statistics], np.float64).reshape(-1, BLEU_ORDER)
    guess = np.asarray([s[1] for s in statistics], np.float64).reshape(-1, BLEU_ORDER)
    lengths = np.asarray([s[2:] for s in statistics], np.float64).reshape(-1, 2)
    scores = {
        "rouge_l": np.asarray(caption_scores.rouge_l(gts, res)[1], np.float64),
        "cider_d": np.asarray(caption_scores.cider_d(gts, res)[1], np.float64),
    }

    def statistic(weights: np.ndarray) -> dict[str, float]:
        test_len, ref_len = weights @ lengths
        bleu = caption_scores.bleu_of_statistics(
            weights @ correct, weights @ guess, test_len, ref_len
        )
        metrics = {f"bleu_{k + 1}": float(v) for k, v in enumerate(bleu)}
        metrics.update({name: weighted_mean(v, weights) for name, v in scores.items()})
        return metrics

    constants = {"num_examples": float(len(keys))}
    if meteor is not None:
        constants["meteor"] = float(meteor)
    table = ExampleTable(np.arange(len(keys)), scores, groups)
    return Scored(table, statistic, constants)
