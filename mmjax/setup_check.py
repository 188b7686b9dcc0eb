"""What a run needs beyond a valid config, checked before the workdir's first file is written.

A run fails late when an evaluator, the metric writer or a checkpoint finds a piece missing
(a package, Java, a writable directory, disk space) after minutes of training. `check_setup`
asks for all of it first: each evaluator's arguments are checked against its class, and an
evaluator class may declare its needs with a classmethod
`requirements(eval_config) -> list[Requirement]` (a need it can work without, such as Java for
METEOR, is not a requirement: it is skipped with a warning); the metric writer needs
tensorboardX; the workdir must be, or be creatable as, a writable directory. Once the run is
assembled, `check_experiment` checks that the training split holds a batch and that the
workdir's file system has room for one checkpoint (parameters, optimizer state and step, from
the model's shapes; `check_disk`). A missing piece is a SetupError naming it and how to get
it; `mmjax.main` prints it as one `mmjax: setup error: ...` line, exit 2.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import shutil
from collections.abc import Callable

from mmjax import registry
from mmjax.config_utils import ConfigError

# Headroom over the state's raw bytes: orbax's metadata, the data iterator state, metrics.
DISK_MARGIN_BYTES = 16 * 2**20


class SetupError(RuntimeError):
    """Something the run needs is missing from this machine; the message says how to get it."""


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One need of a run's part.

    Attributes:
      what: what is needed, e.g. "the Python package 'pycocoevalcap'".
      install: how to get it, e.g. "pip install -e '.[eval]'".
      met: () -> whether this machine has it.
    """

    what: str
    install: str
    met: Callable[[], bool]


def package(module: str, install: str) -> Requirement:
    """The need for an importable Python package `module` (looked up, not imported)."""
    return Requirement(
        f"the Python package {module!r}",
        install,
        lambda: importlib.util.find_spec(module) is not None,
    )


def executable(name: str, install: str) -> Requirement:
    """The need for a program `name` on the PATH."""
    return Requirement(f"`{name}` on the PATH", install, lambda: shutil.which(name) is not None)


# What the metric writer (TensorBoard events) needs; it is a core dependency.
WRITER_REQUIREMENTS = (package("tensorboardX", "pip install -e ."),)


def evaluator_classes(config) -> dict[str, type]:
    """Name -> class of each `config.evals` entry, its arguments checked against the class.

    Raises ConfigError for an unknown type or an argument the class does not take (which would
    otherwise surface only when the evaluators are built, after the workdir is written).
    """
    from mmjax.evaluators import TRAINER_KEYS

    registry.import_modules(config.get("imports", ()))
    classes = {}
    for name, ev in config.evals.items():
        if ev.type not in registry.EVALUATORS:
            raise ConfigError(
                f"evals.{name}.type={ev.type!r} is not one of {registry.EVALUATORS.names()}"
            )
        cls = registry.EVALUATORS.get(ev.type)
        kwargs = {k: v for k, v in ev.items() if k not in TRAINER_KEYS}
        kwargs.update({key: None for key in getattr(cls, "CONTEXT", ()) if key not in kwargs})
        try:
            inspect.signature(cls).bind(**kwargs)
        except TypeError as error:
            raise ConfigError(f"evals.{name} (type {ev.type!r}): {error}") from None
        classes[name] = cls
    return classes


def _evaluator_requirements(config) -> list[tuple[str, Requirement]]:
    """(who, requirement) for each configured evaluator's declared needs."""
    needs = []
    for name, cls in evaluator_classes(config).items():
        ev = config.evals[name]
        declare = getattr(cls, "requirements", None)
        for requirement in declare(ev.to_dict()) if declare else ():
            needs.append((f"evals.{name} (type {ev.type!r})", requirement))
    return needs


def _nearest_existing(path: str) -> str:
    """`path` or its nearest ancestor that exists."""
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def workdir_problem(path: str) -> str | None:
    """Why the run could not write its workdir `path` (absolute), or None; writes nothing."""
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):
        return f"the workdir {path!r} cannot be created: {existing!r} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the workdir" if existing == path else f"the workdir's parent {existing!r}"
        return f"{what} is not writable (workdir {path!r})"
    for name in ("checkpoints", "metrics.jsonl", "tensorboard"):
        inside = os.path.join(path, name)
        if os.path.exists(inside) and not os.access(inside, os.W_OK):
            return f"{inside!r} is not writable"
    return None


def check_setup(config, workdir: str) -> None:
    """Raises SetupError naming every missing need of `config`'s evaluators, writer and workdir.

    `workdir` is the absolute path of the run folder (it may not exist yet). Nothing is written.
    """
    needs = _evaluator_requirements(config)
    needs += [("the metric writer", requirement) for requirement in WRITER_REQUIREMENTS]
    missing = [
        f"{who} needs {requirement.what}: {requirement.install}"
        for who, requirement in needs
        if not requirement.met()
    ]
    problem = workdir_problem(workdir)
    if problem:
        missing.append(f"{problem}; choose another --workdir")
    if missing:
        raise SetupError("; ".join(dict.fromkeys(missing)))


def checkpoint_bytes(config, task, batch) -> int:
    """Bytes of one checkpoint's arrays: the train state of `task` for `batch`, shapes only."""
    import jax
    import numpy as np

    from mmjax.train.optimizer import make_optimizer
    from mmjax.train.steps import init_train_state

    optimizer = make_optimizer(config.optim, config.total_steps)
    rng = jax.random.key_data(jax.random.key(config.seed))
    abstract = jax.eval_shape(lambda r, b: init_train_state(task, optimizer, r, b), rng, batch)
    return sum(
        int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(abstract)
    )


def check_experiment(config, experiment, workdir: str) -> None:
    """The checks that need the assembled run: a batch's worth of training data, disk space.

    ConfigError when the training split holds fewer examples than a batch (per process);
    SetupError when the workdir's file system has no room for one checkpoint.
    """
    import jax

    processes = jax.process_count()
    examples = len(experiment.task.dataset.source("train"))
    if examples // processes < config.batch_size // processes:
        raise ConfigError(
            f"batch_size={config.batch_size} is more than the {examples} examples of the "
            f"{config.data.name} train split; lower --config.batch_size"
        )
    batch = experiment.local_batch(1)
    check_disk(workdir, checkpoint_bytes(config, experiment.task, batch))


def check_disk(workdir: str, needed_bytes: int) -> None:
    """Raises SetupError when the workdir's file system has no room for `needed_bytes` more."""
    needed = needed_bytes + DISK_MARGIN_BYTES
    free = shutil.disk_usage(_nearest_existing(workdir)).free
    if free < needed:
        raise SetupError(
            f"the workdir {workdir!r} has {free / 2**20:.1f} MiB free, but one checkpoint "
            f"needs {needed / 2**20:.1f} MiB; free some space or choose another --workdir"
        )
