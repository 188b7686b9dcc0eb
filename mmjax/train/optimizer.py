"""Optimizer from `config.optim`: AdamW with linear warmup, cosine decay and gradient clipping."""

from __future__ import annotations

import jax
import optax


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


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
    """Gradient clipping by global norm (if clip_norm > 0), then AdamW on the schedule."""
    if optim_config.name != "adamw":
        raise ValueError(f"optim.name={optim_config.name!r} is not one of ['adamw']")
    schedule = learning_rate_schedule(optim_config, total_steps)
    parts = []
    if optim_config.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim_config.clip_norm))
    parts.append(
        optax.adamw(
            schedule,
            b1=optim_config.b1,
            b2=optim_config.b2,
            weight_decay=optim_config.weight_decay,
            mask=_decay_mask,
        )
    )
    return optax.chain(*parts)
