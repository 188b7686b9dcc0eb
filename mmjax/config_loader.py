"""Loads `--config=path.py[:arg]` and applies `--config.a.b=value` overrides, checking both.

Errors are ConfigError with one line that names the file, the key or the value at fault,
raised before anything is built or compiled.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os

import ml_collections

from mmjax.config_utils import ConfigError


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Imports `path` from 'path[:arg]' and returns its get_config(arg), locked."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location("_mmjax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config(arg=None)")
    config = module.get_config(arg or None)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config in {path!r} returned {type(config).__name__}")
    config.lock()
    return config


def _parse_value(key: str, text: str, current):
    """Parses `text` to the type of `current` (ints widen to floats), or raises ConfigError."""
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if isinstance(current, bool) and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ConfigError(f"--config.{key}={text}: expected {type(current).__name__}") from None
    if isinstance(current, bool) != isinstance(value, bool):
        raise ConfigError(f"--config.{key}={text}: expected {type(current).__name__}")
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if current is not None and not isinstance(value, type(current)):
        raise ConfigError(
            f"--config.{key}={text}: expected {type(current).__name__}, got {type(value).__name__}"
        )
    return value


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets config[key] (a dotted path that must exist) to `text` parsed to its type."""
    node = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            known = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            close = difflib.get_close_matches(part, known, n=1)
            where = ".".join(parts[:depth]) or "config"
            hint = f"; did you mean {close[0]!r}?" if close else f"; {where} has {sorted(known)}"
            raise ConfigError(f"unknown config key {key!r}{hint}")
        if depth < len(parts) - 1:
            node = node[part]
    with node.unlocked():
        node[parts[-1]] = _parse_value(key, text, node[parts[-1]])


def load_config(spec: str, overrides: list[str]) -> ml_collections.ConfigDict:
    """The config of `spec` with each 'a.b=value' override of `overrides` applied."""
    config = load_config_file(spec)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--config.{item}: expected --config.<key>=<value>")
        apply_override(config, key, text)
    return config


_POSITIVE = ("batch_size", "log_every", "checkpoint_every", "keep_checkpoints")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks the keys the trainer needs and their ranges; raises ConfigError naming one."""
    required = ("seed", "task", "data", "model", "optim", "mesh", "evals", "total_steps")
    required += _POSITIVE
    for key in required:
        if key not in config:
            raise ConfigError(f"config has no {key!r}; every config needs {list(required)}")
    for key in _POSITIVE:
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ConfigError(f"config.{key}={config[key]!r} must be a positive integer")
    # 0 steps: evaluate the initial parameters (those of config.init_from) without training.
    if not isinstance(config.total_steps, int) or config.total_steps < 0:
        raise ConfigError(f"config.total_steps={config.total_steps!r} must be an integer >= 0")
    if config.get("on_nonfinite", "stop") not in ("stop", "skip"):
        raise ConfigError(f"config.on_nonfinite={config.on_nonfinite!r} must be 'stop' or 'skip'")
    if config.optim.lr <= 0:
        raise ConfigError(f"config.optim.lr={config.optim.lr} must be positive")
    for name, ev in config.evals.items():
        for key in ("type", "split", "batch_size", "every"):
            if key not in ev:
                raise ConfigError(f"config.evals.{name} has no {key!r}")
        if ev.batch_size <= 0 or ev.every < 0:
            raise ConfigError(
                f"config.evals.{name}: batch_size must be positive and every (0: only at the "
                "end) not negative"
            )
