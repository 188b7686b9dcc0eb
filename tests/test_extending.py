"""A researcher's own dataset and task, plugged in without touching mmjax's core modules.

The test writes, into a temporary folder, what a user would write: a toy dataset (a few lines
registering generated data), a toy task with its model (one file) and a config that names them
in `imports`. It then trains through `python -m mmjax.main` and predicts through
`mmjax.predict`, both of which find the toy entries through the registries alone.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np

from mmjax.workdir import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOY_DATA = '''
import numpy as np

from mmjax import registry
from mmjax.data.datasets import CheckedSource, Dataset

COLOURS = {"red": (220, 30, 30), "green": (30, 220, 30), "blue": (30, 30, 220)}
SIZES = {"train": 96, "validation": 24, "test": 24}


def scene(split, index):
    """An 8x8 image of one colour, with noise, and its colour's name."""
    rng = np.random.default_rng([list(SIZES).index(split), index])
    name = list(COLOURS)[index % 3]
    noise = rng.integers(-30, 30, size=(8, 8, 3))
    image = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
    return {"id": index, "image": image, "captions": [name]}


@registry.DATASETS.register("toy_colours")
class ToyColours(Dataset):
    def source(self, split, images=True):
        records = [scene(split, i) for i in range(SIZES[split])]
        return CheckedSource(records, f"toy_colours {split}", "")
'''

TOY_TASK = """
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

from mmjax import registry
from mmjax.models.build import build_model
from mmjax.tasks.base import Task, checked_image

NAMES = ("red", "green", "blue")


@registry.MODELS.register("toy_mlp")
class ToyMLP(nn.Module):
    num_classes: int
    hidden: int = 16
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images):
        x = images.astype(jnp.float32).reshape(images.shape[0], -1) / 255.0
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)


@registry.TASKS.register("toy_colour_classification")
class ToyColourTask(Task):
    def prepare(self, saved):
        self.model = build_model(self.config.model, "toy_mlp", num_classes=len(NAMES))

    def preprocess(self, record):
        label = NAMES.index(str(record["captions"][0]))
        return {"image": checked_image(record), "label": np.int32(label)}

    def init_params(self, rng, batch):
        return self.model.init(rng, batch["image"])["params"]

    def loss(self, params, batch, rng):
        logits = self.model.apply({"params": params}, batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, {"accuracy": (logits.argmax(-1) == batch["label"]).mean()}

    def predict(self, params, batch):
        logits = self.model.apply({"params": params}, batch["image"])
        return {"label": logits.argmax(-1).astype(jnp.int32)}
"""

TOY_CONFIG = """
import ml_collections

import toy_data  # noqa: F401  (registers toy_colours, for evals_config below)
from mmjax.config_utils import set_training_defaults
from mmjax.data.catalog import evals_config


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.imports = ["toy_data", "toy_task"]  # what predict imports too, from config.json
    config.seed = 0
    config.task = "toy_colour_classification"
    config.data = dict(name="toy_colours", image_size=8, shuffle_seed=0, num_threads=1)
    config.model = dict(name="toy_mlp", hidden=16)
    config.batch_size = 8
    set_training_defaults(config, 60, lr=1e-2)
    evaluator = dict(
        type="classification", batch_size=8, label_key="label", prediction_key="label",
        num_classes=3,
    )
    config.evals = evals_config("toy_colours", evaluator, every=30)
    return config
"""


def _write_project(folder) -> dict:
    for name, text in (("toy_data", TOY_DATA), ("toy_task", TOY_TASK), ("toy_config", TOY_CONFIG)):
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), ROOT]))
    return env


def test_a_toy_dataset_and_task_train_through_main_and_predict(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    env = _write_project(project)
    workdir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmjax.main",
            f"--config={project / 'toy_config.py'}",
            f"--workdir={workdir}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
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
    import mmjax.predict

    predictor = mmjax.predict.load(str(workdir))
    assert predictor.task_name == "toy_colour_classification"
    blue = {"image": np.full((8, 8, 3), (30, 30, 220), np.uint8), "captions": ["blue"]}
    red = {"image": np.full((8, 8, 3), (220, 30, 30), np.uint8), "captions": ["red"]}
    assert int(predictor.predict(blue)["label"]) == 2
    assert int(predictor.predict(red)["label"]) == 0
