"""Evaluator entries of Sort-of-CLEVR runs, for config files."""

from __future__ import annotations

from mmjax.data.catalog import evals_config
from mmjax.projects.sort_of_clevr.baselines import NON_RELATIONAL, RELATIONAL
from mmjax.projects.sort_of_clevr.scenes import SUBTYPES


def answer_evals(batch_size: int, every: int, bootstrap_samples: int = 1000) -> dict:
    """Classification of the answers on validation (every `every` steps) and test (at the end).

    Accuracy overall, for each question type of `scenes.SUBTYPES` and for the non-relational
    and relational groups, on batches of `batch_size` images, each with a 95% bootstrap interval
    over scenes (`bootstrap_samples` resamples; 0: none); num_classes comes from the task. At
    the end also, on test: "test_disparity", the accuracy by the colour, shape and quadrant of
    the object a question is about; "test_color_swap", the counterfactual probe (each question
    asked about another colour of its scene).
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
        bootstrap_samples=bootstrap_samples,
    )
    evals = evals_config("sort_of_clevr", evaluator, every)
    base = dict(type="classification", label_key="answer", prediction_key="answer")
    test = evals["test"]["split"]
    evals["test_disparity"] = dict(
        type="disparity",
        base=base,
        attributes=["color", "shape", "quadrant"],
        bootstrap_samples=bootstrap_samples,
        split=test,
        batch_size=batch_size,
        every=0,
    )
    evals["test_color_swap"] = dict(
        type="counterfactual",
        bootstrap_samples=bootstrap_samples,
        split=f"{test}:color_swap",
        batch_size=batch_size,
        every=0,
    )
    return evals
