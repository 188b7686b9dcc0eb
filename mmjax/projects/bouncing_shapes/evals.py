"""Evaluator entries of bouncing-shapes video QA runs, for config files."""

from __future__ import annotations

from mmjax.data.catalog import evals_config
from mmjax.projects.bouncing_shapes.questions import (
    MOTION_FAMILIES,
    QUESTION_FAMILIES,
    STATIC_FAMILIES,
)


def answer_evals(batch_size: int, every: int, bootstrap_samples: int = 1000) -> dict:
    """Classification of the answers on validation (every `every` steps) and test (at the end).

    Accuracy overall, for each family of `questions.QUESTION_FAMILIES` (sliced by the
    questions' "family" field) and for the groups "motion" (`MOTION_FAMILIES`) and "static"
    (`STATIC_FAMILIES`), on batches of `batch_size` clips, each with a 95% bootstrap interval
    over clips (`bootstrap_samples` resamples; 0: none); num_classes comes from the task.
    """
    groups = {
        "motion": [QUESTION_FAMILIES.index(f) for f in MOTION_FAMILIES],
        "static": [QUESTION_FAMILIES.index(f) for f in STATIC_FAMILIES],
    }
    evaluator = dict(
        type="classification",
        batch_size=batch_size,
        label_key="answer",
        prediction_key="answer",
        slice_key="family",
        slice_names=list(QUESTION_FAMILIES),
        groups=groups,
        bootstrap_samples=bootstrap_samples,
    )
    return evals_config("bouncing_shapes", evaluator, every)
