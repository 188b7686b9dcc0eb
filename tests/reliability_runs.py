"""Helpers of the reliability tests: the real `python -m mmjax.main` on a tiny VQA config.

Every run of these tests uses one config (tiny model, 64 training scenes, STEPS steps, a
checkpoint every CHECKPOINT_EVERY) so that any stopped and resumed run can be compared,
bitwise, with one uninterrupted reference run of it (`reference_run`, made once per session).
"""

import os
import re
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from mmjax.train.checkpoints import Checkpointer, finished_steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60
CHECKPOINT_EVERY = 10
UNFINISHED = ".orbax-checkpoint-tmp"  # orbax's name for a save still being written


def command(workdir, data_dir, *overrides, python=(sys.executable, "-m", "mmjax.main")):
    """The `python -m mmjax.main` command line of the reliability config."""
    return [
        *python,
        f"--config={ROOT}/configs/vqa_transformer.py:size=tiny,num_train=64,num_test=16",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        f"--config.total_steps={STEPS}",
        f"--config.checkpoint_every={CHECKPOINT_EVERY}",
        "--config.log_every=1",
        "--config.evals.validation.every=1000",  # only the final evaluations
        *overrides,
    ]


def run(workdir, data_dir, *overrides, **kwargs):
    """Runs the command to its end; the CompletedProcess, with text stdout and stderr.

    `kwargs` go to `command` (python) and subprocess.run.
    """
    python = kwargs.pop("python", (sys.executable, "-m", "mmjax.main"))
    return subprocess.run(
        command(workdir, data_dir, *overrides, python=python),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


class Child:
    """A run of the command in the background; its stderr is read as it comes.

    Attributes:
      process: the Popen.
      step: the highest step it has logged (0 before the first).
    """

    def __init__(self, workdir, data_dir, *overrides):
        self.workdir = str(workdir)
        self.started_ns = time.time_ns()
        self.process = subprocess.Popen(
            command(workdir, data_dir, *overrides), cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        self.step = 0
        self._lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            self._lines.append(line)
            match = re.search(r"\] step (\d+)/", line)
            if match:
                self.step = max(self.step, int(match.group(1)))

    def wait_until(self, condition, timeout=120.0, poll=0.002) -> bool:
        """Polls `condition()` until it holds (True) or the process has ended (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if self.process.poll() is not None:
                return condition()
            time.sleep(poll)
        raise TimeoutError(f"no condition met in {timeout} s; stderr: {self.stderr()[-2000:]}")

    def signal(self, sig) -> str:
        """Sends `sig`, waits for the process to end; returns its whole stderr."""
        self.process.send_signal(sig)
        return self.finish()

    def finish(self) -> str:
        """Waits for the process to end; returns its whole stderr."""
        self.process.wait(timeout=120)
        self._reader.join(timeout=30)
        return self.stderr()

    def stderr(self) -> str:
        """The stderr read so far."""
        return "".join(self._lines)


def unfinished_saves(workdir, since_ns: int = 0) -> list[int]:
    """The steps of the saves in workdir/checkpoints that orbax had not finished.

    With `since_ns`, only those whose directory changed since then (time.time_ns()): the saves
    of a run started then, not those a killed run left behind.
    """
    directory = os.path.join(workdir, "checkpoints")
    steps = []
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if name.endswith(UNFINISHED):
            try:
                changed = os.stat(os.path.join(directory, name)).st_mtime_ns
            except FileNotFoundError:  # finished (renamed) meanwhile
                continue
            if changed >= since_ns:
                steps.append(int(name.split(".")[0]))
    return sorted(steps)


def saving(workdir, step: int, since_ns: int = 0) -> bool:
    """Whether the save of `step` is being written in `workdir` (changed since `since_ns`)."""
    return step in unfinished_saves(workdir, since_ns)


def newest_checkpoint(workdir) -> int:
    """The newest finished checkpoint's step (0 when none)."""
    steps = finished_steps(os.path.join(workdir, "checkpoints"))
    return steps[-1] if steps else 0


def resumed_line(step: int) -> str:
    """What a run logs when it starts from the checkpoint at `step` (0: none)."""
    return f"resumed from the checkpoint at step {step}" if step else "starting from step 0"


def state_leaves(workdir, step=None):
    """(step, {path: array}) of the checkpoint at `step` (None: the newest readable one).

    Every leaf of the train state: step, parameters, optimizer state, rng.
    """
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        if step is None:
            step, state, _ = checkpointer.restore_latest()
        else:
            only_state = ocp.args.Composite(state=ocp.args.StandardRestore())
            state = checkpointer.manager.restore(step, args=only_state)["state"]
    finally:
        checkpointer.close()
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return step, {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def assert_bitwise_equal(got, want) -> None:
    """`got` and `want` (from `state_leaves`) hold the same step and identical arrays."""
    (step, leaves), (want_step, want_leaves) = got, want
    assert step == want_step
    assert leaves.keys() == want_leaves.keys()
    assert any("opt_state" in key for key in leaves)  # the optimizer state is compared too
    for key, leaf in leaves.items():
        want_leaf = want_leaves[key]
        assert leaf.dtype == want_leaf.dtype and leaf.shape == want_leaf.shape, key
        assert np.array_equal(leaf, want_leaf), f"{key} differs from the uninterrupted run"


_REFERENCE = {}


def reference_run(tmp_path_factory):
    """(data_dir, workdir, state_leaves) of one uninterrupted run, made once per session."""
    if not _REFERENCE:
        root = tmp_path_factory.mktemp("reliability")
        data_dir, workdir = str(root / "data"), str(root / "reference")
        result = run(workdir, data_dir)
        assert result.returncode == 0, result.stderr[-3000:]
        _REFERENCE["run"] = data_dir, workdir, state_leaves(workdir)
    return _REFERENCE["run"]
