"""The run folder and its files: the one place that names, reads and writes them.

  workdir/config.json     the run's config (written once its shapes are checked)
  workdir/metrics.jsonl   one JSON line {"step": s, name: value, ...} per log or evaluation
  workdir/tensorboard/    the same scalars as TensorBoard events
  workdir/checkpoints/    orbax checkpoints, one directory per finished step
  workdir/<vocabulary>    a task's tokenizer and answer files (`VOCABULARY_FILES`), so a resumed
                          or reloaded run encodes text with the ids it was trained with

Files are written atomically (a temporary file renamed over the old one) by process 0 only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable

import ml_collections

from mmjax.config_utils import ConfigError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
# Tokenizer kind -> its file; and the VQA answer vocabulary.
TOKENIZER_FILES = {"word": "tokenizer.json", "sentencepiece": "tokenizer.model"}
ANSWERS_FILE = "answers.json"


class WorkdirError(ValueError):
    """A directory that is not (or not yet) the run folder a command needs."""


def read_metrics(path: str) -> list[dict]:
    """The records of a metrics.jsonl file (or of a workdir's), in order.

    Blank lines and lines that are not JSON are left out: a process killed while writing
    leaves a line cut short, and a resumed run may append its next line to it.
    """
    if os.path.isdir(path):
        path = os.path.join(path, METRICS)
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def metrics_line(step: int, metrics: dict[str, float]) -> str:
    """One metrics.jsonl line for `metrics` at `step`; non-finite values become null."""
    values = {k: float(v) for k, v in metrics.items()}
    line = {"step": int(step), **{k: (v if math.isfinite(v) else None) for k, v in values.items()}}
    return json.dumps(line) + "\n"


class Workdir:
    """The run folder at `path` (absolute, user directory expanded).

    Attributes:
      path: the folder.
      writer: whether this process writes its files (process 0).
    """

    def __init__(self, path: str | os.PathLike, writer: bool = True):
        self.path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self.writer = writer

    def file(self, name: str) -> str:
        """The path of `name` in the workdir (which may not exist)."""
        return os.path.join(self.path, name)

    @property
    def checkpoints(self) -> str:
        """The checkpoint directory."""
        return self.file(CHECKPOINTS)

    def checkpoint_steps(self) -> list[int]:
        """The steps of the finished checkpoints, ascending."""
        from mmjax.train.checkpoints import finished_steps

        return finished_steps(self.checkpoints)

    def read_config(self) -> ml_collections.ConfigDict:
        """The saved config; WorkdirError naming what is missing."""
        if not os.path.isdir(self.path):
            raise WorkdirError(f"no workdir at {self.path!r}")
        if not os.path.isfile(self.file(CONFIG)):
            raise WorkdirError(
                f"{self.path!r} has no {CONFIG}: not a workdir written by mmjax.main"
            )
        with open(self.file(CONFIG)) as f:
            return ml_collections.ConfigDict(json.load(f))

    def check_resumable(self, config: ml_collections.ConfigDict) -> None:
        """Refuses `config` when the workdir holds checkpoints of another task or model.

        A workdir without a checkpoint yet is not bound to the config it saved: a run that
        stopped before its first save (a crash, a corrected command) can start again.
        """
        if not self.checkpoint_steps() or not os.path.isfile(self.file(CONFIG)):
            return
        with open(self.file(CONFIG)) as f:
            saved = json.load(f)
        current = json.loads(config.to_json())  # the same JSON round trip (tuples -> lists)
        for key in ("task", "model"):
            old, new = saved.get(key), current.get(key)
            if old == new:
                continue
            if isinstance(old, dict) and isinstance(new, dict):
                diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
                what = ", ".join(f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            else:
                what = f"{key}: {old!r} -> {new!r}"
            raise ConfigError(
                f"the workdir's checkpoints are of another {what}; use a new --workdir, "
                "or delete the old one, to start fresh"
            )

    def write_atomic(self, name: str, save: Callable[[str], None]) -> None:
        """Writes file `name` with `save(temporary_path)`, then renames it into place."""
        if not self.writer:
            return
        os.makedirs(self.path, exist_ok=True)
        path = self.file(name)
        save(path + ".tmp")
        os.replace(path + ".tmp", path)

    def write_config(self, config: ml_collections.ConfigDict) -> None:
        """Saves `config` as config.json."""

        def save(path):
            with open(path, "w") as f:
                f.write(config.to_json(indent=2))

        self.write_atomic(CONFIG, save)

    def append_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Appends one metrics.jsonl line (`metrics_line`)."""
        if self.writer:
            with open(self.file(METRICS), "a") as f:
                f.write(metrics_line(step, metrics))

    def read_metrics(self) -> list[dict]:
        """The records of metrics.jsonl, in order (`read_metrics`)."""
        return read_metrics(self.file(METRICS))
