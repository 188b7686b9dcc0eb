"""Optimizer from `config.optim`: AdamW with linear warmup, cosine decay and gradient clipping.

`optim.frozen` is a regex over parameter paths ("image_encoder/block_0/attn/query/kernel"; a
match anywhere, `re.search`): the parameters it matches are not trained. Through
`optax.partition` they get `optax.set_to_zero` (no state), so the optimizer holds no moments
for them, and the train step neither differentiates through them nor adds to them
(`frozen_mask`, `mmjax.train.steps`): they stay bitwise as they were.
"""

from __future__ import annotations

import re

import jax
import optax

from mmjax.config_utils import ConfigError


def learning_rate_schedule(optim_config, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `lr` over `warmup_steps`, then cosine decay to lr*min_lr_ratio."""
    warmup = min(optim_config.warmup_steps, max(total_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=optim_config.lr,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=optim_config.lr * optim_config.min_lr_ratio,
    )


def _decay_mask(params):
    """True for weight matrices and kernels; biases, norms and 1-D scales are not decayed."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def _frozen_regex(optim_config) -> re.Pattern | None:
    """The compiled `optim.frozen`, or None when nothing is frozen; ConfigError if no regex."""
    pattern = optim_config.get("frozen", "")
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"optim.frozen={pattern!r} is not a regex: {error}") from None


def _labels(regex: re.Pattern, params):
    """A pytree like `params`: True where `regex` matches the parameter's path."""

    def frozen(path, _):
        return bool(regex.search(jax.tree_util.keystr(path, simple=True, separator="/")))

    return jax.tree_util.tree_map_with_path(frozen, params)


def frozen_mask(optim_config, params):
    """A pytree of bools like `params` (arrays or ShapeDtypeStructs): True where frozen.

    None when nothing is frozen (`optim.frozen` empty or absent). Raises ConfigError for a
    pattern that is not a regex or matches no parameter.
    """
    regex = _frozen_regex(optim_config)
    if regex is None:
        return None
    mask = _labels(regex, params)
    if not any(jax.tree.leaves(mask)):
        names = [
            jax.tree_util.keystr(path, simple=True, separator="/")
            for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
        ]
        raise ConfigError(
            f"optim.frozen={regex.pattern!r} matches no parameter; paths look like {names[:3]}"
        )
    return mask


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
    """Gradient clipping by global norm (if clip_norm > 0), then AdamW on the schedule.

    With `optim.frozen` set, the parameters it matches get `optax.set_to_zero` instead of
    AdamW, through `optax.partition` (module docstring).
    """
    if optim_config.name != "adamw":
        raise ValueError(f"optim.name={optim_config.name!r} is not one of ['adamw']")
    schedule = learning_rate_schedule(optim_config, total_steps)
    parts = []
    if optim_config.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim_config.clip_norm))
    adamw = optax.adamw(
        schedule,
        b1=optim_config.b1,
        b2=optim_config.b2,
        weight_decay=optim_config.weight_decay,
        mask=_decay_mask,
    )
    regex = _frozen_regex(optim_config)
    if regex is None:
        parts.append(adamw)
    else:

        def labels(params):
            return jax.tree.map(lambda f: "frozen" if f else "trained", _labels(regex, params))

        parts.append(optax.partition({"trained": adamw, "frozen": optax.set_to_zero()}, labels))
    return optax.chain(*parts)
