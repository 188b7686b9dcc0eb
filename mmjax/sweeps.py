r"""Hyperparameter sweeps: the trials a config file's `get_sweep(arg)` defines, and their names.

A config file may define, next to `get_config(arg)`,

    from mmjax import sweeps

    def get_sweep(arg=None):
        return sweeps.product(**{"optim.lr": [1e-3, 3e-4], "model.depth": [2, 3]})

which returns the trials: a list whose items are each one trial's config overrides, as a dict
`{"optim.lr": 1e-3, "model.depth": 2}` or a list of `"optim.lr=1e-3"` strings (a leading
`--config.` is allowed). A key that starts with a colon changes an argument of the config file
instead of a config entry: `{":size": "small"}` runs `--config=configs/x.py:size=small`.

`product`, `zip_` and `chain` (or plain `+`) combine such lists. Each trial gets a name made of
its own overrides, `lr=0.001,depth=2` (the last part of each key; the whole key where two
would clash), so a trial keeps its name, and its workdir, when other trials are added to or
removed from the sweep. `experiments/sweep.py` runs the trials; this module only defines them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import os
import re
from collections.abc import Iterable, Mapping

from mmjax.config_utils import ConfigError

# Characters kept in a trial name: safe in a directory name on every OS and in a shell word.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")
_MAX_NAME = 120  # longer names are cut and end in a hash of the full overrides


def _is_axis(values) -> bool:
    """Whether `values` lists the values of an axis (a tuple or string is one value)."""
    # A tuple is a config value of its own (conv_channels=(24, 24)), so only other iterables
    # (lists, ranges, NumPy arrays) are axes.
    return isinstance(values, Iterable) and not isinstance(values, str | bytes | tuple | Mapping)


def _as_trials(sweep) -> list[dict]:
    """`sweep` (a list of trials, or a dict of axes meaning their product) as a list of dicts."""
    if isinstance(sweep, Mapping):
        return product(**sweep)
    return [dict(_pairs(trial)) for trial in sweep]


def _merge(parts: Iterable[Mapping]) -> dict:
    """One trial from several; a key set twice is an error, not a silent overwrite."""
    merged: dict = {}
    for part in parts:
        for key, value in part.items():
            if key in merged:
                raise ConfigError(f"sweep key {key!r} is set by two combined parts")
            merged[key] = value
    return merged


def product(*sweeps, **axes) -> list[dict]:
    """The Cartesian product of the given sweeps and axes, as a list of override dicts.

    Each positional argument is a list of trials (e.g. from `zip_`) or a dict of axes; each
    keyword axis maps a key to a list (or range) of values, and a value that is not a list is
    fixed for every trial. The first factor varies slowest, as in itertools.product. Dotted
    keys need the `**{"optim.lr": [...]}` form.
    """
    factors = [_as_trials(s) for s in sweeps]
    for key, values in axes.items():
        factors.append([{key: v} for v in (values if _is_axis(values) else [values])])
    return [_merge(combo) for combo in itertools.product(*factors)]


def zip_(*sweeps, **axes) -> list[dict]:
    """Trials that take the i-th value of every axis (and the i-th trial of every sweep).

    All lists must have the same length; a value that is not a list is used in every trial.
    E.g. `zip_(**{"optim.lr": [1e-3, 3e-4], "optim.warmup_steps": [100, 400]})` is 2 trials.
    """
    columns = [_as_trials(s) for s in sweeps]
    for key, values in axes.items():
        if _is_axis(values):
            columns.append([{key: v} for v in values])
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ConfigError(f"zip_ needs lists of one length, got lengths {sorted(lengths)}")
    fixed = {k: v for k, v in axes.items() if not _is_axis(v)}
    rows = zip(*columns) if columns else [()]
    return [_merge([*row, fixed]) for row in rows]


def chain(*sweeps) -> list[dict]:
    """The trials of all `sweeps`, one after the other (the same as adding the lists)."""
    return [trial for sweep in sweeps for trial in _as_trials(sweep)]


def split_values(text: str, kind=str, sep: str = "/") -> list:
    """'1e-3/3e-4' -> [0.001, 0.0003]: a list typed by `kind`, for get_sweep's own arguments."""
    try:
        return [kind(item) for item in str(text).split(sep) if item.strip()]
    except ValueError:
        raise ConfigError(f"sweep argument {text!r}: expected {kind.__name__} values") from None


def value_text(value) -> str:
    """The command-line text of an override value, as `--config.key=<text>` parses it back."""
    if isinstance(value, str):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # a NumPy scalar (from np.logspace): its Python value's text
    # repr keeps floats exact (3e-4 -> '0.0003') and tuples/None/bools literal_eval-able.
    return repr(value)


