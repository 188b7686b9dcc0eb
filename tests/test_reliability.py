"""Reliability of the real `python -m mmjax.main`: SIGTERM during a save and SIGINT, a full disk
during a save, two runs on one workdir, damaged and unreadable checkpoints, non-finite steps,
config mistakes, and pickled or executable files in a workdir.

A run that is stopped and resumed must end with a train state (parameters, optimizer state,
step, rng) bitwise equal to one uninterrupted reference run of the same config
(`reliability_runs`). SIGKILL at random moments is in test_reliability_kills.py.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from reliability_runs import (
    CHECKPOINT_EVERY,
    ROOT,
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

from mmjax.train.checkpoints import finished_steps
from mmjax.workdir import LOCK, Workdir, WorkdirLocked


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory)


def test_sigterm_during_a_save_and_sigint_save_the_current_step_and_exit_cleanly(
    reference, tmp_path
):
    data_dir, _, final = reference
    workdir = str(tmp_path / "run")
    # SIGTERM while the asynchronous save of step 20 is being written.
    child = Child(workdir, data_dir)
    assert child.wait_until(lambda: saving(workdir, 20)), child.stderr()[-3000:]
    sent = time.monotonic()
    stderr = child.signal(signal.SIGTERM)
    assert time.monotonic() - sent < 30
    assert child.process.returncode == 0, stderr[-3000:]
    saved = int(re.search(r"SIGTERM received: saved step (\d+), exiting", stderr).group(1))
    assert 20 <= saved < STEPS
    # The save in flight was finished, not abandoned; the step it stopped at was saved too.
    assert unfinished_saves(workdir) == []
    assert 20 in finished_steps(f"{workdir}/checkpoints") and newest_checkpoint(workdir) == saved

    child = Child(workdir, data_dir)
    assert child.wait_until(lambda: child.step >= 41)
    sent = time.monotonic()
    stderr = child.signal(signal.SIGINT)
    assert time.monotonic() - sent < 30
    assert child.process.returncode == 0, stderr[-3000:]
    assert resumed_line(saved) in stderr
    saved = int(re.search(r"SIGINT received: saved step (\d+), exiting", stderr).group(1))
    assert 41 <= saved < STEPS and newest_checkpoint(workdir) == saved

    result = run(workdir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert resumed_line(saved) in result.stderr
    assert_bitwise_equal(state_leaves(workdir), final)


def _with_file_size_limit(limit: int) -> tuple[str, ...]:
    """`python -m mmjax.main` where files may not grow past `limit` bytes: a write past it fails
    (EFBIG; SIGXFSZ is ignored, not fatal), as on a full disk."""
    return (
        sys.executable,
        "-c",
        "import resource, runpy, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "runpy.run_module('mmjax.main', run_name='__main__', alter_sys=True)",
    )


def test_a_full_disk_during_a_save_stops_in_one_line_and_keeps_the_previous_checkpoint(
    reference, tmp_path
):
    data_dir, reference_dir, _ = reference
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_dir, workdir)
    previous = STEPS - 2 * CHECKPOINT_EVERY
    for step in (previous + CHECKPOINT_EVERY, STEPS):
        shutil.rmtree(f"{workdir}/checkpoints/{step}")
    # Room for the files the run appends to, not for a checkpoint's array files (orbax groups
    # the 0.4 MiB of arrays into a few files of up to about 240 KB).
    limit = 48_000
    assert os.path.getsize(f"{workdir}/metrics.jsonl") + 10_000 < limit

    result = run(workdir, data_dir, python=_with_file_size_limit(limit))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    reports = [line for line in result.stderr.splitlines() if line.startswith("mmjax:")]
    assert reports == result.stderr.strip().splitlines()[-1:], result.stderr[-3000:]
    failed = re.fullmatch(
        r"mmjax: checkpoint error: the disk is full: saving the checkpoint of step (\d+) failed "
        r"\(File too large \[errno 27\]\); the checkpoint at step (\d+) is intact and the same "
        r"command resumes from it",
        reports[0],
    )
    assert failed, reports[0]
    step, intact = int(failed.group(1)), int(failed.group(2))
    assert step == intact + CHECKPOINT_EVERY and intact >= previous
    assert newest_checkpoint(workdir) == intact and unfinished_saves(workdir) == [step]
    # What the same command resumes from: the intact checkpoint, as the reference saved it.
    assert_bitwise_equal(state_leaves(workdir), state_leaves(reference_dir, intact))


def test_a_second_run_on_the_workdir_is_refused_naming_the_first(reference, tmp_path):
    data_dir = reference[0]
    workdir = tmp_path / "run"
    first = Child(workdir, data_dir, "--config.total_steps=1000000")  # trains until killed

    def locked_by_first():
        try:
            return json.loads((workdir / LOCK).read_text())["pid"] == first.process.pid
        except (OSError, ValueError, KeyError):
            return False

    try:
        assert first.wait_until(locked_by_first), first.stderr()[-3000:]
        second = run(workdir, data_dir)
        assert first.process.poll() is None  # the first held the workdir all along
    finally:
        first.signal(signal.SIGKILL)
    assert second.returncode == 2, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines()[-1] == (
        f"mmjax: workdir error: {workdir} is in use by another run (pid {first.process.pid} on "
        f"host {socket.gethostname()} since "
        f"{json.loads((workdir / LOCK).read_text())['since']}); wait for it to end, or use "
        "another --workdir"
    )
    # The killed run's lock file stays behind, stale: it does not block the next run.
    with Workdir(workdir).lock():
        assert json.loads((workdir / LOCK).read_text())["pid"] == os.getpid()
    assert not (workdir / LOCK).exists()


def test_the_workdir_lock_is_exclusive_and_released(tmp_path):
    workdir = tmp_path / "new"
    with Workdir(workdir).lock():
        holder = json.loads((workdir / LOCK).read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(WorkdirLocked, match=rf"in use by another run \(pid {os.getpid()} "):
            with Workdir(workdir).lock():
                pass
    assert not workdir.exists()  # created by the lock, nothing else written: removed again
    with Workdir(workdir).lock():
        (workdir / "config.json").write_text("{}")
    assert os.listdir(workdir) == ["config.json"]


def test_a_stale_lock_of_a_killed_process_does_not_block(tmp_path):
    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from mmjax.workdir import Workdir\n"
            "with Workdir(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(600)",
            str(workdir),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "locked\n"
    with pytest.raises(WorkdirLocked, match=f"pid {holder.pid} "):
        with Workdir(workdir).lock():
            pass
    holder.kill()
    holder.wait()
    assert json.loads((workdir / LOCK).read_text())["pid"] == holder.pid  # left behind
    with Workdir(workdir).lock():
        assert json.loads((workdir / LOCK).read_text())["pid"] == os.getpid()


def _truncate_arrays(step_dir):
    for path in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)


def _delete_metadata(step_dir):
    os.remove(os.path.join(step_dir, "state", "manifest.ocdbt"))
    os.remove(os.path.join(step_dir, "state", "_METADATA"))


def test_damaged_checkpoints_fall_back_to_the_newest_good_one(reference, tmp_path):
    data_dir, reference_dir, final = reference
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_dir, workdir)
    checkpoints = os.path.join(workdir, "checkpoints")
    newest, older, good = STEPS, STEPS - CHECKPOINT_EVERY, STEPS - 2 * CHECKPOINT_EVERY
    _truncate_arrays(f"{checkpoints}/{newest}")
    _delete_metadata(f"{checkpoints}/{older}")

    result = run(workdir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    for bad in (newest, older):
        warning = rf"checkpoint at step {bad} is unreadable .* falling back to step {good}"
        assert re.search(warning, result.stderr), result.stderr[-3000:]
        assert os.path.isdir(f"{checkpoints}/unreadable_{bad}")  # kept, never deleted
    assert resumed_line(good) in result.stderr
    assert_bitwise_equal(state_leaves(workdir), final)


def test_when_no_checkpoint_is_readable_nothing_is_moved_and_the_run_stops(reference, tmp_path):
    data_dir, reference_dir, _ = reference
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_dir, workdir)
    checkpoints = os.path.join(workdir, "checkpoints")
    steps = sorted(os.listdir(checkpoints))
    for step in steps:
        os.remove(f"{checkpoints}/{step}/state/manifest.ocdbt")
    result = run(workdir, data_dir)
    assert result.returncode == 1
    # One line, though orbax's reader threads may print their own tracebacks around it.
    assert re.search(
        rf"mmjax: checkpoint error: no checkpoint in {checkpoints} could be read; the newest, "
        rf"step {STEPS}, failed with .* Nothing was moved or deleted; use a new --workdir",
        result.stderr,
    ), result.stderr[-3000:]
    assert sorted(os.listdir(checkpoints)) == steps


def _files(directory) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, modification time) of every file under `directory`."""
    return {
        os.path.relpath(path, directory): (os.path.getsize(path), os.stat(path).st_mtime_ns)
        for path in glob.glob(f"{directory}/**", recursive=True)
        if os.path.isfile(path)
    }


