"""Reliability of the real `python -m mmjax.main`: exact resume after SIGKILL, SIGTERM and
SIGINT, damaged and unfinished checkpoints, non-finite steps, and no pickle on restore.

Every resumed run must end with parameters bitwise equal to one uninterrupted reference run of
the same config (tiny model, tiny dataset, a checkpoint every few steps).
"""

import glob
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from mmjax.train.checkpoints import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60
CHECKPOINT_EVERY = 10


def _command(workdir, data_dir, *overrides):
    return [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={ROOT}/configs/vqa_transformer.py:size=tiny,num_train=64,num_test=16",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        f"--config.total_steps={STEPS}",
        f"--config.checkpoint_every={CHECKPOINT_EVERY}",
        "--config.log_every=1",
        "--config.evals.validation.every=1000",  # only the final evaluations
        *overrides,
    ]


def _run(workdir, data_dir, *overrides):
    return subprocess.run(
        _command(workdir, data_dir, *overrides),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _start_and_signal(workdir, data_dir, at_step, sig):
    """Starts a run, sends `sig` once it logs step `at_step`; returns (process, stderr, t0)."""
    process = subprocess.Popen(
        _command(workdir, data_dir), cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        match = re.search(r"step (\d+)/", line)
        if match and int(match.group(1)) >= at_step:
            break
    sent = time.monotonic()
    process.send_signal(sig)
    seen.append(process.stderr.read())
    process.wait(timeout=60)
    return process, "".join(seen), sent


def _newest_checkpoint(workdir):
    steps = Checkpointer(os.path.join(workdir, "checkpoints")).steps()
    return steps[-1] if steps else 0


def _params(workdir):
    """The final checkpoint's step and its parameter leaves as NumPy arrays."""
    step, state, _ = Checkpointer(os.path.join(workdir, "checkpoints")).restore_latest()
    return step, [np.asarray(x) for x in jax.tree.leaves(state["params"])]


def _assert_bitwise_equal(workdir, reference):
    step, params = _params(workdir)
    ref_step, ref_params = reference
    assert step == ref_step == STEPS
    assert len(params) == len(ref_params)
    for got, want in zip(params, ref_params, strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    data_dir, workdir = str(root / "data"), str(root / "reference")
    result = _run(workdir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return data_dir, workdir, _params(workdir)


def test_sigkill_at_three_steps_then_restart_ends_bitwise_equal(reference, tmp_path):
    data_dir, _, final = reference
    workdir = str(tmp_path / "run")
    newest = 0
    for kill_at in (13, 32, 54):
        process, stderr, _ = _start_and_signal(workdir, data_dir, kill_at, signal.SIGKILL)
        assert process.returncode == -signal.SIGKILL
        if newest:
            assert f"resumed from the checkpoint at step {newest}" in stderr
        newest = _newest_checkpoint(workdir)
    assert newest >= 32
    result = _run(workdir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from the checkpoint at step {newest}" in result.stderr
    _assert_bitwise_equal(workdir, final)


def test_sigterm_and_sigint_save_the_current_step_and_exit_cleanly(reference, tmp_path):
    data_dir, _, final = reference
    workdir = str(tmp_path / "run")
    saved_before = None
    for sig, at_step in ((signal.SIGTERM, 18), (signal.SIGINT, 41)):
        process, stderr, sent = _start_and_signal(workdir, data_dir, at_step, sig)
        assert time.monotonic() - sent < 30
        assert process.returncode == 0, stderr[-3000:]
        if saved_before:
            assert f"resumed from the checkpoint at step {saved_before}" in stderr
        saved = re.search(rf"{sig.name} received: saved step (\d+), exiting", stderr)
        assert saved, stderr[-3000:]
        saved_before = int(saved.group(1))
        assert at_step <= saved_before < STEPS
        assert _newest_checkpoint(workdir) == saved_before  # the step it stopped at, not older
    result = _run(workdir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from the checkpoint at step {saved_before}" in result.stderr
    _assert_bitwise_equal(workdir, final)


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
    # An unfinished save of a later step, as a crash in the middle of writing leaves it.
    unfinished = os.path.join(checkpoints, f"{STEPS + 5}.orbax-checkpoint-tmp-1764460800000000")
    shutil.copytree(os.path.join(checkpoints, str(good)), unfinished)
    os.remove(os.path.join(unfinished, "commit_success.txt"))
    # The newest has truncated array files, the one before lost its metadata.
    for path in glob.glob(f"{checkpoints}/{newest}/state/**/d/*", recursive=True):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    os.remove(f"{checkpoints}/{older}/state/manifest.ocdbt")
    os.remove(f"{checkpoints}/{older}/state/_METADATA")

    result = _run(workdir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    for bad in (newest, older):
        warning = rf"checkpoint at step {bad} is unreadable .* falling back to step {good}"
        assert re.search(warning, result.stderr), result.stderr[-3000:]
        assert os.path.isdir(f"{checkpoints}/unreadable_{bad}")  # kept, never deleted
    assert f"resumed from the checkpoint at step {good}" in result.stderr
    _assert_bitwise_equal(workdir, final)


def test_when_no_checkpoint_is_readable_nothing_is_moved_and_the_run_stops(reference, tmp_path):
    data_dir, reference_dir, _ = reference
    workdir = str(tmp_path / "run")
    shutil.copytree(reference_dir, workdir)
    checkpoints = os.path.join(workdir, "checkpoints")
    steps = sorted(os.listdir(checkpoints))
    for step in steps:
        os.remove(f"{checkpoints}/{step}/state/manifest.ocdbt")
    result = _run(workdir, data_dir)
    assert result.returncode == 1
    # One line, though orbax's reader threads may print their own tracebacks around it.
    assert re.search(
        rf"mmjax: checkpoint error: no checkpoint in {checkpoints} could be read; the newest, "
        rf"step {STEPS}, failed with .* Nothing was moved or deleted; use a new --workdir",
        result.stderr,
    ), result.stderr[-3000:]
    assert sorted(os.listdir(checkpoints)) == steps


def test_checkpoints_restore_without_pickle(reference, monkeypatch):
    _, reference_dir, final = reference

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was loaded with pickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    _assert_bitwise_equal(reference_dir, final)


def test_diverging_run_stops_naming_the_step_and_the_last_good_checkpoint(reference, tmp_path):
    data_dir, _, _ = reference
    workdir = str(tmp_path / "run")
    result = _run(
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
    step, params = _params(workdir)
    assert step == good and all(np.isfinite(p).all() for p in params)


def test_skip_mode_counts_skipped_steps_and_finishes(reference, tmp_path):
    data_dir, _, _ = reference
    workdir = str(tmp_path / "run")
    overrides = ("--config.optim.lr=1e30", "--config.on_nonfinite=skip", "--config.total_steps=10")
    result = _run(workdir, data_dir, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        last_train = [line for line in f if "train/skipped_steps" in line][-1]
    skipped = int(float(re.search(r'"train/skipped_steps": ([0-9.]+)', last_train).group(1)))
    assert 0 < skipped < 10
    step, params = _params(workdir)
    assert step == 10 and all(np.isfinite(p).all() for p in params)
