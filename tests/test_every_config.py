"""Every config file in the repository loads, validates and names entries that exist.

A config file is any Python file outside tests/ that defines `get_config`, found by a scan, so a
new one is covered without editing this test. Each is loaded as `--config=FILE` would load it
(and with `size=tiny` where it takes that argument, and as each trial of its `get_sweep`),
validated, and its task, dataset, model and evaluators looked up and checked as `mmjax.main`
does before a run; the task is built on its dataset (no data is read or generated).
"""

import os
import re

import pytest

from mmjax import registry, setup_check, sweeps
from mmjax.config_loader import load_config, validate_config
from mmjax.config_utils import ConfigError
from mmjax.experiment import build_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {"tests", "runs", "notebooks", "build", "__pycache__"}


def config_files() -> list[str]:
    """Repository-relative paths of the .py files outside tests/ that define get_config."""
    found = []
    for directory, subdirs, files in os.walk(ROOT):
        subdirs[:] = [d for d in subdirs if d not in SKIP_DIRS and not d.startswith(".")]
        for name in files:
            path = os.path.join(directory, name)
            if name.endswith(".py") and re.search(r"^def get_config\(", open(path).read(), re.M):
                found.append(os.path.relpath(path, ROOT))
    return sorted(found)


CONFIG_FILES = config_files()


def test_the_scan_finds_the_known_config_files():
    assert {
        "configs/vqa_transformer.py",
        "configs/caption_transformer.py",
        "configs/retrieval_dual_encoder.py",
        "configs/autoencoder.py",
        "mmjax/projects/sort_of_clevr/configs/vqa_relation_network.py",
    } <= set(CONFIG_FILES)


def _check(spec: str, overrides=()) -> None:
    config = load_config(spec, list(overrides))
    validate_config(config)
    registry.import_modules(config.get("imports", ()))
    registry.TASKS.get(config.task)  # ConfigError naming the key if it is not registered
    registry.DATASETS.get(config.data.name)
    if "name" in config.model:  # else the task's default model
        registry.MODELS.get(config.model.name)
    assert set(setup_check.evaluator_classes(config)) == set(config.evals)
    build_task(config)


def _specs(path: str) -> list[str]:
    """The file, and the file with size=tiny when it takes a size argument."""
    specs = [path]
    try:
        load_config(f"{path}:size=tiny", [])
        specs.append(f"{path}:size=tiny")
    except ConfigError as error:
        assert "unknown config argument 'size'" in str(error), error
    return specs


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_config_file_builds_and_validates(path):
    for spec in _specs(os.path.join(ROOT, path)):
        _check(spec)


SWEEP_FILES = [p for p in CONFIG_FILES if "def get_sweep(" in open(os.path.join(ROOT, p)).read()]


@pytest.mark.parametrize("path", SWEEP_FILES)
def test_every_sweep_trial_builds_and_validates(path):
    full = os.path.join(ROOT, path)
    trials = sweeps.load_sweep(full)
    assert trials
    for trial in trials:
        _check(sweeps.with_config_args(full, trial.config_args), trial.config_overrides)