def _pairs(trial) -> list[tuple[str, object]]:
    """(key, value) pairs of one trial given as a dict or a list of 'key=value' strings."""
    if isinstance(trial, Mapping):
        items = list(trial.items())
    elif isinstance(trial, list | tuple):
        items = []
        for item in trial:
            if isinstance(item, str):
                key, sep, text = item.partition("=")
                if not sep:
                    raise ConfigError(f"sweep override {item!r}: expected key=value")
                items.append((key, text))
            elif isinstance(item, tuple) and len(item) == 2:
                items.append(item)
            else:
                raise ConfigError(f"sweep override {item!r}: expected 'key=value' or (key, value)")
    else:
        raise ConfigError(f"a trial must be a dict or a list of overrides, got {trial!r}")
    pairs = []
    for key, value in items:
        key = str(key).strip()
        key = key.removeprefix("--config.")
        if not key.lstrip(":"):
            raise ConfigError(f"sweep override with an empty key in trial {trial!r}")
        pairs.append((key, value))
    return pairs


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial of a sweep: its name and its overrides as (key, text) pairs, in order.

    Keys starting with ':' are config-file arguments (`:size` -> `configs/x.py:size=...`);
    the others are config entries (`optim.lr` -> `--config.optim.lr=...`).
    """

    name: str
    overrides: tuple[tuple[str, str], ...]

    @property
    def config_args(self) -> dict[str, str]:
        """The config-file arguments this trial sets, {'size': 'small'}."""
        return {k[1:]: v for k, v in self.overrides if k.startswith(":")}

    @property
    def config_overrides(self) -> list[str]:
        """The config entries this trial sets, as 'a.b=text' (the part after --config.)."""
        return [f"{k}={v}" for k, v in self.overrides if not k.startswith(":")]

    def describe(self) -> str:
        """The overrides as one readable line: ':size=small optim.lr=0.001'."""
        return " ".join(f"{k}={v}" for k, v in self.overrides)

    def main_args(self, config_spec: str, common: Iterable[str] = ()) -> list[str]:
        """The `mmjax.main` flags of this trial (less --workdir).

        `common` holds 'a.b=value' overrides for every trial; the trial's own come after them,
        so they win where both set a key.
        """
        spec = with_config_args(config_spec, self.config_args)
        flags = [f"--config={spec}"]
        flags += [f"--config.{o}" for o in (*common, *self.config_overrides)]
        return flags


def with_config_args(config_spec: str, args: Mapping[str, str]) -> str:
    """'configs/x.py:size=tiny,steps=5' with `args` replacing or extending its arguments."""
    if not args:
        return config_spec
    path, _, arg = config_spec.partition(":")
    items = [item for item in arg.split(",") if item]
    todo = dict(args)
    for i, item in enumerate(items):
        key = item.partition("=")[0].strip()
        if "=" in item and key in todo:
            items[i] = f"{key}={todo.pop(key)}"
    # A bare word (':tiny') names the config's first argument, unknown here; parse_arg applies
    # items in order, so an appended key=value still wins over it.
    items += [f"{k}={v}" for k, v in todo.items()]
    return f"{path}:{','.join(items)}"


def _short_key(key: str) -> str:
    return key.lstrip(":").rsplit(".", 1)[-1]


def _name_key(key: str) -> str:
    return "arg." + key[1:] if key.startswith(":") else key


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "_"


def trial_name(overrides: Iterable[tuple[str, str]]) -> str:
    """A directory-safe, readable name made only of these overrides: 'lr=0.001,depth=2'.

    Each key is shortened to its last part (`optim.lr` -> `lr`) unless two of the trial's keys
    would then clash; characters outside [A-Za-z0-9._+=-] become '_' (a tuple value
    (24, 24) reads 24_24). A trial without overrides is 'base'. Names longer than 120
    characters are cut and end in a hash of the overrides, so they stay unique.
    """
    overrides = list(overrides)
    if not overrides:
        return "base"
    shorts = [_short_key(k) for k, _ in overrides]
    parts = []
    for (key, text), short in zip(overrides, shorts):
        shown = short if shorts.count(short) == 1 else _name_key(key)
        parts.append(f"{_safe(shown)}={_safe(text)}")
    name = ",".join(parts)
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(repr(overrides).encode()).hexdigest()[:8]
        name = f"{name[: _MAX_NAME - 9]}~{digest}"
    return name


def expand(sweep) -> list[Trial]:
    """The Trials of `sweep` (what get_sweep returned), each with a unique name.

    Raises ConfigError for a sweep that is empty or lists the same overrides twice. Two
    different trials whose names would clash (values that differ only in unsafe characters)
    get a hash of their overrides appended.
    """
    if isinstance(sweep, Mapping):
        sweep = product(**sweep)
    if isinstance(sweep, str) or not isinstance(sweep, Iterable):
        raise ConfigError(f"get_sweep must return a list of trials, got {type(sweep).__name__}")
    trials, seen = [], {}
    for trial in sweep:
        overrides = tuple((k, value_text(v)) for k, v in _pairs(trial))
        if overrides in seen:
            raise ConfigError(f"the sweep lists trial {trial_name(overrides)!r} twice")
        seen[overrides] = len(trials)
        trials.append(Trial(trial_name(overrides), overrides))
    if not trials:
        raise ConfigError("the sweep has no trials")
    counts = {}
    for trial in trials:
        counts[trial.name] = counts.get(trial.name, 0) + 1
    for i, trial in enumerate(trials):
        if counts[trial.name] > 1:
            digest = hashlib.sha1(repr(trial.overrides).encode()).hexdigest()[:8]
            trials[i] = dataclasses.replace(trial, name=f"{trial.name}~{digest}")
    return trials


def swept_keys(trials: Iterable[Trial]) -> list[str]:
    """The keys whose value differs between trials (a trial without the key counts as one)."""
    trials = list(trials)
    keys: list[str] = []
    for trial in trials:
        keys += [k for k, _ in trial.overrides if k not in keys]
    return [k for k in keys if len({dict(t.overrides).get(k) for t in trials}) > 1]


def load_sweep(config_spec: str, sweep_arg: str | None = None) -> list[Trial]:
    """Imports the config file of `config_spec` ('path[:arg]') and expands its get_sweep."""
    path = config_spec.partition(":")[0]
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    module_spec = importlib.util.spec_from_file_location("_mmjax_sweep_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"config file {path!r} defines no get_sweep(arg=None)")
    return expand(module.get_sweep(sweep_arg or None))
