"""The task contract: what the trainer, the evaluators and predict call on a task.

A task glues a model built from `config.model` to a loss and to the predictions its evaluators
score. It is a `Task` subclass registered by name (`mmjax.registry.TASKS`, `config.task`),
built as `Task(config, dataset)` with the run's `mmjax.data.datasets.Dataset`. The trainer
calls, in order:

  task.prepare(saved)                   vocabularies (from `saved`, a Workdir, when resuming)
  task.preprocess(record) -> example    NumPy dict, one example, in the input pipeline
  task.init_params(rng, batch) -> params
  task.loss(params, batch, rng) -> (scalar loss, dict of scalar metrics)   jit-compiled
  task.predict(params, batch) -> dict of arrays for the evaluators         jit-compiled
  task.report(metrics) -> str | None    printed at the end of `mmjax.main`

The optional hooks (`prepare`, `vocabularies`, `evaluator_context`, `report`) have neutral
defaults here.
"""

from __future__ import annotations

import abc

import numpy as np

from mmjax.data.errors import DataError


class Task(abc.ABC):
    """Base class of every task (see the module docstring).

    Attributes:
      config: the run's config.
      dataset: the run's dataset.
      model: the flax module, built by `prepare` at the latest.
    """

    def __init__(self, config, dataset):
        self.config = config
        self.dataset = dataset
        self.model = None

    def prepare(self, saved) -> None:
        """Loads or builds what needs the data (tokenizers, answer sets) and builds the model.

        `saved` is the Workdir whose vocabulary files a resumed or reloaded run reads back, or
        None to build them afresh.
        """
        del saved

    def vocabularies(self) -> dict:
        """Workdir file name -> object with `.save(path)`, written once the run is checked."""
        return {}

    @property
    def evaluator_context(self) -> dict:
        """What evaluators may take from the task (see `mmjax.evaluators.build_evaluator`)."""
        return {}

    @abc.abstractmethod
    def preprocess(self, record: dict) -> dict[str, np.ndarray]:
        """A record in the dataset's common layout -> one example (NumPy arrays)."""

    @abc.abstractmethod
    def init_params(self, rng, batch):
        """The initial parameters for a batch like `batch`."""

    @abc.abstractmethod
    def loss(self, params, batch, rng):
        """(scalar loss, dict of scalar metrics) on `batch`."""

    @abc.abstractmethod
    def predict(self, params, batch):
        """The predictions the evaluators score: a dict of arrays with batch axis first."""

    def test_split(self) -> str:
        """The split the final "test" evaluation scores (the config's, else the dataset's)."""
        evals = self.config.get("evals", {})
        return evals["test"].split if "test" in evals else self.dataset.test_split

    def report(self, metrics: dict[str, float]) -> str | None:
        """A text summary of the final metrics, or None."""
        del metrics
        return None


MEDIA_KEYS = ("image", "video")


def checked_image(record: dict) -> np.ndarray:
    """The record's visual input: uint8 [H, W, 3] under "image" or [T, H, W, 3] under "video".

    This is the one place where tasks read a record's pixels, so every task takes a clip where
    it took an image: a video dataset's records carry "video" instead of "image", and the
    example keeps the task's usual key ("image") with the clip's frames axis first; the model's
    stem (e.g. `stem="vivit"`) decides what it reads. A record with both (a video dataset that
    also gives one frame, for image models and single-frame baselines) gives its "image".
    DataError naming the record if it has neither, or an array of the wrong dtype or shape.
    """
    where = f"record {record.get('id', '?')}"
    present = [key for key in MEDIA_KEYS if key in record]
    if not present:
        raise DataError(f"{where}: has no {' or '.join(repr(k) for k in MEDIA_KEYS)}")
    key = present[0]
    media = np.asarray(record[key])
    layout, ndim = ("HxWx3", 3) if key == "image" else ("TxHxWx3", 4)
    if media.dtype != np.uint8 or media.ndim != ndim or media.shape[-1] != 3:
        raise DataError(f"{where}: {key} is {media.dtype}{list(media.shape)}, not uint8 {layout}")
    return media
