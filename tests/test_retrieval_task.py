"""Retrieval task: the loss is the contrastive loss of the model's embeddings (one caption per
image, drawn from the step's rng), predict's embeddings for the evaluator, the sharded loss
under a multi-device mesh, and `python -m mmjax.main` end to end on the tiny config.

The multi-device check runs in a subprocess with 4 fake CPU devices (this file is its entry
point: `python tests/test_retrieval_task.py sharded`).
"""

import copy
import functools
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from mmjax.config_loader import load_config
from mmjax.experiment import Experiment
from mmjax.models.dual_encoder import DualEncoder
from mmjax.tasks import hard_negatives
from mmjax.tasks.retrieval import RetrievalTask, sample_captions
from mmjax.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "retrieval_dual_encoder.py")


def _setup(data_dir, workdir, loss="softmax", batch_size=4, hard="none"):
    config = load_config(
        f"{CONFIG}:size=tiny,num_train=16,num_test=8,loss={loss},hard={hard}",
        [f"data.data_dir={data_dir}"],
    )
    # The workdir's tokenizer when there is one, else one built from the data and saved there.
    workdir = Workdir(workdir)
    experiment = Experiment.assemble(config, saved=workdir)
    experiment.save_vocabularies(workdir)
    task = experiment.task
    assert isinstance(task, RetrievalTask)
    source = task.dataset.source("train")
    examples = [task.preprocess(source[i]) for i in range(batch_size)]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    return task, batch


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data")), str(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def softmax_setup(dirs):
    task, batch = _setup(*dirs)
    params = jax.jit(task.init_params)(jax.random.key(0), batch)
    return task, batch, params


LOSS_RNG = 3  # the step rng of the loss checks, here and in the 4-device subprocess


def _with_loss(task, kind):
    task = copy.copy(task)
    task.loss_kind = kind
    return task


@pytest.fixture(scope="module")
def losses(softmax_setup):
    """{kind: (loss, metrics)} of the task's loss on the fixture batch, one device."""
    task, batch, params = softmax_setup
    return {
        kind: jax.jit(_with_loss(task, kind).loss)(params, batch, jax.random.key(LOSS_RNG))
        for kind in ("softmax", "sigmoid")
    }


@pytest.fixture(scope="module")
def predict(softmax_setup):
    return jax.jit(softmax_setup[0].predict)


@pytest.fixture(scope="module")
def predicted(softmax_setup, predict):
    _, batch, params = softmax_setup
    return jax.device_get(predict(params, batch))


def _numpy_loss(kind, img, txt, scale, bias):
    logits = scale * img @ txt.T
    n = len(img)
    if kind == "softmax":

        def ce(rows):
            return np.mean(np.log(np.exp(rows).sum(1)) - np.diag(rows))

        return (ce(logits) + ce(logits.T)) / 2
    labels = 2 * np.eye(n) - 1
    return np.sum(np.log1p(np.exp(-labels * (logits + bias)))) / n