def test_config_mistakes_and_another_models_workdir_stop_in_one_line_writing_nothing(
    reference, tmp_path
):
    data_dir, reference_dir, _ = reference
    result = run(tmp_path / "new", data_dir, "--config.optim.lrr=3")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "mmjax: config error: unknown config key 'optim.lrr'; did you mean 'lr'?"
    ]
    assert not (tmp_path / "new").exists()

    workdir = str(tmp_path / "run")
    shutil.copytree(reference_dir, workdir)
    before = _files(workdir)
    result = run(workdir, data_dir, "--config.model.width=48")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "mmjax: config error: the workdir's checkpoints are of another model.width: 32 -> 48; "
        "use a new --workdir, or delete the old one, to start fresh"
    )
    assert _files(workdir) == before


def test_diverging_run_stops_naming_the_step_and_the_last_good_checkpoint(reference, tmp_path):
    data_dir, _, _ = reference
    workdir = str(tmp_path / "run")
    result = run(
        workdir,
        data_dir,
        "--config.optim.lr=1e30",
        "--config.checkpoint_every=1",
        "--config.total_steps=10",
    )
    assert result.returncode == 1, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        r"mmjax: training stopped: step (\d+) is not finite \(loss \S+, gradient norm \S+, "
        r"update norm \S+\) and was not applied; last good checkpoint: step (\d+)\. .*",
        last_line,
    )
    assert match, last_line
    bad, good = int(match.group(1)), int(match.group(2))
    assert good == bad - 1
    step, leaves = state_leaves(workdir)
    assert step == good and all(np.isfinite(x).all() for x in leaves.values())


def test_skip_mode_counts_skipped_steps_and_finishes(reference, tmp_path):
    data_dir, _, _ = reference
    workdir = str(tmp_path / "run")
    overrides = ("--config.optim.lr=1e30", "--config.on_nonfinite=skip", "--config.total_steps=10")
    result = run(workdir, data_dir, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        last_train = [line for line in f if "train/skipped_steps" in line][-1]
    skipped = int(float(re.search(r'"train/skipped_steps": ([0-9.]+)', last_train).group(1)))
    assert 0 < skipped < 10
    step, leaves = state_leaves(workdir)
    assert step == 10 and all(np.isfinite(x).all() for x in leaves.values())
