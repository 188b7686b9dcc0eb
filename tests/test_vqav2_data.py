"""VQAv2-style custom data: lines with ten human answers and grouping fields convert, read back
with their answers and attributes, build a VQA-normalised answer vocabulary from every human's
answer, and train on soft targets; Sort-of-CLEVR keeps hard targets and gets its groups and its
colour-swap probe."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest

from mmjax.config_loader import load_config
from mmjax.data import custom
from mmjax.data.datasets import get_dataset
from mmjax.evaluators.groups import decode_values
from mmjax.evaluators.vqa_accuracy import soft_scores
from mmjax.experiment import Experiment
from mmjax.projects.sort_of_clevr import scenes
from mmjax.projects.sort_of_clevr.dataset import swap_colors
from mmjax.tasks.vqa import soft_target_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VQA_CONFIG = os.path.join(ROOT, "configs", "vqa_transformer.py")
HUMANS = {
    "how many dogs?": (["2", "2", "two", "Two", "3", "2", "2.", "two", "3", "2"], "number"),
    "is it red?": (["yes"] * 9 + ["no"], "yes/no"),
    "what animal is it?": (
        ["the dog", "dog", "Dog", "puppy", "dog", "dog", "a dog", "dog", "puppy", "dog"],
        "other",
    ),
}


@pytest.fixture(scope="module")
def vqav2_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqav2")
    (root / "images").mkdir()
    lines = []
    for i in range(8):
        image = np.full((24, 24, 3), 30 * i, np.uint8)
        PIL.Image.fromarray(image).save(root / "images" / f"{i}.png")
        split = "validation" if i >= 6 else "train"
        for question, (answers, kind) in HUMANS.items():
            lines.append(
                dict(
                    image=f"{i}.png",
                    question=question,
                    answers=answers,
                    answer_type=kind,
                    split=split,
                )
            )
        lines.append(dict(image=f"{i}.png", captions=[f"picture {i}"], source=f"camera{i % 2}"))
    with open(root / "data.jsonl", "w") as f:
        f.write("\n".join(json.dumps(line) for line in lines) + "\n")
    output = root / "dataset"
    summary = custom.convert(
        str(root / "data.jsonl"), str(root / "images"), str(output), report=lambda line: None
    )
    return str(output), summary


def test_answers_and_attributes_read_back(vqav2_folder):
    output, summary = vqav2_folder
    assert summary["most_answers_per_question"] == 10
    assert summary["attributes"] == {"question": ["answer_type"], "image": ["source"]}
    config = load_config(
        f"{VQA_CONFIG}:size=tiny,dataset=custom,data_dir={output},image_size=24", []
    )
    dataset = get_dataset(config.data)
    record = dataset.source("train")[0]
    questions = record["questions"]
    assert questions["answers"][0] == HUMANS["how many dogs?"][0]
    assert questions["answer"][0] == "2"  # the most frequent of the ten, as written
    assert dataset.question_attributes(record) == {"answer_type": ["number", "yes/no", "other"]}
    assert dataset.image_attributes(record) == {"source": "camera0"}


def test_vqa_task_trains_on_soft_targets_of_normalised_answers(vqav2_folder):
    output, _ = vqav2_folder
    config = load_config(
        f"{VQA_CONFIG}:size=tiny,dataset=custom,data_dir={output},image_size=24", []
    )
    experiment = Experiment.assemble(config)
    task = experiment.task
    assert task.answers.normalization == "vqa" and task.soft_targets
    # "2", "two", "Two", "2." are one answer; "the dog", "Dog", "a dog" another.
    assert {"2", "dog", "yes"} <= set(task.answers.answers)
    assert "two" not in task.answers.answers and "the dog" not in task.answers.answers
    example = task.preprocess(experiment.dataset.source("train")[0])
    assert example["answers"].shape == (10, 10)
    count_id = task.answers.id("2")
    assert np.sum(example["answers"][0] == count_id) == 8  # 2, 2, two, Two, 2, 2., two, 2
    assert list(decode_values(example["group/answer_type"])[:3]) == ["number", "yes/no", "other"]
    assert set(decode_values(example["group/source"])[:3]) == {"camera0"}
    batch = experiment.local_batch(2)
    params = task.init_params(jax.random.key(0), batch)
    loss, metrics = task.loss(params, batch, jax.random.key(1))
    assert np.isfinite(float(loss)) and 0 <= float(metrics["accuracy"]) <= 1
    # With the head's logits forced to favour "2", the training accuracy of "how many dogs?"
    # is that answer's VQA accuracy (8 of 10 humans: 1.0), not exact match with one label.
    logits = np.full((1, 1, len(task.answers)), -5.0, np.float32)
    logits[0, 0, count_id] = 5.0
    _, forced = soft_target_loss(jnp.asarray(logits), jnp.asarray(example["answers"][None, :1]))
    assert float(forced["accuracy"]) == pytest.approx(
        float(soft_scores(np.asarray(8), np.asarray(10)))
    )


def test_sort_of_clevr_keeps_hard_targets_and_swaps_colours():
    config = load_config(f"{VQA_CONFIG}:size=tiny,num_train=40,num_test=10", [])
    experiment = Experiment.assemble(config)
    assert not experiment.task.soft_targets and experiment.task.answers.normalization == "basic"
    record = experiment.dataset.source("test")[3]
    swapped = swap_colors(record, 75)
    old, new = record["questions"], swapped["questions"]
    assert list(new["original_answer"]) == list(old["answer"])
    assert np.all(np.asarray(new["color"]) != np.asarray(old["color"]))
    truth = scenes.answer_questions(record["objects"], new, 75)
    assert list(new["answer"]) == [scenes.ANSWERS[a] for a in truth]
    for text, color in zip(new["text"], new["color"]):
        assert scenes.COLOR_NAMES[color] in text
    # The probe split is the same in every run, and a record's groups describe its new object.
    again = experiment.dataset.eval_source("test:color_swap")[3]
    assert list(again["questions"]["text"]) == list(new["text"])
    groups = experiment.dataset.question_attributes(again)
    assert groups["color"] == [scenes.COLOR_NAMES[c] for c in new["color"]]


@pytest.mark.slow  # 156 s on the shared 2-core CPU: two tiny VQAv2-style runs, then compare
def test_a_vqav2_style_run_reports_vqa_accuracy_per_type_and_compares(vqav2_folder, tmp_path):
    output, _ = vqav2_folder
    runs = []
    for seed in (0, 1):
        workdir = tmp_path / f"run{seed}"
        cmd = [
            sys.executable,
            "-m",
            "mmjax.main",
            f"--workdir={workdir}",
            f"--config={VQA_CONFIG}:size=tiny,dataset=custom,data_dir={output},image_size=24,"
            "steps=4",
            f"--config.seed={seed}",
        ]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(str(workdir))
    with open(os.path.join(runs[0], "metrics.jsonl")) as f:
        final = json.loads(f.read().splitlines()[-1])
    for kind in ("number", "yes_no", "other"):
        value = final[f"test_vqa/vqa_accuracy/{kind}"]
        assert final[f"test_vqa/vqa_accuracy/{kind}.ci_low"] <= value
    cmd = [sys.executable, "-m", "mmjax.compare", *runs, "--eval=test_vqa", "--samples=200"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "vqa_accuracy" in result.stdout
