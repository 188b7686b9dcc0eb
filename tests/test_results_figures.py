"""The results-figure command's pieces: learning-curve panels, the pointing statistic's geometry,
and the rule that keeps committed run files of the same run."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from mmjax.plot import PlotError
from mmjax.plot.panels import Curve, Panel, curves_figure
from mmjax.projects.sort_of_clevr.results_examples import object_cells, referent
from mmjax.projects.sort_of_clevr.results_figures import copy_run_files, finished

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VQA = os.path.join(ROOT, "mmjax", "projects", "sort_of_clevr", "results", "default_vqa")


def _records():
    with open(os.path.join(DEFAULT_VQA, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_curves_figure_draws_its_panels_and_names_a_missing_metric(tmp_path):
    records = _records()
    panels = [
        Panel("loss", "loss", [Curve("train/loss", "train")], log_y=True, smoothing=0.3),
        Panel(
            "acc",
            "%",
            [
                Curve("validation/accuracy/relational", "validation", 100),
                Curve("test/accuracy/relational", "test", 100, color=0),  # logged once: a star
            ],
            references=[(45.6, "baseline")],
        ),
    ]
    path = curves_figure(records, panels, str(tmp_path / "curves.png"), "a title")
    with Image.open(path) as image:
        assert image.size == (2 * 420, 340)
    with pytest.raises(PlotError, match="no metric 'validation/nothing'"):
        curves_figure(
            records, [Panel("x", "y", [Curve("validation/nothing", "x")])], str(tmp_path / "x.png")
        )


def test_object_cells_and_the_object_a_relational_question_asks_about():
    # A 15 x 15 grid of 5-pixel cells; an object's 11 x 11 box around (x, y) = (12, 30)
    # spans x 7..17 (columns 1..3) and y 25..35 (rows 5..7).
    cells = object_cells((12, 30), (15, 15), 75)
    assert cells == {r * 15 + c for r in (5, 6, 7) for c in (1, 2, 3)}
    objects = {
        "color": np.arange(6),
        "center": np.array([[10, 10], [20, 10], [70, 70], [40, 40], [10, 60], [60, 10]]),
    }
    assert referent(objects, 0, "closest") == 1
    assert referent(objects, 0, "furthest") == 2
    assert referent(objects, 0, "shape") is None


def _run(path, data_dir, accuracy, seconds):
    os.makedirs(path, exist_ok=True)
    config = {"data": {"data_dir": data_dir}, "total_steps": 10}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 10, "test/accuracy": accuracy, "test/seconds": seconds}))
        f.write("\n")


def test_committed_run_files_of_the_same_run_are_kept_and_others_replaced(tmp_path):
    run, folder = tmp_path / "run", tmp_path / "results"
    _run(run, "/data/a", 0.9, 1.0)
    assert finished(str(run))
    assert not copy_run_files(str(run), str(folder))  # copied: nothing was there
    assert not copy_run_files(str(run), str(folder))  # the same files
    _run(run, "/data/b", 0.9, 2.0)  # the same run read from elsewhere, timed anew
    assert copy_run_files(str(run), str(folder))  # kept
    assert json.loads((folder / "config.json").read_text())["data"]["data_dir"] == "/data/a"
    _run(run, "/data/b", 0.8, 2.0)  # another run
    assert not copy_run_files(str(run), str(folder))
    assert json.loads((folder / "config.json").read_text())["data"]["data_dir"] == "/data/b"
    assert not finished(str(tmp_path / "nothing"))
