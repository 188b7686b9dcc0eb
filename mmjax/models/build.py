"""One helper that builds a model from `config.model`, for every task."""

from __future__ import annotations

import jax.numpy as jnp

from mmjax.config_utils import ConfigError
from mmjax.registry import MODELS


def build_model(model_config, default: str, **fixed):
    """The registered model `model_config.name` (else `default`) with the config's arguments.

    `fixed` holds what the task decides (vocabulary size, number of answers, ...), of which
    the model takes those it declares as fields; `model_config.dtype` is a dtype name
    ("bfloat16": bf16 compute, float32 parameters).
    Raises ConfigError for an unknown name or argument.
    """
    kwargs = dict(model_config.to_dict() if hasattr(model_config, "to_dict") else model_config)
    name = kwargs.pop("name", default)
    kwargs["dtype"] = jnp.dtype(kwargs.get("dtype", "float32"))
    model_class = MODELS.get(name)
    fields = getattr(model_class, "__dataclass_fields__", fixed)
    try:
        return model_class(**{k: v for k, v in fixed.items() if k in fields}, **kwargs)
    except TypeError as error:
        raise ConfigError(f"config.model: {error}") from None