def test_sigmoid_config_starts_from_the_siglip_scale_and_bias():
    config = load_config(f"{CONFIG}:size=tiny,loss=sigmoid", [])
    assert config.loss == "sigmoid"
    assert config.model.logit_scale_init == pytest.approx(np.log(10.0))
    assert config.model.logit_bias_init == -10.0


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_loss_is_the_contrastive_loss_of_the_embeddings(kind, softmax_setup, losses, predicted):
    _, batch, params = softmax_setup
    loss, metrics = losses[kind]
    # The caption the loss paired with each image, drawn with the first half of its rng ...
    chosen = np.asarray(
        sample_captions(batch["captions"], jax.random.split(jax.random.key(LOSS_RNG))[0])
    )
    rows = [np.flatnonzero((batch["captions"][b] == chosen[b]).all(-1))[0] for b in range(4)]
    # ... and the embeddings predict gives that image and that caption.
    img = np.asarray(predicted["image_embedding"], np.float64)
    txt = np.asarray(predicted["text_embedding"][np.arange(4), rows], np.float64)
    scale, bias = np.exp(float(params["log_logit_scale"])), float(params["logit_bias"])
    assert scale == pytest.approx(1 / 0.07) and bias == -10.0  # the config's CLIP init
    np.testing.assert_allclose(float(loss), _numpy_loss(kind, img, txt, scale, bias), rtol=1e-5)
    hits = np.mean(np.argmax(img @ txt.T, 1) == np.arange(4))
    np.testing.assert_allclose(float(metrics["batch_i2t_accuracy"]), hits)
    assert float(metrics["logit_scale"]) == pytest.approx(scale)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_hard_negative_loss_is_that_of_the_swapped_captions_embeddings(kind, dirs, softmax_setup):
    _, batch, params = softmax_setup
    task, _ = _setup(*dirs, loss=kind, hard="shapes_colors")  # the workdir's tokenizer
    rng = jax.random.key(LOSS_RNG)
    loss, metrics = jax.jit(task.loss)(params, batch, rng)
    # The task's captions and swaps, redone here from the same rngs ...
    caption_rng = jax.random.split(rng)[0]
    chosen = sample_captions(batch["captions"], caption_rng)
    swap_rngs = jax.random.split(jax.random.fold_in(caption_rng, 1), 2)
    hard, valid = zip(
        *(hard_negatives.make_hard(chosen, task.partners[g], swap_rngs[g]) for g in range(2))
    )
    hard, valid = np.stack(hard), np.stack(valid)
    assert valid.all()  # every Sort-of-CLEVR caption names shapes and the six colours
    changed = (hard != np.asarray(chosen)[None]).sum(-1)
    assert (changed[0] == 1).all() and (changed[1] == 2).all()  # a shape; two colours
    # ... embedded by predict's text tower, give the loss.
    embed = jax.jit(lambda p, t: task.model.apply({"params": p}, t, method=DualEncoder.embed_texts))
    img = task.model.apply({"params": params}, batch["image"], method=DualEncoder.embed_images)
    txt, hard_emb = embed(params, chosen), embed(params, hard)
    out = dict(logit_scale=np.exp(float(params["log_logit_scale"])), logit_bias=-10.0)
    want = task._hard_loss(img, txt, hard_emb, valid, out)
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
    plain = _numpy_loss(kind, np.asarray(img), np.asarray(txt), out["logit_scale"], -10.0)
    assert float(loss) > plain  # the hard negatives add to the loss
    assert 0.0 <= float(metrics["hard_i2t_accuracy"]) <= 1.0


def test_each_image_meets_all_its_captions_and_never_a_padding_row():
    captions = np.zeros((3, 5, 6), np.int32)
    captions[:, :, 0] = 2  # BOS: every slot is a real caption ...
    captions[:, :, 1] = np.arange(5) + 10  # ... told apart by its second token
    captions[1, 2:] = 0  # ... except image 1's last three slots
    draw = jax.jit(sample_captions)
    seen = np.stack([np.asarray(draw(captions, jax.random.key(i)))[:, 1] for i in range(60)])
    assert set(seen[:, 0]) == set(seen[:, 2]) == {10, 11, 12, 13, 14}
    assert set(seen[:, 1]) == {10, 11}
    # The same rng draws the same captions: a resumed run pairs as an uninterrupted one.
    np.testing.assert_array_equal(
        draw(captions, jax.random.key(7)), draw(captions, jax.random.key(7))
    )


