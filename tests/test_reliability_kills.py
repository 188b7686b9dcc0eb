"""SIGKILL of the real `python -m mmjax.main` at random moments, several of them while an
asynchronous checkpoint save is being written; the run started again after the last kill must
end with a train state (parameters, optimizer state, step, rng) bitwise equal to one
uninterrupted run.

The moments come from a seeded generator: while the run starts (imports, restore, compile),
a few steps after the checkpoint it resumed from, or just after the directory of one of its
next saves appears (orbax writes a save into `<step>.orbax-checkpoint-tmp` and renames it
when complete; a save takes about 0.1 s here). A kill landed mid-save when such a directory,
written by the killed run, is still there after the process is dead.
"""

import json
import random
import signal
import time

import pytest
from reliability_runs import (
    CHECKPOINT_EVERY,
    STEPS,
    Child,
    assert_bitwise_equal,
    newest_checkpoint,
    reference_run,
    resumed_line,
    run,
    saving,
    state_leaves,
    unfinished_saves,
)

from mmjax.workdir import LOCK

MID_SAVE_DELAY = 0.02  # seconds, at most, between a save's directory appearing and the kill


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory)


def _moment(rng: random.Random, resumed: int) -> tuple[str, float, float]:
    """(kind, at, delay) of a kill of a run resuming from step `resumed` (0: from scratch).

    "starting": `delay` seconds after launch. "step": `delay` after the run logs step `at`,
    1 to 19 steps on, never its last. "save": `delay` after the save of step `at`, one of the
    run's next two before its last, starts to be written.
    """
    saves = list(range(resumed + CHECKPOINT_EVERY, STEPS, CHECKPOINT_EVERY))[:2]
    kind = rng.choices(["starting", "step", "save"], weights=[1, 2, 3])[0]
    if kind == "starting":
        return kind, 0, rng.uniform(0.3, 3.0)
    if kind == "save" and saves:
        return kind, rng.choice(saves), rng.uniform(0.0, MID_SAVE_DELAY)
    last = min(resumed + 2 * CHECKPOINT_EVERY - 1, STEPS - 1)
    return "step", rng.randint(resumed + 1, last), rng.uniform(0.0, 0.01)


def _kill_once(workdir: str, data_dir: str, kind: str, at: int, delay: float) -> Child:
    """Starts the run, kills it at the moment (kind, at, delay); returns the dead Child."""
    child = Child(workdir, data_dir)
    if kind == "step":
        assert child.wait_until(lambda: child.step >= at), child.stderr()[-3000:]
    elif kind == "save":  # this run's save, not one a killed run left unfinished
        saving_now = lambda: saving(workdir, at, since_ns=child.started_ns)  # noqa: E731
        assert child.wait_until(saving_now), child.stderr()[-3000:]
    time.sleep(delay)
    child.signal(signal.SIGKILL)
    assert child.process.returncode == -signal.SIGKILL, child.stderr()[-3000:]
    return child


def _kill_at_random_moments(reference, workdir: str, kills: int, seed: int) -> int:
    """Kills a run `kills` times, then lets it finish; returns how many kills landed mid-save.

    After each kill: no finished checkpoint was lost, the one of every save the run must have
    waited for is there, an unfinished save is newer than every finished one, and the run's
    lock file is left behind (stale). Each start resumes from the newest finished checkpoint.
    """
    data_dir, _, final = reference
    rng = random.Random(seed)
    mid_save = 0
    for kill in range(1, kills + 1):
        resumed = newest_checkpoint(workdir)
        kind, at, delay = _moment(rng, resumed)
        child = _kill_once(workdir, data_dir, kind, at, delay)
        stderr, newest = child.stderr(), newest_checkpoint(workdir)
        unfinished = unfinished_saves(workdir)  # this run's, or left by a run killed before
        if child.step:  # it trained: it had resumed, and holds the lock
            assert resumed_line(resumed) in stderr
            with open(f"{workdir}/{LOCK}") as f:
                assert json.load(f)["pid"] == child.process.pid
        # Having logged step s, the run had started the save of every multiple of
        # CHECKPOINT_EVERY below s, so the save before that one had finished.
        waited = (child.step - 1) // CHECKPOINT_EVERY * CHECKPOINT_EVERY - CHECKPOINT_EVERY
        assert max(resumed, waited) <= newest <= max(resumed, child.step), (kind, at, stderr)
        assert all(step > newest for step in unfinished)  # never taken for finished
        landed = bool(unfinished_saves(workdir, since_ns=child.started_ns))
        mid_save += landed
        print(
            f"kill {kill}: {kind} {at} +{delay:.3f} s, at step {child.step}"
            f"{' mid-save' if landed else ''}; checkpoints up to {newest}"
        )
    newest = newest_checkpoint(workdir)
    result = run(workdir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert resumed_line(newest) in result.stderr
    assert_bitwise_equal(state_leaves(workdir), final)
    print(f"{mid_save} of {kills} kills landed while a save was being written")
    return mid_save


def test_sigkill_at_random_moments_then_restart_ends_bitwise_equal(reference, tmp_path):
    # Two kills, then the run to its end: three starts of mmjax.main (about 12 s each on an
    # idle 2-core machine). The seed draws a kill 18 steps on, then one during a save.
    assert _kill_at_random_moments(reference, str(tmp_path / "run"), kills=2, seed=3) >= 1


@pytest.mark.slow  # about 5 minutes on 2 cores (296 s measured): 21 starts of mmjax.main
def test_sigkill_at_20_random_moments_then_restart_ends_bitwise_equal(reference, tmp_path):
    assert _kill_at_random_moments(reference, str(tmp_path / "run"), kills=20, seed=2025) >= 3
