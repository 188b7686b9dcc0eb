"""Multimodal autoencoder: the loss against a NumPy evaluation of its formula, modality dropout
and masking (either modality missing, right shapes), overfitting a handful of scenes, the
evaluators (metrics, linear probe, PNG grid), and `python -m mmjax.main` on the tiny config."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from mmjax.config_loader import load_config
from mmjax.data.tokenizer import EOS
from mmjax.evaluators import build_evaluator
from mmjax.evaluators.reconstruction import (
    exact_matches,
    image_errors,
    image_grid,
    linear_probe_accuracy,
    psnr,
)
from mmjax.experiment import Experiment
from mmjax.models.autoencoder import MultimodalAutoencoder
from mmjax.projects.sort_of_clevr.dataset import object_annotations
from mmjax.tasks.autoencoding import SOURCES, AutoencodingTask
from mmjax.train.optimizer import learning_rate_schedule, make_optimizer
from mmjax.train.steps import init_train_state, make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "autoencoder.py")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("data"))
    config = load_config(
        f"{CONFIG}:size=tiny,num_train=16,num_test=12", [f"data.data_dir={data_dir}"]
    )
    task = Experiment.assemble(config).task  # dataset built, tokenizer built, model built
    assert isinstance(task, AutoencodingTask)
    source = task.dataset.source("train")
    examples = [task.preprocess(source[i]) for i in range(len(source))]
    scenes = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    params = jax.jit(task.init_params)(jax.random.key(0), {k: v[:2] for k, v in scenes.items()})
    return task, scenes, source, params


def test_preprocess_takes_the_left_to_right_caption_and_probe_labels(setup):
    task, scenes, source, _ = setup
    record = source[0]
    text = task.tokenizer.decode(scenes["text"][0])
    assert text.startswith("from left to right")
    assert text.replace(" ,", ",").replace(" :", ":").replace(" .", ".") == (
        record["captions"][3].decode()
    )
    objects = record["objects"]
    labels = scenes["probe_labels"][0]
    for color in range(6):
        i = int(np.flatnonzero(objects["color"] == color)[0])
        x, y = objects["center"][i]
        assert labels[color] == objects["shape"][i]
        assert labels[6 + color] == (x < 37.5) and labels[12 + color] == (y < 37.5)
    np.testing.assert_array_equal(object_annotations(objects, 75)["probe_labels"], labels)


def test_loss_equals_the_formula_computed_by_hand(setup):
    task, scenes, _, params = setup
    batch = {k: v[:3] for k, v in scenes.items()}
    # Non-trivial outputs, so the check is not against a constant image or uniform logits.
    params = jax.tree.map(lambda x: x + 0.05 * np.cos(np.arange(x.size)).reshape(x.shape), params)
    rng = jax.random.key(3)
    loss, metrics = jax.jit(task.loss)(params, batch, rng)
    # The same forward pass (same modality dropout draw); the formula then by hand in NumPy.
    outputs, _ = jax.jit(task.apply_train)(params, batch, rng)
    image = batch["image"].astype(np.float64) / 255.0
    recon = np.asarray(outputs["image"], np.float64)
    image_term = np.mean((image - recon) ** 2)
    logits = np.asarray(outputs["logits"], np.float64)
    targets = batch["text"][:, 1:]
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    real = targets != 0
    text_term = -(picked * real).sum() / real.sum()
    weights = task.config.loss_weights
    expected = weights.image * image_term + weights.text * text_term
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["image_mse"]), image_term, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["text_ce"]), text_term, rtol=1e-5)
    accuracy = ((logits.argmax(-1) == targets) & real).sum() / real.sum()
    np.testing.assert_allclose(float(metrics["token_accuracy"]), accuracy, rtol=1e-6)


def test_either_modality_alone_with_dropout_and_masking(setup):
    task, scenes, _, _ = setup
    vocab = task.tokenizer.vocab_size
    # The other stem, decoder and pooling than the tiny config's, all random draws switched on.
    model = MultimodalAutoencoder(
        vocab_size=vocab,
        max_len=25,
        width=16,
        z_dim=8,
        num_heads=2,
        mlp_dim=32,
        image_depth=1,
        stem="conv",
        conv_channels=(8, 8, 8, 8),
        pool="latents",
        num_latents=2,
        image_decoder_kind="conv",
        decoder_channels=(8, 8),
        image_only_rate=0.4,
        text_only_rate=0.4,
        image_mask_ratio=0.5,
        text_mask_ratio=0.5,
    )
    images, text = scenes["image"][:8], scenes["text"][:8]
    params = jax.jit(model.init)(jax.random.key(0), images, text)["params"]

    def train_apply(params):
        rngs = {"mask": jax.random.key(4), "dropout": jax.random.key(5)}
        return model.apply({"params": params}, images, text, train=True, rngs=rngs)

    outputs, info = jax.jit(train_apply)(params)
    assert outputs["image"].shape == (8, 75, 75, 3)
    assert outputs["logits"].shape == (8, 24, vocab)
    assert info["z"].shape == (8, 8)
    image_only, text_only = ~info["text_present"], ~info["image_present"]
    assert image_only.any() and text_only.any()  # this draw has both kinds of dropout
    assert not (image_only & text_only).any()
    assert 0 < info["image_hidden"].mean() < 1 and info["image_hidden"].shape == (8, 25)
    assert info["text_hidden"].any() and not (info["text_hidden"] & (text == 0)).any()

    @jax.jit
    def encode(params, images, text, image_present=None, text_present=None):
        z, _ = model.apply(
            {"params": params},
            images,
            text,
            image_present,
            text_present,
            method=MultimodalAutoencoder.encode,
        )
        return z

    absent = jnp.zeros(8, bool)
    z_image, z_text = encode(params, images, None), encode(params, None, text)
    assert z_image.shape == z_text.shape == (8, 8)
    # Leaving a modality out is the same as hiding it by its flag.
    np.testing.assert_allclose(z_image, encode(params, images, text, None, absent), atol=1e-5)
    np.testing.assert_allclose(z_text, encode(params, images, text, absent, None), atol=1e-5)
    decoded = model.apply({"params": params}, z_text, method=MultimodalAutoencoder.decode_image)
    assert decoded.shape == (8, 75, 75, 3)


def test_tiny_model_overfits_a_handful_of_scenes(setup):
    task, scenes, _, _ = setup
    batch = {k: v[:4] for k, v in scenes.items()}
    optim = ml_collections.ConfigDict(task.config.optim.to_dict())
    optim.lr, optim.warmup_steps = 1e-2, 10
    steps = 100
    optimizer = make_optimizer(optim, steps)
    state = jax.jit(lambda rng: init_train_state(task, optimizer, rng, batch))(
        jax.random.key_data(jax.random.key(0))
    )
    step = jax.jit(make_train_step(task, optimizer, learning_rate_schedule(optim, steps)))
    first = None
    for _ in range(steps):
        state, metrics = step(state, batch)
        first = first or {k: float(metrics[k]) for k in ("image_mse", "text_ce")}
    last = {k: float(metrics[k]) for k in ("image_mse", "text_ce")}
    # Measured: image MSE 0.055 -> 0.017 (the sprite decoder, whose slots first have to find
    # their objects, and 70% of the examples seen through one modality; 0.0063 with 25% +
    # 25%, 0.0006 with the patch decoder), text cross-entropy 4.3 -> 0.02. A model that learnt
    # nothing stays at the white image's 0.05.
    assert last["image_mse"] < 0.4 * first["image_mse"], (first, last)
    assert last["text_ce"] < 0.01 * first["text_ce"], (first, last)


def test_reconstruction_metrics_by_hand():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[1] = 255
    recon = np.full((2, 4, 4, 3), 0.5)
    np.testing.assert_allclose(image_errors(images, recon), [0.25, 0.25])
    np.testing.assert_allclose(psnr(np.array([0.01, 1.0])), [20.0, 0.0])
    generated = np.array([[5, 6, EOS, 0], [5, 7, EOS, 0], [5, 6, 7, 8]])
    targets = np.array([[5, 6, EOS, 0, 0], [5, 6, EOS, 0, 0], [5, 6, 7, 8, EOS]])
    np.testing.assert_array_equal(exact_matches(generated, targets, EOS), [True, False, False])


def test_linear_probe_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (200, 3))
    signal = np.concatenate([labels * 2.0 - 1.0, rng.normal(size=(200, 5))], 1)
    signal += 0.3 * rng.normal(size=signal.shape)
    accuracy, majority = linear_probe_accuracy(signal, labels, folds=5)
    assert np.all(accuracy > 0.95) and np.all(majority < 0.65)
    noise, _ = linear_probe_accuracy(rng.normal(size=(200, 8)), labels, folds=5)
    assert np.all(noise < 0.65)


def test_evaluators_score_padded_batches_and_save_a_grid(setup, tmp_path):
    task, scenes, _, _ = setup
    n = 12
    batch = {k: v[:n] for k, v in scenes.items()}
    batch["_mask"] = np.arange(n) < 10  # the last two rows are padding
    perfect = batch["image"].astype(np.float32) / 255.0
    predicted = {
        "image_joint": perfect,
        "image_from_image": np.clip(perfect + 0.1, 0, 1),
        "image_from_text": np.ones_like(perfect),
        "text_joint": batch["text"][:, 1:],
        "text_from_image": np.zeros_like(batch["text"][:, 1:]),
        "text_from_text": batch["text"][:, 1:],
        "text_correct_joint": (batch["text"][:, 1:] != 0).sum(-1),
    }
    context = {"tokenizer": task.tokenizer, "workdir": str(tmp_path)}
    evaluator = build_evaluator(
        "test", {"type": "reconstruction", "grid_examples": 3, "java": False}, context
    )
    metrics = evaluator.evaluate([(batch, predicted)])
    assert metrics["num_examples"] == 10
    assert metrics["image_joint_mse"] < 1e-12 and metrics["image_joint_psnr"] > 99
    assert metrics["image_from_text_mse"] == pytest.approx(
        np.mean((1 - perfect[:10]) ** 2), rel=1e-6
    )
    assert metrics["text_joint_exact_match"] == 1 and metrics["text_joint_token_accuracy"] == 1
    assert metrics["text_from_image_exact_match"] == 0 and "text_from_image_cider_d" in metrics
    grid = np.asarray(Image.open(tmp_path / "reconstructions" / "grid_0000.png"))
    assert grid.shape == (3 * (150 + 2) + 2, 4 * (150 + 2) + 2, 3)
    np.testing.assert_array_equal(grid[2:152:2, 2:152:2], batch["image"][0])  # input, x2
    rows = [[batch["image"][i]] + [predicted[f"image_{s}"][i] for s in SOURCES] for i in range(3)]
    np.testing.assert_array_equal(grid, image_grid(rows, scale=2))

    # Without pycocoevalcap (the plain install) the same evaluator scores everything but
    # METEOR: the caption metrics are mmjax's own Python.
    real_find_spec = importlib.util.find_spec
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == "pycocoevalcap" else real_find_spec(name, *a),
        )
        bare = build_evaluator("test", {"type": "reconstruction", "grid_examples": 0}, context)
        bare_metrics = bare.evaluate([(batch, predicted)])
    assert "text_from_image_meteor" not in bare_metrics
    assert bare_metrics == pytest.approx(metrics, rel=1e-12)

    # The probe scores the real rows only, per group of label columns.
    groups = {"shape": list(range(6)), "left": list(range(6, 12))}
    spec = {"type": "linear_probe", "folds": 2, "l2s": [0.1, 1.0], "groups": groups}
    features = np.random.default_rng(0).normal(size=(n, 4)) + batch["probe_labels"][:, :4]
    scores = build_evaluator("probe", spec, {}).evaluate([(batch, {"z_joint": features})])
    accuracy, majority = linear_probe_accuracy(
        features[:10], batch["probe_labels"][:10], 2, [0.1, 1.0]
    )
    assert scores["num_examples"] == 10
    assert scores["z_joint_accuracy"] == pytest.approx(accuracy.mean())
    assert scores["z_joint_left"] == pytest.approx(accuracy[6:12].mean())
    assert scores["majority_shape"] == pytest.approx(majority[:6].mean())


@pytest.mark.slow
def test_main_trains_evaluates_and_writes_grids(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={CONFIG}:size=tiny,num_train=32,num_test=12,steps=6",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={tmp_path / 'data'}",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        final = [json.loads(line) for line in f][-1]
    for key in ("image_joint_psnr", "image_from_text_mse", "text_from_image_cider_d"):
        assert np.isfinite(final[f"test/{key}"]), final
    assert final["test/num_examples"] == 12
    assert 0 <= final["probe/z_joint_accuracy"] <= 1 and "probe/z_random_joint_left" in final
    grids = sorted(os.listdir(tmp_path / "run" / "reconstructions"))
    assert "grid_0000.png" in grids and "grid_0000.txt" in grids
    assert "linear probe on z" in result.stdout
