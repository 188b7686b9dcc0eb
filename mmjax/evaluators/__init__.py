"""Evaluators, chosen by `config.evals.<name>.type` (`mmjax.registry.EVALUATORS`).

An evaluator is built from the keyword arguments of its config entry (less the keys the
trainer reads: type, split, batch_size, every) and scores (batch, predictions) pairs.
"""

from mmjax.config_utils import ConfigError
from mmjax.registry import EVALUATORS

TRAINER_KEYS = ("type", "split", "batch_size", "every")


def build_evaluator(name: str, eval_config: dict, context: dict | None = None):
    """Builds the evaluator `eval_config['type']` with the entry's other keys.

    `context` holds what a task offers evaluators (e.g. its tokenizer); each evaluator class
    takes the entries named in its CONTEXT tuple.
    """
    kind = eval_config.get("type")
    if kind not in EVALUATORS:  # the registry's message would say "evals.<name>", not `name`
        raise ConfigError(f"evals.{name}.type={kind!r} is not one of {EVALUATORS.names()}")
    evaluator_class = EVALUATORS.get(kind)
    kwargs = {k: v for k, v in eval_config.items() if k not in TRAINER_KEYS}
    for key in getattr(evaluator_class, "CONTEXT", ()):
        if key in kwargs:  # given directly, e.g. by a test or a notebook
            continue
        if key not in (context or {}):
            raise ValueError(f"evals.{name}: type {kind!r} needs the task to provide {key!r}")
        kwargs[key] = context[key]
    if getattr(evaluator_class, "WANTS_CONTEXT", False):  # builds other evaluators (disparity)
        kwargs.setdefault("context", dict(context or {}))
    try:
        return evaluator_class(**kwargs)
    except TypeError as e:
        raise ValueError(f"evals.{name}: {e}") from None
