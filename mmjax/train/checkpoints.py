"""Orbax checkpoints of the train state and the data iterator state, in workdir/checkpoints.

Each step's checkpoint is a directory `<step>/` with `state/` (arrays, written by every
process for its own shards) and `data/` (the grain iterator state of process 0 as JSON;
per-process states are stored under their process index). Orbax writes into a temporary
directory and renames it when the save is complete, so an unfinished save never looks
finished. A checkpoint that cannot be read back is moved aside to `unreadable_<step>/` (never
deleted) and the next older one is used. Nothing is loaded with pickle.
"""

from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


class Checkpointer:
    """Saves and restores (TrainState, data iterator state) pairs by step."""

    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def save(self, step: int, state, data_state: dict, force: bool = False) -> None:
        """Starts an asynchronous save of `state` and the iterator state at `step`."""
        data = {f"process_{jax.process_index()}": data_state}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data)
            ),
            force=force,
        )

    def wait(self) -> None:
        """Blocks until pending saves are written."""
        self.manager.wait_until_finished()

    def steps(self) -> list[int]:
        """The steps with a finished checkpoint, ascending."""
        return sorted(self.manager.all_steps())

    def restore_latest(self, abstract_state=None):
        """Returns (step, state, data_state) from the newest readable checkpoint, or None.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings (None: the arrays
        as saved). A checkpoint that fails to load is moved aside, with a warning naming it
        and the one used instead.
        """
        steps = self.steps()
        for position, step in enumerate(reversed(steps)):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state),
                        data=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as error:  # noqa: BLE001 - any damage means: try an older one
                older = steps[-position - 2] if position + 1 < len(steps) else None
                aside = self._move_aside(step)
                logging.warning(
                    "checkpoint at step %d is unreadable (%s: %s); moved it to %s and falling "
                    "back to %s",
                    step,
                    type(error).__name__,
                    str(error).splitlines()[0][:300] if str(error) else "",
                    aside,
                    f"step {older}" if older is not None else "a fresh start",
                )
                continue
            data = restored["data"].get(f"process_{jax.process_index()}")
            return step, restored["state"], data
        return None

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
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
