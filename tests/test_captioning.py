"""Captioning task: the teacher-forced loss, decoding through predict, and `python -m mmjax.main`
end to end on the tiny config (tokenizer saved and reused, caption metrics written), and a tiny
model that learns a handful of captions by heart."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from mmjax.config_loader import load_config
from mmjax.data.tokenizer import EOS
from mmjax.experiment import Experiment
from mmjax.tasks.captioning import CaptioningTask, bytes_to_text
from mmjax.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "caption_transformer.py")


def _joined(decoded: str) -> str:
    """The word tokenizer's decoding with punctuation joined back to its word, as in the data."""
    return decoded.replace(" ,", ",").replace(" .", ".").replace(" :", ":")


@pytest.fixture(scope="module")
def task_and_batch(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("data"))
    config = load_config(
        f"{CONFIG}:size=tiny,num_train=16,num_test=8", [f"data.data_dir={data_dir}"]
    )
    experiment = Experiment.assemble(config)  # dataset built, tokenizer built, model built
    task = experiment.task
    assert isinstance(task, CaptioningTask)
    # Tasks no longer write files: the run saves their vocabularies into its workdir.
    workdir = Workdir(tmp_path_factory.mktemp("run"))
    experiment.save_vocabularies(workdir)
    source = task.dataset.source("train")
    examples = [task.preprocess(source[i]) for i in range(2)]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    return task, batch, source, workdir


def test_preprocess_keeps_reference_text_and_tokens(task_and_batch):
    task, batch, source, _ = task_and_batch
    texts = [c.decode() for c in source[0]["captions"]]
    assert bytes_to_text(batch["references"][0]) == texts
    # The word tokenizer round-trips these captions (they have no unknown words).
    decoded = [task.tokenizer.decode(row) for row in batch["captions"][0]]
    assert [_joined(d) for d in decoded] == texts


def test_loss_is_the_mean_token_cross_entropy_of_the_shifted_captions(task_and_batch):
    task, batch, _, _ = task_and_batch
    params = jax.jit(task.init_params)(jax.random.key(0), batch)
    # Make the output layer non-trivial so the check is not against uniform logits.
    params = jax.tree.map(lambda x: x + 0.05 * np.cos(np.arange(x.size)).reshape(x.shape), params)
    loss, metrics = jax.jit(task.loss)(params, batch, jax.random.key(1))
    logits, _ = task.model.apply({"params": params}, batch["image"], batch["captions"][..., :-1])
    logits = np.asarray(logits, np.float64)
    targets = batch["captions"][..., 1:]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    mask = targets != 0
    np.testing.assert_allclose(float(loss), -(picked * mask).sum() / mask.sum(), rtol=1e-5)
    accuracy = ((logits.argmax(-1) == targets) * mask).sum() / mask.sum()
    np.testing.assert_allclose(float(metrics["token_accuracy"]), accuracy, rtol=1e-6)


def test_predict_decodes_greedily_until_eos(task_and_batch):
    task, batch, _, _ = task_and_batch
    params = jax.jit(task.init_params)(jax.random.key(0), batch)
    out = jax.jit(task.predict)(params, batch)
    tokens = np.asarray(out["tokens"])
    assert tokens.shape == (2, task.max_len)
    for row in tokens:  # after the first EOS only padding
        if EOS in row:
            assert not row[list(row).index(EOS) + 1 :].any()
    assert np.all(np.asarray(out["logprob"]) <= 0)


def test_saved_tokenizer_is_reused(task_and_batch, tmp_path):
    task, _, _, workdir = task_and_batch
    path = workdir.file("tokenizer.json")
    with open(path) as f:
        saved = json.load(f)
    saved["vocab"].append("zebra")  # a vocabulary the data would not give
    with open(path, "w") as f:
        json.dump(saved, f)
    again = CaptioningTask(task.config, task.dataset)
    again.prepare(workdir)
    assert again.tokenizer.vocab[-1] == "zebra"
    assert again.tokenizer.vocab_size == task.tokenizer.vocab_size + 1


@pytest.mark.slow  # about 50 s; the trainer's own end-to-end tests run in CI
def test_main_trains_evaluates_and_resumes(tmp_path):
    def main(steps):
        cmd = [
            sys.executable,
            "-m",
            "mmjax.main",
            f"--config={CONFIG}:size=tiny,num_train=32,num_test=8,steps={steps}",
            f"--workdir={tmp_path / 'run'}",
            f"--config.data.data_dir={tmp_path / 'data'}",
        ]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)

    result = main(30)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < 0.8 * losses[0], losses
    final = records[-1]
    for key in ("bleu_1", "bleu_4", "rouge_l", "cider_d"):
        assert 0.0 <= final[f"test/{key}"], final
    assert final["test/num_examples"] == 8
    assert "most frequent caption" in result.stdout
    tokenizer_file = tmp_path / "run" / "tokenizer.json"
    saved = json.loads(tokenizer_file.read_text())
    # Swap two words: a vocabulary of the same size that the data would not give, so the
    # resumed run's tokenizer (written back into the workdir) shows where it came from.
    saved["vocab"][-2:] = saved["vocab"][-1:-3:-1]
    tokenizer_file.write_text(json.dumps(saved))

    result = main(30)  # the last step is done: it only re-evaluates, with the saved tokenizer
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(tokenizer_file.read_text())["vocab"] == saved["vocab"]


def test_tiny_model_overfits_a_handful_of_images_and_reproduces_their_captions(task_and_batch):
    """Trained on 4 scenes with one caption each, greedy decoding writes those captions."""
    task, _, source, _ = task_and_batch
    examples = [task.preprocess(source[i]) for i in range(4)]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    # The left-to-right caption: the one a scene determines, so it can be reproduced exactly.
    batch["captions"] = batch["captions"][:, 3:4]
    wanted = [bytes_to_text(r)[3] for r in batch["references"]]
    params = jax.jit(task.init_params)(jax.random.key(0), batch)
    optimizer = optax.adam(3e-3)

    @jax.jit
    def train(params, opt_state):
        def step(carry, _):
            params, opt_state = carry
            (loss, _), grads = jax.value_and_grad(task.loss, has_aux=True)(
                params, batch, jax.random.key(0)
            )
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), loss

        return jax.lax.scan(step, (params, opt_state), None, length=150)

    (params, _), losses = train(params, optimizer.init(params))
    assert losses[-1] < 0.02 * losses[0], (losses[0], losses[-1])
    tokens = np.asarray(jax.jit(task.predict)(params, batch)["tokens"])
    written = [task.tokenizer.decode(row) for row in tokens]
    assert [_joined(w) for w in written] == wanted
