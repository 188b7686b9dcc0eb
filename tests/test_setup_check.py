"""A run checks what its evaluators, writer and checkpoints need before it writes anything, and
an evaluation that fails during training stops the run with its step saved.

The evaluators that need something absent, or that fail, are a user's own: a module written
into a temporary folder registers them, and a config there names it in `imports`, as
docs/extending.md describes.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from mmjax import setup_check
from mmjax.config_loader import load_config
from mmjax.config_utils import ConfigError
from mmjax.experiment import Experiment
from mmjax.setup_check import SetupError, check_disk, check_setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "size=tiny,num_train=24,num_test=6"

EVALUATORS = """
from mmjax import registry
from mmjax.evaluators.classification import ClassificationEvaluator
from mmjax.setup_check import package


@registry.EVALUATORS.register("needy_classification")
class NeedyEvaluator(ClassificationEvaluator):
    @classmethod
    def requirements(cls, eval_config):
        return [package("mmjax_test_absent_package", "pip install mmjax-test-absent-package")]


@registry.EVALUATORS.register("exploding_classification")
class ExplodingEvaluator(ClassificationEvaluator):
    def evaluate(self, batches):
        next(iter(batches))  # the model has predicted a batch
        raise RuntimeError("boom: the evaluator failed")
"""

CONFIG = f"""
import importlib.util

_spec = importlib.util.spec_from_file_location("_base", {ROOT!r} + "/configs/vqa_transformer.py")
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(arg=None):
    config = _base.get_config("{TINY},steps=6")
    config.imports = ["mmjax_test_evaluators"]
    config.evals.validation.type = arg or "classification"
    config.evals.validation.every = 3
    config.data.num_validation = 6
    config.checkpoint_every = 5  # not at step 3: the failed evaluation's own save keeps it
    return config
"""


@pytest.fixture
def project(tmp_path):
    """tmp_path holding the evaluators' module and a config naming it; their environment."""
    (tmp_path / "mmjax_test_evaluators.py").write_text(textwrap.dedent(EVALUATORS))
    (tmp_path / "config.py").write_text(textwrap.dedent(CONFIG))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    return tmp_path, env


def _main(project, evaluator: str) -> subprocess.CompletedProcess:
    folder, env = project
    command = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={folder / 'config.py'}:{evaluator}",
        f"--workdir={folder / 'run'}",
        f"--config.data.data_dir={folder / 'data'}",
    ]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_a_missing_package_is_one_setup_error_before_anything_is_written(project):
    result = _main(project, "needy_classification")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "mmjax: setup error: evals.validation (type 'needy_classification') needs the Python "
        "package 'mmjax_test_absent_package': pip install mmjax-test-absent-package"
    )
    assert "Traceback" not in result.stderr
    folder = project[0]
    assert not (folder / "run").exists() and not (folder / "data").exists()  # nor the dataset


def _fail_at_step_3(project):
    """Runs the exploding evaluator; checks the one line, the log and the saved step."""
    folder = project[0]
    result = _main(project, "exploding_classification")
    assert result.returncode == 1, result.stderr[-3000:]
    log = folder / "run" / "errors.log"
    assert result.stderr.strip().splitlines()[-1] == (
        "mmjax: evaluation error: evals.validation (ExplodingEvaluator) failed at step 3: "
        "RuntimeError: boom: the evaluator failed; step 3 is saved and the same command "
        f"resumes from it; traceback in {log}"
    )
    assert "Traceback" not in result.stderr
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in evaluate" in text
    assert sorted(os.listdir(folder / "run" / "checkpoints")) == ["3"]  # checkpoint_every is 5


def test_a_failed_evaluation_saves_its_step_and_exits_with_one_line(project, monkeypatch):
    _fail_at_step_3(project)
    # The disk check's estimate of a checkpoint against the one just written.
    folder = project[0]
    monkeypatch.syspath_prepend(str(folder))
    config = load_config(f"{folder / 'config.py'}", [f"data.data_dir={folder / 'data'}"])
    experiment = Experiment.assemble(config)
    estimate = setup_check.checkpoint_bytes(config, experiment.task, experiment.local_batch(1))
    files = (folder / "run" / "checkpoints" / "3").rglob("*")
    on_disk = sum(f.stat().st_size for f in files if f.is_file())
    assert estimate / 2 < on_disk < estimate + setup_check.DISK_MARGIN_BYTES


