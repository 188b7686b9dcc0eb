"""End to end: the real `python -m mmjax.main` on the tiny config and a tiny dataset."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(workdir, data_dir, *overrides, cwd=ROOT):
    config = os.path.join(ROOT, "configs", "vqa_transformer.py")
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={config}:size=tiny,num_train=64,num_test=16",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        *overrides,
    ]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    # A relative --workdir, as in the README's command.
    result = _main("run", "data", "--config.total_steps=40", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return str(root / "run"), str(root / "data"), result


def test_loss_falls_and_outputs_are_written(first_run):
    workdir, _, result = first_run
    losses = [r["train/loss"] for r in _records(workdir) if "train/loss" in r]
    assert losses[-1] < 0.8 * losses[0], losses
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "40"))
    assert os.path.exists(os.path.join(workdir, "config.json"))
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    final = _records(workdir)[-1]
    assert final["step"] == 40 and 0.0 <= final["test/accuracy/relational"] <= 1.0
    assert "question-only" in result.stdout and "relational" in result.stdout


def test_second_run_resumes_from_the_saved_step(first_run):
    workdir, data_dir, _ = first_run
    result = _main(workdir, data_dir, "--config.total_steps=60")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from the checkpoint at step 40" in result.stderr
    train_steps = [r["step"] for r in _records(workdir) if "train/loss" in r]
    assert train_steps[-1] == 60
    assert min(s for s in train_steps if s > 40) > 40  # nothing re-ran from step 0
    assert train_steps.count(1) == 1


def test_config_error_is_one_line_and_leaves_no_workdir(tmp_path):
    workdir = tmp_path / "never"
    result = _main(str(workdir), str(tmp_path / "data"), "--config.optim.lrr=1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("mmjax: config error: unknown")
    assert not workdir.exists()


def test_batch_that_does_not_divide_over_devices_stops_before_anything_is_written(tmp_path):
    workdir = tmp_path / "never"
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=3"
    env = dict(os.environ, XLA_FLAGS=flags)
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        "--config=configs/vqa_transformer.py:size=tiny",
        f"--workdir={workdir}",
        f"--config.data.data_dir={tmp_path / 'data'}",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "mmjax: config error: batch_size=4 does not divide over 3 data-parallel devices "
        "in 1 processes"
    )
    assert not workdir.exists() and not (tmp_path / "data").exists()
