"""Bad input data gives one DataError naming the record and what is wrong with it; a model
that does not fit the data is one config error, before the workdir is written."""

import copy
import glob
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from mmjax.config_loader import load_config
from mmjax.data import pipeline
from mmjax.data.datasets import get_dataset
from mmjax.data.errors import DataError
from mmjax.projects.sort_of_clevr import scenes
from mmjax.projects.sort_of_clevr.dataset import _with_answer_words
from mmjax.tasks.vqa import VQATask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = f"{ROOT}/configs/vqa_transformer.py:size=tiny,num_train=16,num_test=4"
CORRUPT = 5


def _truncate_record(path: str, index: int) -> None:
    """Rewrites the ArrayRecord file at `path` with record `index` cut to half its bytes."""
    reader = ArrayRecordReader(path)
    records = reader.read_all()
    reader.close()
    writer = ArrayRecordWriter(path, "group_size:1")
    for i, record in enumerate(records):
        writer.write(record[: len(record) // 2] if i == index else record)
    writer.close()


@pytest.fixture(scope="module")
def corrupt_data(tmp_path_factory):
    """A data_dir whose train split has record CORRUPT truncated."""
    data_dir = str(tmp_path_factory.mktemp("bad_input") / "data")
    config = load_config(CONFIG, [f"data.data_dir={data_dir}"])
    get_dataset(config.data).prepare()
    (train_file,) = glob.glob(f"{data_dir}/**/*train.array_record*", recursive=True)
    _truncate_record(train_file, CORRUPT)
    return config


def test_corrupt_record_is_named(corrupt_data):
    source = get_dataset(corrupt_data.data).source("train")
    assert source[CORRUPT - 1]["id"] == CORRUPT - 1  # its neighbours still read
    with pytest.raises(DataError, match=rf"sort_of_clevr train record {CORRUPT} is corrupt"):
        source[CORRUPT]
    with pytest.raises(IndexError):
        source[len(source)]


def _prepared_task(config):
    task = VQATask(config, get_dataset(config.data))
    task.prepare(None)  # Sort-of-CLEVR fixes its vocabularies
    return task


def test_corrupt_record_surfaces_through_the_pipeline(corrupt_data):
    task = _prepared_task(corrupt_data)
    source = get_dataset(corrupt_data.data).source("train")
    iterator = iter(pipeline.train_dataset(source, task.preprocess, 4, seed=0, num_threads=2))
    with pytest.raises(DataError, match=rf"record {CORRUPT} is corrupt"):
        for _ in range(len(source) // 4):
            next(iterator)


@pytest.mark.slow  # a whole run, about 35 s on 2 cores; CI keeps the suite under 10 minutes
def test_main_reports_a_corrupt_record_in_one_line(corrupt_data, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={CONFIG}",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={corrupt_data.data.data_dir}",
        "--config.data.build_if_missing=False",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"mmjax: data error: sort_of_clevr train record {CORRUPT} is corrupt")


@pytest.fixture(scope="module")
def task_and_record(corrupt_data):
    return _prepared_task(corrupt_data), get_dataset(corrupt_data.data).source("test")[0]


def _with(record, change):
    record = copy.deepcopy(record)
    change(record)
    return record


def _set_text(i, text):
    def change(record):
        texts = list(record["questions"]["text"])
        texts[i] = text
        record["questions"]["text"] = texts

    return change


def _set_answer(i, answer):
    def change(record):
        record["questions"]["answer"][i] = answer

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set_text(3, b""), r"record 0: cannot encode empty text ''"),
        (_set_text(4, b" ".join([b"red"] * 20)), r"record 0: text 'red red .* needs 22 tokens"),
        (
            lambda r: r.update(image=np.zeros((75, 75), np.uint8)),
            r"record 0: image is uint8\[75, 75\], not uint8 HxWx3",
        ),
    ],
)
def test_bad_question_data_is_named(task_and_record, change, message):
    task, record = task_and_record
    task.preprocess(record)  # the unchanged record is fine
    with pytest.raises(DataError, match=message):
        task.preprocess(_with(record, change))


@pytest.mark.parametrize(
    "change, message",
    [
        (_set_answer(7, 10), r"record 0: answer 10 of question 7 is outside the 10 answers"),
        (_set_answer(2, -1), r"record 0: answer -1 of question 2 is outside"),
    ],
)
def test_stored_answers_outside_the_ten_are_named(corrupt_data, change, message):
    # Sort-of-CLEVR stores answer ids; its source gives them as words, checking each id.
    dataset = get_dataset(corrupt_data.data)
    raw = dataset.raw_source("test")[0]
    words = [scenes.ANSWERS[a] for a in raw["questions"]["answer"]]
    assert dataset.source("test")[0]["questions"]["answer"] == words
    assert _with_answer_words(raw, 0)["questions"]["answer"] == words
    with pytest.raises(DataError, match=message):
        _with_answer_words(_with(raw, change), 0)


def test_an_answer_word_outside_the_vocabulary_is_the_unknown_class(task_and_record):
    task, record = task_and_record
    example = task.preprocess(_with(record, _set_answer(3, "purple")))
    assert example["answer"][3] == task.answers.unknown_id == len(scenes.ANSWERS)
    assert example["answer"][2] == scenes.ANSWERS.index(record["questions"]["answer"][2])


def test_missing_dataset_is_a_config_error_naming_the_directory(tmp_path):
    from mmjax.config_utils import ConfigError

    data = ml_collections.ConfigDict(
        dict(name="sort_of_clevr", data_dir=str(tmp_path), num_train=8, num_test=4)
    )
    data.image_size, data.dataset_seed = 75, 0
    with pytest.raises(ConfigError, match=rf"not found in data.data_dir='{tmp_path}'"):
        get_dataset(data).source("train")


def _fit_command(tmp_path) -> list[str]:
    """A short tiny run of mmjax.main in tmp_path/run (what matters is that it runs)."""
    return [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={ROOT}/configs/vqa_transformer.py:size=tiny,num_train=40,num_test=10",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={tmp_path / 'data'}",
        "--config.total_steps=2",
        "--config.data.num_validation=10",
    ]


def _assert_model_misfit_is_one_config_error(cmd, workdir):
    # size=tiny has width 32, which 5 heads do not divide.
    result = subprocess.run(
        [*cmd, "--config.model.num_heads=5"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [x for x in result.stderr.splitlines() if x.startswith("mmjax: config error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "config.model does not fit the data" in errors[0] and "5 heads" in errors[0]
    assert "Traceback" not in result.stderr
    assert not workdir.exists() or not any(workdir.rglob("*"))  # nothing written


def test_a_model_that_does_not_fit_is_one_config_error_and_writes_nothing(tmp_path):
    _assert_model_misfit_is_one_config_error(_fit_command(tmp_path), tmp_path / "run")


@pytest.mark.slow  # a whole run; CI keeps the suite under 10 minutes
def test_the_corrected_command_then_runs_in_the_same_workdir(tmp_path):
    cmd = _fit_command(tmp_path)
    _assert_model_misfit_is_one_config_error(cmd, tmp_path / "run")
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "config.json").exists()
    assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