@pytest.mark.slow  # two tiny runs, about 30 s
def test_after_a_failed_evaluation_the_same_command_resumes_from_its_step(project):
    _fail_at_step_3(project)
    # With the evaluator fixed, the run goes on from step 3, not from step 0.
    result = _main(project, "classification")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from the checkpoint at step 3" in result.stderr
    records = [json.loads(line) for line in open(project[0] / "run" / "metrics.jsonl")]
    trained = [r["step"] for r in records if "train/loss" in r]
    assert trained == [1, 2, 3, 4, 5, 6]  # each step logged once: none was trained twice
    assert any("validation/accuracy" in r for r in records if r["step"] == 6)


def _caption_config(java):
    config = load_config(f"{ROOT}/configs/caption_transformer.py:size=tiny", [])
    with config.unlocked():
        for ev in config.evals.values():
            if ev.type == "captioning":
                ev.java = java
    return config


def test_java_asked_for_but_missing_is_named_with_how_to_install_it(monkeypatch, tmp_path):
    workdir = str(tmp_path / "run")
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "java" else real_which(name))
    check_setup(_caption_config(None), workdir)  # optional: METEOR is skipped with a warning
    check_setup(_caption_config(False), workdir)
    config = _caption_config(True)
    with pytest.raises(SetupError) as error:
        check_setup(config, workdir)
    assert str(error.value) == "; ".join(
        f"evals.{name} (type 'captioning') needs `java` on the PATH: install a Java runtime, "
        "e.g. apt-get install openjdk-17-jre-headless"
        for name, ev in config.evals.items()
        if ev.type == "captioning"
    )
    assert not os.path.exists(workdir)


def test_pycocoevalcap_asked_for_but_missing_is_named(monkeypatch, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pycocoevalcap" else real_find_spec(name, *a),
    )
    with pytest.raises(SetupError, match=r"needs the Python package 'pycocoevalcap': pip install"):
        check_setup(_caption_config(True), str(tmp_path / "run"))


def test_an_unwritable_workdir_is_a_setup_error(monkeypatch, tmp_path):
    config = load_config(f"{ROOT}/configs/vqa_transformer.py:size=tiny", [])
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SetupError, match="is not a directory"):
        check_setup(config, str(tmp_path / "a_file" / "run"))
    # Tests may run as root, for whom every directory is writable: ask os.access instead.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(SetupError, match=f"the workdir's parent '{tmp_path}' is not writable"):
        check_setup(config, str(tmp_path / "new" / "run"))


def test_an_evaluator_argument_the_class_does_not_take_is_a_config_error():
    config = load_config(f"{ROOT}/configs/caption_transformer.py:size=tiny", [])
    with config.unlocked():
        config.evals.validation.refrence_key = "references"
    with pytest.raises(ConfigError, match="evals.validation .type 'captioning'.: .*refrence_key"):
        setup_check.evaluator_classes(config)


def test_too_little_disk_for_a_checkpoint_is_a_setup_error(monkeypatch, tmp_path):
    usage = shutil.disk_usage(tmp_path)
    check_disk(str(tmp_path / "run"), 10 * 2**20)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=20 * 2**20))
    with pytest.raises(SetupError, match=r"has 20.0 MiB free, but one checkpoint needs 26.0 MiB"):
        check_disk(str(tmp_path / "run"), 10 * 2**20)


def test_a_batch_larger_than_the_training_split_is_a_config_error(tmp_path):
    overrides = [f"data.data_dir={tmp_path / 'data'}", "data.num_validation=6", "batch_size=32"]
    config = load_config(f"{ROOT}/configs/vqa_transformer.py:{TINY}", overrides)
    experiment = Experiment.assemble(config)
    with pytest.raises(ConfigError, match="batch_size=32 is more than the 24 examples of the "):
        setup_check.check_experiment(config, experiment, str(tmp_path / "run"))
    config = load_config(f"{ROOT}/configs/vqa_transformer.py:{TINY}", overrides[:2])
    setup_check.check_experiment(config, experiment, str(tmp_path / "run"))  # batch of 4
    assert not (tmp_path / "run").exists()
