"""The run folder and its files: the one place that names, reads and writes them.

  workdir/config.json     the run's config (written once its shapes are checked)
  workdir/metrics.jsonl   one JSON line {"step": s, name: value, ...} per log or evaluation
  workdir/tensorboard/    the same scalars as TensorBoard events
  workdir/checkpoints/    orbax checkpoints, one directory per finished step
  workdir/<vocabulary>    a task's tokenizer and answer files (`VOCABULARY_FILES`), so a resumed
                          or reloaded run encodes text with the ids it was trained with
  workdir/.lock           while a run trains: its pid, host and start time (`Workdir.lock`)

Files are written atomically (a temporary file renamed over the old one) by process 0 only.
They are read back only as JSON, SentencePiece protobuf or orbax checkpoints (TensorStore
arrays, JSON metadata), never with pickle or as code: a file of another kind is refused
(`Workdir.load_file`), and nothing in it is executed.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
import socket
from collections.abc import Callable, Iterator

import ml_collections

from mmjax.config_utils import ConfigError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
# Tokenizer kind -> its file; and the VQA answer vocabulary.
TOKENIZER_FILES = {
    "word": "tokenizer.json",
    "sentencepiece": "tokenizer.model",
    "hf": "hf_tokenizer.json",  # a Hugging Face tokenizer.json (mmjax.data.hf_tokenizer)
}
ANSWERS_FILE = "answers.json"
LOCK = ".lock"
# The first two bytes of a pickle of protocol 2 to 5 (PROTO opcode, then the protocol).
_PICKLE_HEADS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))


class WorkdirError(ValueError):
    """A directory that is not (or not yet) the run folder a command needs."""


class WorkdirLocked(WorkdirError):
    """Another run holds the workdir's lock; the message names its pid and host."""


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
        return ml_collections.ConfigDict(self.load_file(CONFIG, _read_json))

    def check_resumable(self, config: ml_collections.ConfigDict) -> None:
        """Refuses `config` when the workdir holds checkpoints of another task or model.

        A workdir without a checkpoint yet is not bound to the config it saved: a run that
        stopped before its first save (a crash, a corrected command) can start again.
        """
        if not self.checkpoint_steps() or not os.path.isfile(self.file(CONFIG)):
            return
        saved = self.load_file(CONFIG, _read_json)
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

    def load_file(self, name: str, load: Callable[[str], object]):
        """`load(path)` of the workdir's file `name`, refusing content mmjax did not write.

        mmjax writes its files as JSON or SentencePiece protobuf and `load` parses them as
        such, so nothing in a file is ever executed. A pickle (by its header), or any content
        `load` cannot parse, is a WorkdirError naming the file, before or instead of parsing.
        """
        path = self.file(name)
        with open(path, "rb") as f:
            head = f.read(2)
        if head in _PICKLE_HEADS:
            raise WorkdirError(
                f"{path} holds a Python pickle, which mmjax never loads (it could run code); "
                "replace it with the file the run wrote, or use a new --workdir"
            )
        try:
            return load(path)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:  # parse failures
            first = (str(error).strip().splitlines() or [""])[0][:200]
            raise WorkdirError(
                f"{path} is not the {name} mmjax wrote ({type(error).__name__}: {first}); "
                "replace it with the file the run wrote, or use a new --workdir"
            ) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the workdir for one run: an exclusive flock on `workdir/.lock`.

        The file holds the holder's pid, host and start time; a second run gets WorkdirLocked
        naming them. The kernel releases a flock when its process ends, however it ends, so
        the file a killed run leaves behind (a stale lock) does not block a restart. On
        release the file is removed, and so is the workdir if this call created it and nothing
        else was written (a run refused by a check leaves nothing behind). Only the writer
        (process 0) locks.
        """
        if not self.writer:
            yield
            return
        created = not os.path.isdir(self.path)
        os.makedirs(self.path, exist_ok=True)
        fd = _acquire(self.file(LOCK))
        try:
            holder = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.datetime.now().isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.file(LOCK))  # while still locked: see _acquire
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):  # not empty: the run wrote its files
                    os.rmdir(self.path)

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


def _read_json(path: str):
    """The JSON value in the file at `path` (ValueError when it is not JSON text)."""
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def _acquire(path: str) -> int:
    """An open descriptor of `path` holding its exclusive flock; WorkdirLocked if held.

    A holder removes the file before it unlocks, so a descriptor opened just before that
    removal may get the flock of a file no one else sees: it is dropped and the file opened
    again until the locked file is the one at `path`.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            workdir = os.path.dirname(path)
            raise WorkdirLocked(
                f"{workdir} is in use by another run ({holder}); wait for it to end, or use "
                "another --workdir"
            ) from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _holder(fd: int) -> str:
    """'pid P on host H since T' from a lock file's JSON (written just after locking)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {holder['pid']} on host {holder['host']} since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "it has not written its pid yet"
