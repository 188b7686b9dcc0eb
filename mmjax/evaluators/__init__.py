"""Evaluators, chosen by `config.evals.<name>.type`.

An evaluator is built from the keyword arguments of its config entry (less the keys the
trainer reads: type, split, batch_size, every) and scores (batch, predictions) pairs.
"""

from mmjax.evaluators.captioning import CaptionEvaluator
from mmjax.evaluators.classification import ClassificationEvaluator
from mmjax.evaluators.reconstruction import LinearProbeEvaluator, ReconstructionEvaluator
from mmjax.evaluators.retrieval import RetrievalEvaluator
from mmjax.projects.sort_of_clevr.scene_captions import SceneCaptionEvaluator

EVALUATORS = {
    "captioning": CaptionEvaluator,
    "classification": ClassificationEvaluator,
    "linear_probe": LinearProbeEvaluator,
    "reconstruction": ReconstructionEvaluator,
    "retrieval": RetrievalEvaluator,
    "scene_caption": SceneCaptionEvaluator,
}

TRAINER_KEYS = ("type", "split", "batch_size", "every")


def build_evaluator(name: str, eval_config: dict, context: dict | None = None):
    """Builds the evaluator `eval_config['type']` with the entry's other keys.

    `context` holds what a task offers evaluators (e.g. its tokenizer); each evaluator class
    takes the entries named in its CONTEXT tuple.
    """
    kind = eval_config.get("type")
    if kind not in EVALUATORS:
        raise ValueError(f"evals.{name}.type={kind!r} is not one of {sorted(EVALUATORS)}")
    kwargs = {k: v for k, v in eval_config.items() if k not in TRAINER_KEYS}
    for key in getattr(EVALUATORS[kind], "CONTEXT", ()):
        if key in kwargs:  # given directly, e.g. by a test or a notebook
            continue
        if key not in (context or {}):
            raise ValueError(f"evals.{name}: type {kind!r} needs the task to provide {key!r}")
        kwargs[key] = context[key]
    try:
        return EVALUATORS[kind](**kwargs)
    except TypeError as e:
        raise ValueError(f"evals.{name}: {e}") from None