def test_predict_embeds_every_caption_with_unit_norm(softmax_setup, predict, predicted):
    task, batch, params = softmax_setup
    dim = task.model.embed_dim
    assert predicted["image_embedding"].shape == (4, dim)
    assert predicted["text_embedding"].shape == (4, 5, dim)
    assert predicted["text_mask"].shape == (4, 5) and predicted["text_mask"].all()
    np.testing.assert_allclose(np.linalg.norm(predicted["image_embedding"], axis=-1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(predicted["text_embedding"], axis=-1), 1, rtol=1e-5)
    # An absent caption (all padding) is masked out for the evaluator.
    captions = batch["captions"].copy()
    captions[1, 4] = 0
    mask = np.asarray(predict(params, dict(batch, captions=captions))["text_mask"])
    assert not mask[1, 4] and mask.sum() == 19


def test_preprocess_pads_missing_captions_and_names_bad_records(softmax_setup):
    from mmjax.data.errors import DataError

    task, batch, _ = softmax_setup
    image = np.asarray(batch["image"][0])
    example = task.preprocess({"id": 9, "image": image, "captions": [b"a red circle."] * 2})
    assert example["captions"].shape == (5, task.max_len)
    assert (example["captions"][:2, 0] != 0).all() and not example["captions"][2:].any()
    # More than R (COCO has 5 to 7): the first R are kept.
    captions = [b"a red circle.", b"a blue square."] * 3
    example = task.preprocess({"id": 9, "image": image, "captions": captions})
    np.testing.assert_array_equal(example["captions"][4], example["captions"][0])
    assert (example["captions"][:, 0] != 0).all()
    with pytest.raises(DataError, match="record 9: has no captions"):
        task.preprocess({"id": 9, "image": image, "captions": []})
    with pytest.raises(DataError, match="record 9"):
        task.preprocess({"id": 9, "image": image, "captions": [b"red " * 100]})


def _sharded_losses(data_dir: str, workdir: str) -> dict:
    """Each loss with the fixture batch split over all devices (run with 4): {kind: loss}."""
    from mmjax.models import partitioning
    from mmjax.train import sharding

    task, batch = _setup(data_dir, workdir)  # the saved tokenizer, no rebuild
    params = jax.jit(task.init_params)(jax.random.key(0), batch)
    mesh = sharding.make_mesh(sharding.resolve_mesh_config(dict(data=-1, fsdp=1), False))
    placed = sharding.global_batch(batch, mesh)
    out = {"devices": int(mesh.shape["data"])}

    def loss(task, params, batch):
        # As the trainer traces its steps: inside the activation-sharding context.
        with partitioning.activation_sharding(mesh):
            return task.loss(params, batch, jax.random.key(LOSS_RNG))[0]

    for kind in ("softmax", "sigmoid"):
        lowered = jax.jit(functools.partial(loss, _with_loss(task, kind))).lower(params, placed)
        # The softmax loss all-gathers the embeddings; the sigmoid ring passes text chunks on.
        collective = "all_gather" if kind == "softmax" else "collective_permute"
        out[kind] = dict(
            collective=collective in lowered.as_text(),
            loss=float(lowered.compile()(params, placed)),
        )
    return out


def test_sharded_loss_over_four_devices_equals_the_one_device_loss(dirs, losses):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    result = subprocess.run(
        [sys.executable, __file__, "sharded", *dirs],
        cwd=ROOT,
        env=dict(os.environ, XLA_FLAGS=flags),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out.pop("devices") == 4
    for kind, values in out.items():
        assert values["collective"], kind
        np.testing.assert_allclose(values["loss"], float(losses[kind][0]), rtol=1e-5)


@pytest.mark.slow  # about 35 s (80 tiny steps); the trainer's own end-to-end tests run in CI
def test_main_trains_and_reports_recall(tmp_path):
    # 8 training scenes in batches of 8: every step sees the same images with fresh captions,
    # so the loss falls within some dozens of steps (on the full data it first sits near log
    # B). With the default hard negatives it falls more slowly: to about a quarter in 80 steps.
    steps = 80
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={CONFIG}:size=tiny,num_train=8,num_test=8,steps={steps}",
        f"--workdir={tmp_path / 'run'}",
        f"--config.data.data_dir={tmp_path / 'data'}",
        f"--config.checkpoint_every={steps}",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert np.mean(losses[-5:]) < 0.7 * losses[0], losses
    final = records[-1]
    for direction in ("i2t", "t2i"):
        for k in (1, 5, 10):
            assert 0.0 <= final[f"test/{direction}_r{k}"] <= 1.0, final
            assert f"test/{direction}_chance_r{k}" in final
    assert final["test/i2t_queries"] == 8 and final["test/t2i_queries"] == 40
    # Per caption wording (8 queries each way), and the hard negatives' own accuracy.
    assert 0.0 <= final["test/t2i_r1/left_to_right"] <= 1.0
    assert any("train/hard_i2t_accuracy" in r for r in records)
    assert (tmp_path / "run" / "tokenizer.json").exists()
    assert "t2i R@10" in result.stdout


if __name__ == "__main__" and sys.argv[1:2] == ["sharded"]:
    print(json.dumps(_sharded_losses(*sys.argv[2:])))
