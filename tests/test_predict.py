"""mmjax.predict on a saved tiny VQA run: the CLI and the API answer as the evaluators' predict
does, bad inputs stop with errors that name them, and only the parameters are read back."""

import functools
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from mmjax import predict
from mmjax.config_loader import load_config
from mmjax.data import pipeline
from mmjax.data.datasets import get_dataset
from mmjax.experiment import Experiment
from mmjax.interpret.overlay import overlay
from mmjax.predict import figures
from mmjax.projects.sort_of_clevr import scenes as sort_of_clevr
from mmjax.projects.sort_of_clevr.dataset import known_questions
from mmjax.train.checkpoints import Checkpointer, CheckpointError, restore_params
from mmjax.train.optimizer import make_optimizer
from mmjax.train.steps import init_train_state
from mmjax.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "vqa_transformer.py")
STEP = 7


def save_run(root, config_file, arg):
    """A workdir as mmjax.main leaves it (config.json, tokenizer, checkpoints/7) for a config.

    The parameters are the model's initial ones, perturbed so that no output layer is zero (an
    untrained VQA head answers "yes" to everything, which any bug would reproduce). Returns
    (workdir, task, test source, the first test batch of 4, params).
    """
    config = load_config(f"{config_file}:{arg}", [f"data.data_dir={root / 'data'}"])
    experiment = Experiment.assemble(config)  # the dataset built, the task prepared
    task = experiment.task
    workdir = root / "run"
    os.makedirs(workdir)
    experiment.save_vocabularies(Workdir(workdir))
    source = experiment.dataset.source("test")
    batch = next(iter(pipeline.eval_dataset(source, task.preprocess, 4, 0, 1)))
    optimizer = make_optimizer(config.optim, config.total_steps)
    rng = jax.random.key_data(jax.random.key(0))
    state = jax.jit(functools.partial(init_train_state, task, optimizer))(rng, batch)
    params = jax.tree.map(
        lambda x: x + 0.5 * np.cos(np.arange(x.size) * 0.7).reshape(x.shape).astype(x.dtype),
        state.params,
    )
    state = state.replace(step=state.step + STEP, params=params)
    (workdir / "config.json").write_text(config.to_json(indent=2))
    checkpointer = Checkpointer(str(workdir / "checkpoints"))
    checkpointer.save(STEP, state, {})
    checkpointer.close()
    return str(workdir), task, source, batch, params


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A saved tiny VQA run, and what the evaluators score on its first test batch."""
    root = tmp_path_factory.mktemp("predict")
    arg = "size=tiny,num_train=8,num_test=4"
    workdir, task, source, batch, params = save_run(root, CONFIG, arg)
    # What the classification evaluator scores: the task's predict on a pipeline batch.
    expected = jax.device_get(jax.jit(task.predict)(params, batch))
    return workdir, source, batch, params, expected


def _cli(*args):
    cmd = [sys.executable, "-m", "mmjax.predict", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_api_answers_every_question_as_the_evaluators_predict(saved_run):
    workdir, source, batch, _, expected = saved_run
    model = predict.load(workdir)
    assert model.run.step == STEP and model.task_name == "vqa"
    texts = [t.decode() for t in source[0]["questions"]["text"]]
    answers = [model.answer(batch["image"][0], text) for text in texts]
    assert [a.index for a in answers] == list(expected["answer"][0])
    np.testing.assert_allclose(
        [a.probability for a in answers], expected["probability"][0], rtol=1e-4
    )
    # The answers depend on the question (with the default mean-pooled question the perturbed
    # tiny model gives every question the same top answer, but not the same probability).
    assert np.ptp([a.probability for a in answers]) > 1e-3


def test_cli_answers_the_stored_question_as_the_evaluators_predict(saved_run, tmp_path):
    workdir, source, batch, _, expected = saved_run
    image_path = tmp_path / "scene.png"
    Image.fromarray(batch["image"][1]).save(image_path)
    q = 3
    question = source[1]["questions"]["text"][q].decode()
    result = _cli(f"--workdir={workdir}", f"--image={image_path}", f"--question={question}")
    assert result.returncode == 0, result.stderr[-3000:]
    answer = sort_of_clevr.ANSWERS[expected["answer"][1, q]]
    assert result.stdout.strip() == f"{answer} (probability {expected['probability'][1, q]:.3f})"


def test_restore_params_reads_the_saved_parameters_only(saved_run):
    workdir, _, _, params, _ = saved_run
    step, restored = restore_params(os.path.join(workdir, "checkpoints"))
    assert step == STEP
    jax.tree.map(np.testing.assert_array_equal, restored, jax.device_get(params))
    with pytest.raises(CheckpointError, match="no checkpoint of step 3 .* it has \\[7\\]"):
        restore_params(os.path.join(workdir, "checkpoints"), step=3)


def test_bad_inputs_name_the_problem(saved_run, tmp_path):
    workdir, _, batch, _, _ = saved_run
    model = predict.load(workdir)
    question = "is the red object on the left?"
    with pytest.raises(predict.InputError, match="no image file at"):
        model.answer(tmp_path / "missing.png", question)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(predict.InputError, match="cannot read .*notes.png.* as a PNG or JPEG"):
        model.answer(tmp_path / "notes.png", question)
    Image.fromarray(batch["image"][0]).save(tmp_path / "scene.gif")
    with pytest.raises(predict.InputError, match="is a GIF image; PNG or JPEG"):
        model.answer(tmp_path / "scene.gif", question)
    Image.fromarray(batch["image"][0][:64]).convert("L").save(tmp_path / "small.jpg")
    with pytest.raises(predict.InputError, match="is 75x64 pixels; this model takes 75x75"):
        model.answer(tmp_path / "small.jpg", question)
    with pytest.raises(predict.InputError, match=r"outside the vocabulary: \['purple'\]"):
        model.answer(batch["image"][0], "is the purple object on the left?")
    with pytest.raises(predict.InputError, match="needs 23 tokens .* max_len=16"):
        model.answer(batch["image"][0], "is the red object on the left " * 3)
    with pytest.raises(predict.InputError, match="needs a run of task 'captioning'"):
        model.caption(batch["image"][0])
    with pytest.raises(predict.InputError, match="has no config.json"):
        predict.load(tmp_path)


def test_attention_rollout_of_the_model_and_its_overlay(saved_run):
    workdir, source, batch, _, expected = saved_run
    model = predict.load(workdir)
    question = source[2]["questions"]["text"][5].decode()
    maps = model.attention(batch["image"][2], question)
    # The attention-returning pass is the same function as predict.
    assert int(np.argmax(maps.logits[0, 0])) == expected["answer"][2, 5]
    # 15x15 patches of which 64 are tokens; depth 1.
    assert maps.grid == (15, 15) and len(maps.layers) == 1
    np.testing.assert_allclose(maps.rollout.sum(-1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(maps.layers[0].sum(-1), 1.0, rtol=1e-5)
    relevance = maps.relevance[0, 0]
    assert relevance.shape == (225,) and np.all(relevance >= 0) and 0 < relevance.sum() < 1
    assert np.count_nonzero(relevance) == 64  # the dropped patches get none
    image = overlay(batch["image"][2], relevance.reshape(maps.grid))
    assert image.shape == batch["image"][2].shape and image.dtype == np.uint8


@pytest.mark.slow
def test_cli_bad_image_is_one_line_and_exit_2(saved_run, tmp_path):
    workdir, _, batch, _, _ = saved_run
    Image.fromarray(batch["image"][0][:, :70]).save(tmp_path / "narrow.png")
    result = _cli(f"--workdir={workdir}", f"--image={tmp_path / 'narrow.png'}", "--question=x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"mmjax: input error: '{tmp_path / 'narrow.png'}' is 70x75 pixels; this model takes "
        "75x75 images (config.data.image_size)"
    )


def test_attention_figure_shows_the_upscaled_scene_and_saves_the_raw_map(saved_run, tmp_path):
    workdir, source, batch, _, _ = saved_run
    model = predict.load(workdir)
    question = source[0]["questions"]["text"][0].decode()
    drawn = figures.attention(model, batch["image"][0], question=question, per_head=True)
    paths = drawn.save(tmp_path / "attention.png")
    assert paths == [str(tmp_path / "attention.png"), str(tmp_path / "attention.npy")]
    maps = model.attention(batch["image"][0], question)
    np.testing.assert_allclose(np.load(paths[1]), maps.relevance[0, 0].reshape(15, 15), rtol=1e-6)
    with Image.open(paths[0]) as image:
        pixels = np.asarray(image.convert("RGB"))
    box = drawn.canvas.boxes["image"]
    scale = box.width // 75
    assert scale >= 4
    np.testing.assert_array_equal(
        box.crop(pixels), np.kron(batch["image"][0], np.ones((scale, scale, 1), np.uint8))
    )
    assert "layer0_head1" in drawn.canvas.boxes  # tiny: depth 1, 2 heads


@pytest.mark.slow
def test_cli_writes_the_attention_figure_and_its_raw_map(saved_run, tmp_path):
    workdir, source, batch, _, _ = saved_run
    Image.fromarray(batch["image"][0]).save(tmp_path / "scene.png")
    question = source[0]["questions"]["text"][0].decode()
    out = tmp_path / "attention.png"
    result = _cli(
        f"--workdir={workdir}",
        f"--image={tmp_path / 'scene.png'}",
        f"--question={question}",
        f"--attention_out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"written to {out} and {tmp_path / 'attention.npy'}" in result.stderr
    maps = predict.load(workdir).attention(batch["image"][0], question)
    raw = np.load(tmp_path / "attention.npy")
    np.testing.assert_allclose(raw, maps.relevance[0, 0].reshape(maps.grid), rtol=1e-5)
    with Image.open(out) as image:
        assert image.width >= 3 * 4 * 75 and image.mode == "RGB"
    missing = tmp_path / "no" / "attention.png"
    result = _cli(
        f"--workdir={workdir}",
        f"--image={tmp_path / 'scene.png'}",
        f"--question={question}",
        f"--attention_out={missing}",
    )
    assert result.returncode == 2 and result.stdout == ""  # refused before answering
    assert "--attention_out=" in result.stderr and "no directory" in result.stderr
    result = _cli(
        f"--workdir={workdir}",
        f"--image={tmp_path / 'scene.png'}",
        f"--question={question}",
        "--attention_per_head",
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        "mmjax: input error: --attention_per_head adds panels to --attention_out, which is not "
        "given"
    )


def test_closest_question_tells_dataset_questions_from_others():
    questions = known_questions()  # Sort-of-CLEVR's closed set of template questions
    assert predict.predictor.closest_question("Is the RED object on the left ?", questions) == (
        True,
        "is the red object on the left?",
    )
    known, closest = predict.predictor.closest_question("is the red object left", questions)
    assert not known and closest == "is the red object on the left?"
    # A dataset of free-text questions has no closed set: any question is one of its own.
    assert predict.predictor.closest_question("is the red object left", None) == (True, None)


@pytest.mark.slow
def test_captioning_run_captions_as_its_predict(tmp_path):
    config = os.path.join(ROOT, "configs", "caption_transformer.py")
    workdir, task, _, batch, params = save_run(tmp_path, config, "size=tiny,num_train=8,num_test=4")
    expected = jax.device_get(jax.jit(task.predict)(params, batch))
    caption = predict.load(workdir).caption(batch["image"][2])
    assert caption.text == task.tokenizer.decode(expected["tokens"][2]) and caption.text
    np.testing.assert_allclose(caption.logprob, expected["logprob"][2], rtol=1e-4)
    Image.fromarray(batch["image"][2]).save(tmp_path / "scene.png")
    out = tmp_path / "words.png"
    result = _cli(
        f"--workdir={workdir}", f"--image={tmp_path / 'scene.png'}", f"--attention_out={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(caption.text + " (log-probability ")
    # One map per word of the caption, each a distribution over the image tokens.
    raw = np.load(tmp_path / "words.npy")
    assert raw.shape == (len(caption.text.split()), 15, 15)
    np.testing.assert_allclose(raw.sum((1, 2)), 1.0, rtol=1e-5)
    assert os.path.getsize(out) > 0
    result = _cli(f"--workdir={workdir}", f"--image={tmp_path / 'scene.png'}", "--question=what?")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "mmjax: input error: --question does not apply to a 'captioning' run"
    )


@pytest.mark.slow
def test_retrieval_run_ranks_captions_by_the_embeddings_of_its_predict(tmp_path):
    config = os.path.join(ROOT, "configs", "retrieval_dual_encoder.py")
    workdir, task, source, batch, params = save_run(
        tmp_path, config, "size=tiny,num_train=8,num_test=4"
    )
    expected = jax.device_get(jax.jit(task.predict)(params, batch))
    captions = [c.decode() for c in source[0]["captions"]] + [source[1]["captions"][0].decode()]
    ranked = predict.load(workdir).rank(batch["image"][0], captions)
    texts = np.concatenate([expected["text_embedding"][0], expected["text_embedding"][1, :1]])
    similarity = texts @ expected["image_embedding"][0]
    assert [r.text for r in ranked] == [captions[i] for i in np.argsort(-similarity)]
    np.testing.assert_allclose([r.similarity for r in ranked], np.sort(similarity)[::-1], rtol=1e-4)
    Image.fromarray(batch["image"][0]).save(tmp_path / "scene.png")
    flags = [f"--caption={c}" for c in captions[:2]]
    out = f"--attention_out={tmp_path / 'tokens.png'}"
    result = _cli(f"--workdir={workdir}", f"--image={tmp_path / 'scene.png'}", *flags, out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.stdout.strip().splitlines()) == 2
    # Each caption's per-token shares (in the given order) sum to its similarity.
    shares = np.load(tmp_path / "tokens.npy")
    assert shares.shape == (2, 5, 5)
    np.testing.assert_allclose(shares.sum((1, 2)), similarity[:2], rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_cli_on_a_run_trained_by_main_answers_as_the_evaluators_predict(tmp_path):
    data_dir, workdir = tmp_path / "data", tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={CONFIG}:size=tiny,num_train=16,num_test=4",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        "--config.total_steps=6",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    model = predict.load(workdir)
    assert model.run.step == 6
    source = get_dataset(model.run.config.data).source("test")
    batch = next(iter(pipeline.eval_dataset(source, model.task.preprocess, 4, 0, 1)))
    expected = jax.device_get(jax.jit(model.task.predict)(model.params, batch))
    Image.fromarray(batch["image"][3]).save(tmp_path / "scene.png")
    question = source[3]["questions"]["text"][12].decode()
    image = tmp_path / "scene.png"
    result = _cli(f"--workdir={workdir}", f"--image={image}", f"--question={question}")
    assert result.returncode == 0, result.stderr[-3000:]
    answer = sort_of_clevr.ANSWERS[expected["answer"][3, 12]]
    assert result.stdout.strip() == f"{answer} (probability {expected['probability'][3, 12]:.3f})"


@pytest.mark.slow
def test_autoencoder_run_reconstructs_as_its_predict(tmp_path):
    config = os.path.join(ROOT, "configs", "autoencoder.py")
    workdir, task, source, batch, params = save_run(
        tmp_path, config, "size=tiny,num_train=8,num_test=4"
    )
    expected = jax.device_get(jax.jit(task.predict)(params, batch))
    model = predict.load(workdir)
    result = model.reconstruct(batch["image"][1])
    assert result.source == "from_image" and result.image.shape == (75, 75, 3)
    pixels = np.round(expected["image_from_image"][1] * 255)
    np.testing.assert_allclose(result.image, pixels, atol=1)
    assert result.text == task.tokenizer.decode(expected["text_from_image"][1])
    caption = source[1]["captions"][task.caption_index].decode()
    joint = model.reconstruct(batch["image"][1], caption)
    assert joint.source == "joint"
    np.testing.assert_allclose(joint.image, np.round(expected["image_joint"][1] * 255), atol=1)
    Image.fromarray(batch["image"][1]).save(tmp_path / "scene.png")
    out = tmp_path / "reconstruction.png"
    image = tmp_path / "scene.png"
    every = model.reconstructions(batch["image"][1], caption)
    assert list(every) == ["from_image", "from_text", "joint"]
    pixels = np.round(expected["image_from_text"][1] * 255)
    np.testing.assert_allclose(every["from_text"].image, pixels, atol=1)
    assert every["from_text"].text == task.tokenizer.decode(expected["text_from_text"][1])
    figure = tmp_path / "figure.png"
    result_cli = _cli(
        f"--workdir={workdir}",
        f"--image={image}",
        f"--output={out}",
        f"--text={caption}",
        f"--figure_out={figure}",
    )
    assert result_cli.returncode == 0, result_cli.stderr[-3000:]
    assert result_cli.stdout.strip() == f"{joint.text} (z joint)"
    with Image.open(out) as image:
        np.testing.assert_array_equal(np.asarray(image), joint.image)
    with Image.open(figure) as image:
        assert image.width > 4 * 4 * 75  # input and three reconstructions, at least 4x
