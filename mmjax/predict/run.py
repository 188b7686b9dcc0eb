"""Load a trained run from its workdir: its config, task (with tokenizer) and parameters."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections

from mmjax.predict.errors import InputError
from mmjax.workdir import TOKENIZER_FILES, Workdir, WorkdirError


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


def load_run(workdir: str | os.PathLike, step: int | None = None) -> LoadedRun:
    """Reads the run in `workdir`: config, task (with the workdir's vocabularies), parameters.

    `step` picks a checkpoint (None: the newest readable one). Only the parameters are read,
    never the optimizer state. Raises InputError for a directory that is not a workdir or lacks
    the tokenizer the run saved, and CheckpointError when no checkpoint can be read.
    """
    from mmjax.experiment import Experiment
    from mmjax.train.checkpoints import restore_params

    run_dir = Workdir(workdir, writer=False)
    try:
        config = run_dir.read_config()
    except WorkdirError as error:
        raise InputError(str(error)) from None
    kind = config.get("tokenizer", {}).get("kind")
    # Building a missing tokenizer from the dataset could give other ids than the ones the
    # model was trained with: ask for the saved one instead.
    if kind in TOKENIZER_FILES and not os.path.isfile(run_dir.file(TOKENIZER_FILES[kind])):
        raise InputError(f"{run_dir.path!r} has no {TOKENIZER_FILES[kind]}, the run's tokenizer")
    try:
        experiment = Experiment.assemble(config, saved=run_dir, prepare_data=False)
    except WorkdirError as error:  # a tokenizer or answer file that is not the one saved
        raise InputError(str(error)) from None
    step, params = restore_params(run_dir.checkpoints, step)
    return LoadedRun(run_dir.path, config, experiment.task, params, step)
