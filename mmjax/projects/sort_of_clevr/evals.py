"""Evaluator entries of Sort-of-CLEVR runs, for config files."""

from __future__ import annotations

from mmjax.data.catalog import evals_config
from mmjax.projects.sort_of_clevr.baselines import NON_RELATIONAL, RELATIONAL
from mmjax.projects.sort_of_clevr.scenes import SUBTYPES


def answer_evals(batch_size: int, every: int) -> dict:
    """Classification of the answers on validation (every `every` steps) and test (at the end).

    Accuracy overall, for each question type of `scenes.SUBTYPES` and for the non-relational
    and relational groups, on batches of `batch_size` images; num_classes comes from the task.
    """
    groups = {
        "non_relational": [SUBTYPES.index(s) for s in NON_RELATIONAL],
        "relational": [SUBTYPES.index(s) for s in RELATIONAL],
    }
    evaluator = dict(
        type="classification",
        batch_size=batch_size,
        label_key="answer",
        prediction_key="answer",
        slice_key="subtype",
        slice_names=list(SUBTYPES),
        groups=groups,
    )
    return evals_config("sort_of_clevr", evaluator, every)
