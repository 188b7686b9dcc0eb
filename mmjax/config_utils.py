"""Helpers for experiment configs: typed `key=value` arguments and validation.

Every config file exposes `get_config(arg=None)`; `arg` is the text after the colon in
`--config=configs/x.py:size=tiny,steps=100`. `parse_arg` turns it into a ConfigDict whose
values take the types of the defaults, so a mistyped name or value fails at once.
"""

from __future__ import annotations

import ml_collections


class ConfigError(ValueError):
    """A problem in the experiment config; the message names the offending key."""


def _coerce(key: str, text: str, default):
    """Converts `text` to the type of `default`, or raises ConfigError naming `key`."""
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"config argument {key}={text!r}: expected a boolean")
    for kind in (int, float):
        if isinstance(default, kind):
            try:
                return kind(text)
            except ValueError:
                raise ConfigError(
                    f"config argument {key}={text!r}: expected {kind.__name__}"
                ) from None
    return text


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses 'a=1,b=x' into a ConfigDict typed like `defaults`; unknown keys are errors.

    A bare word without '=' sets the first default (so `:tiny` means `size=tiny` when
    `size` is the first default).
    """
    values = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            key, text = next(iter(defaults)), key
        if key not in defaults:
            raise ConfigError(
                f"unknown config argument {key!r}; known arguments: {', '.join(defaults)}"
            )
        values[key] = _coerce(key, text.strip(), defaults[key])
    return ml_collections.ConfigDict(values)


def choose(key: str, value: str, options):
    """Returns options[value], or raises ConfigError listing the valid choices for `key`."""
    if value not in options:
        raise ConfigError(f"{key}={value!r} is not one of {sorted(options)}")
    return options[value]


def require(condition: bool, message: str) -> None:
    """Raises ConfigError(message) unless `condition` holds."""
    if not condition:
        raise ConfigError(message)


def set_training_defaults(config: ml_collections.ConfigDict, steps: int, lr: float) -> None:
    """Set the training entries the configs share (a config overrides what it needs).

    AdamW (b2 0.98, weight decay 1e-4, clipping at 1.0) with warmup over a twentieth of the
    steps (at most 200) and cosine decay to 1% of `lr`, nothing frozen; no initial weights;
    data parallelism over every device, no parameter sharding; logging about 30 times and
    checkpointing 5 times per run.
    """
    config.microbatches = 1  # gradient accumulation: the batch is run in this many pieces
    config.total_steps = steps
    config.optim = dict(
        name="adamw",
        lr=lr,
        min_lr_ratio=0.01,
        warmup_steps=min(200, max(1, steps // 20)),
        weight_decay=1e-4,
        b1=0.9,
        b2=0.98,
        clip_norm=1.0,
        # Parameters whose path this regex matches (re.search on "stem/embedding/kernel"...)
        # are not trained: no update, no optimizer state, no gradient. "" trains all.
        frozen="",
    )
    # Start from trained weights (mmjax.weights.init_from): path = a workdir, an .npz file or
    # a Hugging Face save_pretrained directory; include/exclude are regexes over the new
    # model's parameter paths; rename is ((regex, replacement), ...) over the source's paths;
    # step picks a workdir's checkpoint (0: the newest). path="" starts from scratch.
    config.init_from = dict(path="", include="", exclude="", rename=(), step=0)
    config.mesh = dict(data=-1, fsdp=1)  # -1: all the devices not used by other axes
    # Parameter and optimizer-state placement: (regex, rule) pairs, rule "replicate", "fsdp" or
    # a PartitionSpec tuple; fsdp=True shards the rest FSDP-style over all devices.
    # activation_rules: logical activation axis -> mesh axes; None keeps
    # mmjax.models.partitioning.DEFAULT_RULES (batch over data and fsdp, mlp/heads over model).
    config.sharding = dict(rules=[], fsdp=False, fsdp_min_size=2**14, activation_rules=None)
    config.log_every = max(1, min(100, steps // 30))
    config.checkpoint_every = max(1, steps // 5)
    config.keep_checkpoints = 3
    # A step with a non-finite loss or gradient is never applied; "stop" ends the run with an
    # error naming it, "skip" goes on and counts it in train/skipped_steps.
    config.on_nonfinite = "stop"
