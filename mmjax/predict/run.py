"""Load a trained run from its workdir: its config, task (with tokenizer) and parameters."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections

from mmjax.predict.errors import InputError


@dataclasses.dataclass
class LoadedRun:
    """A run read back from its workdir.

    Attributes:
      workdir: absolute path of the workdir.
      config: the run's config (from `config.json`).
      task: the task built from it, with its tokenizer loaded from the workdir.
      params: the parameters of the checkpoint at `step`.
      step: the training step of the checkpoint.
    """

    workdir: str
    config: ml_collections.ConfigDict
    task: Any
    params: Any
    step: int


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved in `workdir/config.json`; InputError when there is none."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isdir(workdir):
        raise InputError(f"no workdir at {workdir!r}")
    if not os.path.isfile(path):
        raise InputError(f"{workdir!r} has no config.json: not a workdir written by mmjax.main")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def load_run(workdir: str | os.PathLike, step: int | None = None) -> LoadedRun:
    """Reads the run in `workdir`: config, task, the workdir's tokenizer and the parameters.

    `step` picks a checkpoint (None: the newest readable one). Only the parameters are read,
    never the optimizer state. Raises InputError for a directory that is not a workdir or lacks
    the tokenizer the run saved, and CheckpointError when no checkpoint can be read.
    """
    from mmjax import tasks
    from mmjax.tasks.captioning import TOKENIZER_FILES
    from mmjax.train.checkpoints import restore_params

    workdir = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
    config = read_config(workdir)
    task = tasks.build_task(config)
    kind = config.get("tokenizer", {}).get("kind")
    if kind is not None:
        # task.prepare would build a missing tokenizer from the dataset, and its ids might then
        # differ from the ones the model was trained with: ask for the saved one instead.
        path = os.path.join(workdir, TOKENIZER_FILES.get(kind, f"tokenizer of kind {kind}"))
        if not os.path.isfile(path):
            raise InputError(f"{workdir!r} has no {os.path.basename(path)}, the run's tokenizer")
    if hasattr(task, "prepare"):
        task.prepare(workdir)
    step, params = restore_params(os.path.join(workdir, "checkpoints"), step)
    return LoadedRun(workdir, config, task, params, step)
