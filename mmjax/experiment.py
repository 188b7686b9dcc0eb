"""The one place that assembles a run: config -> dataset, task, model check, mesh.

`mmjax.main` (training), `mmjax.predict` (a trained run) and the benchmarks all build their
run here:

    experiment = Experiment.assemble(config, saved=None)   # dataset ready, task prepared
    experiment.check_model()                                # shapes, before anything is written
                                                            # (and init_from, optim.frozen)
    mesh = experiment.mesh()

A config's `imports` (a list of module names) are imported first, so that a project outside
mmjax registers its datasets, tasks and models before they are looked up.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np

from mmjax import registry
from mmjax.config_utils import ConfigError
from mmjax.data.datasets import Dataset, get_dataset
from mmjax.workdir import Workdir


def build_task(config, dataset: Dataset | None = None):
    """The registered task `config.task`, on `dataset` (default: the one of `config.data`).

    Imports `config.imports` first. The task is not prepared (no vocabulary, no model yet).
    """
    registry.import_modules(config.get("imports", ()))
    dataset = get_dataset(config.data) if dataset is None else dataset
    return registry.TASKS.get(config.task)(config, dataset)


@dataclasses.dataclass
class Experiment:
    """A run's parts, assembled from its config.

    Attributes:
      config: the run's config.
      dataset: its `Dataset`.
      task: its task, prepared (vocabularies loaded or built, model built).
      resuming: whether it continues a workdir's run (then config.init_from is not read).
      init_record: what config.init_from loads, once `check_model` has checked it (the
        workdir's init_from.json), else None.
    """

    config: object
    dataset: Dataset
    task: object
    resuming: bool = False
    init_record: dict | None = None

    @classmethod
    def assemble(
        cls, config, saved: Workdir | None = None, prepare_data: bool = True
    ) -> Experiment:
        """Builds dataset and task, builds the data if missing, then prepares the task.

        `saved` is the workdir whose vocabularies a resumed or reloaded run reads back. With
        several processes only process 0 builds the data; the others wait for it.
        """
        task = build_task(config)
        if prepare_data:
            if jax.process_index() == 0:
                task.dataset.prepare()
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices("dataset prepared")
        task.prepare(saved)
        return cls(config, task.dataset, task, resuming=saved is not None)

    def mesh(self) -> jax.sharding.Mesh:
        """The device mesh of `config.mesh`, the batch sizes checked against it."""
        from mmjax.train.trainer import check_batch_sizes, make_mesh

        mesh = make_mesh(self.config)
        check_batch_sizes(self.config, mesh)
        return mesh

    def local_batch(self, size: int, split: str = "train") -> dict[str, np.ndarray]:
        """The first `size` examples of `split`, preprocessed and stacked: [size, ...] each."""
        source = self.dataset.source(split)
        examples = [self.task.preprocess(source[i % len(source)]) for i in range(size)]
        return jax.tree.map(lambda *xs: np.stack(xs), *examples)

    def check_model(self) -> None:
        """Traces the model's initialisation on one training example, computing nothing.

        A model whose shapes do not fit (e.g. a width that the heads do not divide) is a
        ConfigError naming the problem, raised before the workdir is written.
        """
        batch = self.local_batch(1)
        try:
            params = jax.eval_shape(self.task.init_params, jax.random.key(0), batch)
        except (ValueError, TypeError, AssertionError, IndexError, KeyError) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ConfigError(
                f"config.model does not fit the data: {type(error).__name__}: {message}"
            ) from None
        self._check_weights(params)

    def _check_weights(self, params) -> None:
        """Checks optim.frozen and (for a new run) config.init_from against the model's params.

        Raises ConfigError (WeightsError) naming the parameter or file at fault.
        """
        from mmjax.train.optimizer import frozen_mask
        from mmjax.weights import init_from

        frozen_mask(self.config.optim, params)
        if init_from.is_set(self.config) and not self.resuming:
            self.init_record = init_from.make_plan(self.config.init_from, params).record()

    def save_init_record(self, workdir: Workdir) -> None:
        """Writes where the run starts from (`init_record`) as the workdir's init_from.json."""
        from mmjax.weights.init_from import RECORD_FILE

        if self.init_record is None:
            return

        def save(path):
            with open(path, "w") as f:
                json.dump(self.init_record, f, indent=2)

        workdir.write_atomic(RECORD_FILE, save)

    def save_vocabularies(self, workdir: Workdir) -> None:
        """Writes the task's tokenizer and answer files into `workdir`."""
        for name, vocabulary in self.task.vocabularies().items():
            workdir.write_atomic(name, vocabulary.save)
