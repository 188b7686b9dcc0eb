"""mmjax.plot: curves from metrics.jsonl (a resumed run's repeated steps keep their last value),
one PNG per metric group with every run in each panel, and one-line errors from the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mmjax.plot import PlotError, plot_runs, select_metrics, series, smooth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _workdir(path, records):
    os.makedirs(path)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return str(path)


def _records(scale):
    records = [{"step": s, "train/loss": scale / s, "train/steps_per_sec": 9.0} for s in (1, 2, 3)]
    # Resumed from step 2: step 3 is logged again, and the second value is the one that counts.
    records.append({"step": 3, "train/loss": scale / 30, "train/steps_per_sec": 9.0})
    records.append({"step": 3, "test/accuracy": 0.5, "test/accuracy/left": None, "test/seconds": 1})
    return records


def test_series_keeps_the_last_value_of_a_step_and_skips_missing_ones():
    records = _records(1.0)
    assert series(records, "train/loss") == ([1, 2, 3], [1.0, 0.5, 1 / 30])
    assert series(records, "test/accuracy/left") == ([], [])


def test_smooth_is_the_debiased_moving_average():
    values = [1.0, 3.0, 2.0]
    weight = 0.5
    # a_i = w a_{i-1} + (1 - w) x_i from a_0 = 0, then divided by 1 - w^i.
    ema = [0.5, 0.5 * 0.5 + 1.5, 0.5 * 1.75 + 1.0]
    expected = [e / (1 - weight ** (i + 1)) for i, e in enumerate(ema)]
    np.testing.assert_allclose(smooth(values, weight), expected)
    assert smooth(values, 0.0) == values
    with pytest.raises(PlotError, match="must lie in"):
        smooth(values, 1.0)


def test_metrics_are_grouped_and_bookkeeping_is_left_out(tmp_path):
    runs = {"a": _records(1.0)}
    assert select_metrics(runs, None) == {
        "test": ["test/accuracy", "test/accuracy/left"],
        "train": ["train/loss"],
    }
    assert select_metrics(runs, "seconds") == {"test": ["test/seconds"]}
    with pytest.raises(PlotError, match="no metric matches 'nope'; the runs have"):
        select_metrics(runs, "nope")


def test_plot_runs_writes_one_png_per_group_for_several_runs(tmp_path):
    first = _workdir(tmp_path / "lr=1e-3", _records(1.0))
    second = _workdir(tmp_path / "lr=3e-4", _records(2.0))
    paths = plot_runs([first, second], str(tmp_path / "out"), smoothing=0.5)
    assert sorted(os.path.basename(p) for p in paths) == ["test.png", "train.png"]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100
    with pytest.raises(PlotError, match="has no metrics.jsonl"):
        plot_runs([str(tmp_path)], str(tmp_path / "out"))


def test_cli_writes_into_the_workdir_and_errors_in_one_line(tmp_path):
    workdir = _workdir(tmp_path / "run", _records(1.0))
    cmd = [sys.executable, "-m", "mmjax.plot", f"--workdir={workdir}", "--metrics=loss"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [os.path.join(workdir, "plots", "train.png")]
    cmd = [sys.executable, "-m", "mmjax.plot", f"--workdir={workdir}", f"--workdir={workdir}"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "mmjax: plot error: with several --workdir, name the output directory with --out"
    )
