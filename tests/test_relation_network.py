"""Relation Network, CNN+MLP and question-only models: the factorised pair layer, the task glue
(question codes, model choice) and training at tiny sizes."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mmjax.config_loader import load_config
from mmjax.config_utils import ConfigError
from mmjax.data.errors import DataError
from mmjax.experiment import build_task
from mmjax.projects.sort_of_clevr import scenes as sort_of_clevr
from mmjax.projects.sort_of_clevr.relation import PairDense, QuestionOnlyMLP, RelationNetwork

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(
    ROOT, "mmjax", "projects", "sort_of_clevr", "configs", "vqa_relation_network.py"
)


def _task(model, *overrides):
    """The task of the config, prepared: Sort-of-CLEVR fixes its tokenizer and answers, so
    nothing is read from disk."""
    spec = f"{CONFIG}:model={model},size=tiny,num_train=64,num_test=16"
    task = build_task(load_config(spec, list(overrides)))
    task.prepare(None)
    return task


def _record(scene, index):
    """A generated scene in the dataset's common layout (answers as words), with its id."""
    questions = dict(scene["questions"])
    questions["answer"] = [sort_of_clevr.ANSWERS[a] for a in questions["answer"]]
    return dict(scene, questions=questions, id=index)


def _batch(task, num_images=2, seed=0):
    scenes = sort_of_clevr.generate_split(seed, num_images, 75, "train")
    examples = [task.preprocess(_record(scene, i)) for i, scene in enumerate(scenes)]
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def test_factorised_first_layer_of_g_equals_the_direct_concatenation():
    rng = np.random.default_rng(0)
    objects = jnp.asarray(rng.normal(size=(2, 5, 4)), jnp.float32)
    questions = jnp.asarray(rng.integers(0, 2, size=(2, 3, 11)), jnp.float32)
    layer = PairDense(7)
    params = jax.jit(layer.init)(jax.random.key(0), objects, questions)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias too
    apply = jax.jit(layer.apply, static_argnames="factorised")
    factorised = apply(params, objects, questions)
    direct = apply(params, objects, questions, factorised=False)
    assert factorised.shape == (2, 3, 5, 5, 7)
    np.testing.assert_allclose(factorised, direct, rtol=1e-5, atol=1e-5)
    # Against the formula, entry by entry: W [o_i; o_j; q] + b for pair (i, j) and question q.
    kernel = np.asarray(params["params"]["kernel"])
    bias = np.asarray(params["params"]["bias"])
    o, q = np.asarray(objects), np.asarray(questions)
    for b, k, i, j in [(0, 0, 0, 0), (1, 2, 3, 1), (0, 1, 4, 2)]:
        expected = np.concatenate([o[b, i], o[b, j], q[b, k]]) @ kernel + bias
        np.testing.assert_allclose(factorised[b, k, i, j], expected, rtol=1e-5, atol=1e-5)


TINY_RN = dict(channels=(4, 4, 4), norm_groups=2, g_width=16, g_depth=2, f_widths=(16,))


@pytest.fixture(scope="module")
def tiny_rn():
    """A tiny RN, its parameters, 2 random 20x20 images (3 x 3 objects) and 4 questions each."""
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (2, 20, 20, 3)), jnp.uint8)
    codes = np.asarray(rng.integers(0, 2, (2, 4, 11)), np.float32)
    model = RelationNetwork(**TINY_RN)
    return model, jax.jit(model.init)(jax.random.key(0), images, codes), images, codes


def test_relation_network_factorised_and_direct_give_the_same_logits(tiny_rn):
    model, params, images, codes = tiny_rn
    fast, _ = jax.jit(model.apply)(params, images, codes)
    slow, _ = jax.jit(RelationNetwork(**TINY_RN, factorised=False).apply)(params, images, codes)
    assert fast.shape == (2, 4, 10)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)


def test_each_answer_depends_on_its_own_question_only(tiny_rn):
    model, params, images, codes = tiny_rn
    apply = jax.jit(model.apply)
    logits, _ = apply(params, images, codes)
    changed_codes = codes.copy()
    changed_codes[:, 1] = 1 - codes[:, 1]
    changed, _ = apply(params, images, changed_codes)
    np.testing.assert_allclose(changed[:, [0, 2, 3]], logits[:, [0, 2, 3]], rtol=1e-5, atol=1e-5)
    assert not np.allclose(changed[:, 1], logits[:, 1])
    # ... and on the image: another scene changes the answers of the same questions.
    other, _ = apply(params, images[::-1], codes)
    assert not np.allclose(other, logits)


def test_question_only_model_ignores_the_image():
    model = QuestionOnlyMLP(f_widths=(8,))
    codes = jnp.asarray(np.random.default_rng(0).integers(0, 2, (2, 3, 11)), jnp.float32)
    images = jnp.zeros((2, 75, 75, 3), jnp.uint8)
    params = jax.jit(model.init)(jax.random.key(0), images, codes)
    apply = jax.jit(model.apply)
    logits, _ = apply(params, images, codes)
    other, _ = apply(params, images + 255, codes)
    np.testing.assert_array_equal(logits, other)


def test_preprocess_adds_the_question_codes_and_names_a_record_without_them():
    task = _task("cnn_mlp")
    scene = next(iter(sort_of_clevr.generate_split(0, 1, 75, "train")))
    example = task.preprocess(_record(scene, 3))
    questions = scene["questions"]
    expected = sort_of_clevr.question_codes(questions["color"], questions["subtype"])
    np.testing.assert_array_equal(example["question_code"], expected)
    assert example["question_code"].dtype == np.float32
    del scene["questions"]["code"]
    with pytest.raises(
        DataError, match=r"record 3: the model reads questions/code, which it lacks"
    ):
        task.preprocess(_record(scene, 3))


def test_unknown_model_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"config.model.name='rn' is not one of"):
        _task("relation_network", "model.name=rn")


@pytest.mark.parametrize("model", ["relation_network", "cnn_mlp"])
def test_tiny_model_trains_with_falling_loss(model):
    task = _task(model)
    batch = _batch(task, num_images=1, seed=1)
    params = jax.jit(task.init_params)(jax.random.key(0), batch)
    optimizer = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state, rng):
        (loss, _), grads = jax.value_and_grad(task.loss, has_aux=True)(params, batch, rng)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    losses = []
    for i in range(30):
        params, opt_state, loss = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5]), losses
