"""Orbax checkpoints of the train state and the data iterator state, in workdir/checkpoints.

Each step's checkpoint is a directory `<step>/` with `state/` (arrays, written by every
process for its own shards) and `data/` (each process's grain iterator state as JSON,
`process_<i>-of-<n>.json`, through grain's orbax handler). Orbax writes into a temporary
directory and renames it when the save is complete, so an unfinished save never looks
finished. A checkpoint that cannot be read back is moved aside to `unreadable_<step>/` (never
deleted) and the next older one is used. Nothing is loaded with pickle.

A save that fails (a full disk, a lost filesystem) is a CheckpointSaveError naming the step
that failed and the newest finished one, which the failed save left untouched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys

import grain
import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from mmjax.config_utils import ConfigError


class CheckpointError(RuntimeError):
    """No checkpoint of a workdir can be read."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint could not be written; the newest finished one is intact."""


# TensorStore's wording of a full disk, a file over RLIMIT_FSIZE, a full quota (ENOSPC, EFBIG,
# EDQUOT), and Python's.
_DISK_FULL = re.compile(
    r"os_error_code='(28|27|122)'|No space left|File too large|quota exceeded", re.IGNORECASE
)


class _IteratorState:
    """An iterator state captured at save time, in the form grain's orbax handler stores.

    The handler calls get_state() when it writes, which may be after the loop has moved on;
    a snapshot keeps the state of the saved step.
    """

    def __init__(self, state: dict | None = None):
        self.state = state

    def get_state(self) -> bytes:
        return json.dumps(self.state).encode()

    def set_state(self, state: bytes) -> None:
        self.state = json.loads(state)

    def start_prefetch(self) -> None:
        pass


class Checkpointer:
    """Saves and restores (TrainState, data iterator state) pairs by step."""

    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": grain.checkpoint.CheckpointHandler(),
            },
        )
        self._pending: int | None = None  # the step of the last save started
        self._failed: CheckpointSaveError | None = None

    def save(self, step: int, state, data_state: dict, force: bool = False) -> None:
        """Starts an asynchronous save of `state` and the iterator state at `step`.

        Waits for the save before it first; CheckpointSaveError when that one or this one fails.
        """
        self.wait()
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    data=grain.checkpoint.CheckpointSave(_IteratorState(data_state)),
                ),
                force=force,
            )
        except Exception as error:  # noqa: BLE001 - any failure to write is a failed save
            raise self._save_failed(step, error) from None
        self._pending = step

    def wait(self) -> None:
        """Blocks until pending saves are written; CheckpointSaveError when one failed."""
        if self._failed is not None:
            raise self._failed
        try:
            self.manager.wait_until_finished()
        except Exception as error:  # noqa: BLE001 - raised here from the background save
            raise self._save_failed(self._pending, error) from None

    def _save_failed(self, step: int | None, error: Exception) -> CheckpointSaveError:
        """The one-line CheckpointSaveError of the save of `step`, remembered for `close`."""
        detail = f"{type(error).__name__}: " + (str(error).strip().splitlines() or [""])[0]
        os_error = re.search(r"\[os_error_code='(\d+)'\]", str(error))
        if os_error:  # TensorStore's paragraph of JSON specs ends with the OS error
            code = int(os_error.group(1))
            detail = f"{os.strerror(code)} [errno {code}]"
        elif len(detail) > 300:
            detail = f"{detail[:200]} ... {detail[-90:]}"
        cause = "the disk is full: " if _DISK_FULL.search(str(error)) else ""
        finished = finished_steps(self.directory)
        kept = (
            f"the checkpoint at step {finished[-1]} is intact and the same command resumes from it"
            if finished
            else "no checkpoint was finished yet, so the same command starts again from step 0"
        )
        self._failed = CheckpointSaveError(
            f"{cause}saving the checkpoint of step {step} failed ({detail}); {kept}"
        )
        return self._failed

    def steps(self) -> list[int]:
        """The steps with a finished checkpoint, ascending."""
        return sorted(self.manager.all_steps())

    def restore_latest(self, abstract_state=None, with_data: bool = True):
        """Returns (step, state, data_state) from the newest readable checkpoint, or None.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings (None: the saved
        arrays on this process's first device). Without `with_data` only the train state is
        read (data_state is None), for tools that need the parameters in any number of
        processes. When a checkpoint fails to load and an older one loads, each failed one is
        moved aside to `unreadable_<step>/` with a warning naming it and the step used. When
        none loads, nothing is moved and CheckpointError names the newest and its error.
        """
        steps = self.steps()
        failed = []
        for step in reversed(steps):
            items = {"state": ocp.args.StandardRestore(self._target(step, abstract_state))}
            if with_data:
                self._check_process_count(step)
                items["data"] = grain.checkpoint.CheckpointRestore(_IteratorState())
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(**items))
            except Exception as error:  # noqa: BLE001 - any damage means: try an older one
                detail = str(error).splitlines()[0][:300] if str(error) else ""
                failed.append((step, f"{type(error).__name__}: {detail}"))
                continue
            for bad, reason in failed:
                logging.warning(
                    "checkpoint at step %d is unreadable (%s); moved it to %s and falling back "
                    "to step %d",
                    bad,
                    reason,
                    self._move_aside(bad),
                    step,
                )
            data = restored["data"].state if with_data else None
            return step, restored["state"], data
        if failed:
            raise CheckpointError(
                f"no checkpoint in {self.directory} could be read; the newest, step "
                f"{failed[0][0]}, failed with {failed[0][1]}. Nothing was moved or deleted; "
                "use a new --workdir to start fresh"
            )
        return None

    def _target(self, step: int, abstract_state):
        """`abstract_state`, or the saved shapes and dtypes on this process's first device."""
        if abstract_state is not None:
            return abstract_state
        try:
            metadata = self.manager.item_metadata(step)["state"]
        except Exception:  # noqa: BLE001 - unreadable metadata: let restore report the damage
            return None
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata
        )

    def _check_process_count(self, step: int) -> None:
        """Refuses to resume data iterators saved by another number of processes."""
        data_dir = os.path.join(self.directory, str(step), "data")
        names = os.listdir(data_dir) if os.path.isdir(data_dir) else []
        counts = {n.rsplit("-of-", 1)[1].removesuffix(".json") for n in names if "-of-" in n}
        if counts and str(jax.process_count()) not in counts:
            raise ConfigError(
                f"the checkpoint at step {step} was written by {counts.pop()} processes and "
                f"this run has {jax.process_count()}; resume with the same number of processes"
            )

    def _move_aside(self, step: int) -> str:
        """Renames the checkpoint of `step` so a new save of that step cannot collide with it."""
        source = os.path.join(self.directory, str(step))
        target = os.path.join(self.directory, f"unreadable_{step}")
        suffix = 0
        while os.path.exists(target):
            suffix += 1
            target = os.path.join(self.directory, f"unreadable_{step}.{suffix}")
        if jax.process_index() == 0:
            os.rename(source, target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"moved aside checkpoint {step}")
        self.manager.reload()
        return target

    def close(self) -> None:
        """Waits for pending saves and releases the manager; CheckpointSaveError if one failed.

        After a failed save the manager is released without waiting again (orbax would raise
        the same failure once more).
        """
        try:
            self.wait()
        finally:
            if self._failed is None:
                self.manager.close()


