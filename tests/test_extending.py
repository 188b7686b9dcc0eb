"""docs/extending.md's worked example, run as written: a researcher's own dataset, model, task
and evaluator plugged in without touching mmjax's core modules.

The test copies every Python block of the page whose first line is `# <name>.py` into a
temporary folder, then runs the page's command (`python -m mmjax.main --config=my_config.py`),
checks that the toy model learned and that the custom evaluator's numbers equal a direct count
over the test split, and predicts through `mmjax.predict`, which finds the toy entries through
the registries alone (from `config.imports` in config.json). About 20 s on 2 cores.
"""

import os
import re
import subprocess
import sys

import numpy as np

from mmjax.workdir import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "extending.md")
_BLOCK = re.compile(r"^```python\n# (\w+\.py)\n(.*?)^```", re.S | re.M)


def page_files() -> dict[str, str]:
    """File name -> text of each `# <name>.py` block of docs/extending.md."""
    with open(PAGE) as f:
        return {name: body for name, body in _BLOCK.findall(f.read())}


def _documented_command() -> list[str]:
    """The page's mmjax.main command's arguments (after `python -m mmjax.main`)."""
    with open(PAGE) as f:
        match = re.search(r"^PYTHONPATH=\. python -m mmjax\.main (.*)$", f.read(), re.M)
    assert match, "docs/extending.md lost its run command"
    return match.group(1).split()


def test_the_page_holds_each_file_of_the_example():
    assert set(page_files()) == {
        "my_data.py",
        "my_model.py",
        "my_task.py",
        "my_evaluator.py",
        "my_config.py",
    }


def test_the_worked_example_trains_evaluates_and_predicts(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    for name, text in page_files().items():
        (project / name).write_text(text)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(project), ROOT]))
    args = _documented_command()  # --config=my_config.py --workdir=runs/mine
    result = subprocess.run(
        [sys.executable, "-m", "mmjax.main", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    workdir = project / "runs" / "mine"
    records = read_metrics(str(workdir))
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < 0.5 * losses[0]  # it learned
    final = records[-1]
    assert final["validation/accuracy"] >= 0.9 and final["test/accuracy"] >= 0.9
    # The validation split is evaluated during training, the test split only at the end.
    assert [r["step"] for r in records if "validation/accuracy" in r] == [30, 60]
    assert [r["step"] for r in records if "test/accuracy" in r] == [60]

    # Predict in this process: config.imports brings the toy modules back from config.json.
    monkeypatch.syspath_prepend(str(project))
    import my_data

    import mmjax.predict

    predictor = mmjax.predict.load(str(workdir))
    assert predictor.task_name == "toy_colour_classification"
    blue = {"image": np.full((8, 8, 3), (30, 30, 220), np.uint8), "captions": ["blue"]}
    red = {"image": np.full((8, 8, 3), (220, 30, 30), np.uint8), "captions": ["red"]}
    assert int(predictor.predict(blue)["label"]) == 2
    assert int(predictor.predict(red)["label"]) == 0

    # The custom evaluator's recall per colour equals a direct count over the test split.
    names = ["red", "green", "blue"]
    hits, totals = np.zeros(3), np.zeros(3)
    for i in range(my_data.SIZES["test"]):
        record = my_data.scene("test", i)
        label = names.index(record["captions"][0])
        totals[label] += 1
        hits[label] += int(predictor.predict(record)["label"]) == label
    recalls = {f"test_recall/recall/{n}": hits[c] / totals[c] for c, n in enumerate(names)}
    assert {k: final[k] for k in recalls} == recalls


def test_the_evaluator_leaves_out_padding_and_absent_classes(monkeypatch, tmp_path):
    (tmp_path / "my_evaluator.py").write_text(page_files()["my_evaluator.py"])
    monkeypatch.syspath_prepend(str(tmp_path))
    from my_evaluator import PerClassRecall

    evaluator = PerClassRecall(["a", "b", "c"])
    pairs = [
        ({"label": np.array([0, 0, 1]), "_mask": np.array([1, 1, 1])}, {"label": [0, 1, 1]}),
        ({"label": np.array([1, 2]), "_mask": np.array([1, 0])}, {"label": [0, 2]}),  # 2: pad
    ]
    assert evaluator.evaluate(pairs) == {"recall/a": 0.5, "recall/b": 0.5}