def finished_steps(directory: str) -> list[int]:
    """The steps with a finished checkpoint under `directory`, ascending ([] when none).

    Orbax renames a save's temporary directory to `<step>` only once it is complete, so a
    directory named by an integer alone is a finished save.
    """
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def restore_params(directory: str, step: int | None = None):
    """(step, params) of the checkpoint at `step` (None: the newest readable one).

    Reads only the parameters, not the optimizer state (orbax's partial restore), as NumPy-backed
    arrays on this process's first device, for inference and notebooks. Nothing is moved or
    written: a newest checkpoint that cannot be read is skipped with a warning naming it.
    Raises CheckpointError when there is no checkpoint, no checkpoint at `step`, or none loads.
    """
    steps = finished_steps(directory)
    if step is not None:
        if step not in steps:
            raise CheckpointError(f"no checkpoint of step {step} in {directory}; it has {steps}")
        steps = [step]
    if not steps:
        raise CheckpointError(f"no finished checkpoint in {directory}")
    from etils import epath  # orbax's own path type; a dependency of orbax

    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    handler = ocp.PyTreeCheckpointHandler()
    errors = []
    try:
        for candidate in reversed(steps):
            path = epath.Path(directory) / str(candidate) / "state"
            try:
                saved = handler.metadata(path)["params"]
                target = {
                    "params": jax.tree.map(
                        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved
                    )
                }
                restored = handler.restore(
                    path,
                    args=ocp.args.PyTreeRestore(
                        item=target,
                        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                        partial_restore=True,
                    ),
                )
            except Exception as error:  # noqa: BLE001 - any damage means: try an older one
                detail = str(error).splitlines()[0][:300] if str(error) else ""
                errors.append((candidate, f"{type(error).__name__}: {detail}"))
                continue
            for bad, reason in errors:
                logging.warning(
                    "checkpoint at step %d is unreadable (%s); using step %d",
                    bad,
                    reason,
                    candidate,
                )
            return candidate, restored["params"]
    finally:
        handler.close()
    raise CheckpointError(
        f"no checkpoint in {directory} could be read; the newest, step {errors[0][0]}, "
        f"failed with {errors[0][1]}"
    )


def quiet_failed_save_reports() -> None:
    """Keeps the report of a failed save to the one line `mmjax.main` prints, in this process.

    A failed background save reaches the main thread as a CheckpointSaveError. Meanwhile orbax
    logs it from each of its threads with a traceback (kept here as one line each), and
    TensorStore's callbacks into orbax's event loop, closed by the failure, print
    "RuntimeError: Event loop is closed" tracebacks (dropped here: they say nothing more).
    """
    logging.getLogger("absl").addFilter(_drop_orbax_tracebacks)
    report = sys.excepthook

    def excepthook(kind, value, traceback):
        if not _is_closed_loop(value):
            report(kind, value, traceback)

    sys.excepthook = excepthook
    unraisable = sys.unraisablehook
    sys.unraisablehook = lambda info: None if _is_closed_loop(info.exc_value) else unraisable(info)


def _drop_orbax_tracebacks(record: logging.LogRecord) -> bool:
    """Logs orbax's records without their traceback (the main thread reports the error)."""
    if record.exc_info and f"{os.sep}orbax{os.sep}" in record.pathname:
        record.exc_info, record.exc_text = None, None
    return True


def _is_closed_loop(error) -> bool:
    return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
