"""Scale-out: sharding rules, data parallel and FSDP equal to one device, two processes equal to
one, gradient accumulation, bf16 compute, remat and layer scan.

The multi-device checks run in subprocesses with 8 fake CPU devices (this file is their entry
point: `python tests/test_scale_out.py sharded OUT.npz`).
"""

import functools
import json
import os
import re
import socket
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.config_loader import load_config
from mmjax.config_utils import ConfigError
from mmjax.experiment import Experiment
from mmjax.models import partitioning
from mmjax.projects.sort_of_clevr import scenes as sort_of_clevr
from mmjax.train import sharding
from mmjax.train.optimizer import learning_rate_schedule, make_optimizer
from mmjax.train.steps import init_train_state, make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = f"{ROOT}/configs/vqa_transformer.py:size=tiny,num_train=64,num_test=16"


def _env(devices: int) -> dict:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return dict(os.environ, XLA_FLAGS=flags)


def _task(*overrides):
    """The TINY config's task, prepared (Sort-of-CLEVR fixes its vocabularies: no data read)."""
    return Experiment.assemble(load_config(TINY, list(overrides)), prepare_data=False).task


def _record(scene: dict, index: int) -> dict:
    """A generated scene as its dataset's source gives it: the answers as words."""
    questions = dict(scene["questions"])
    questions["answer"] = [sort_of_clevr.ANSWERS[a] for a in questions["answer"]]
    return dict(scene, id=index, questions=questions)


def _batches(task, num_batches: int, batch_size: int, seed: int = 0):
    """`num_batches` VQA batches of `batch_size` generated scenes, as NumPy dicts."""
    scenes = sort_of_clevr.generate_split(seed, num_batches * batch_size, 75, "train")
    examples = [task.preprocess(_record(scene, i)) for i, scene in enumerate(scenes)]
    stacked = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    return [
        {k: v[i * batch_size : (i + 1) * batch_size] for k, v in stacked.items()}
        for i in range(num_batches)
    ]


# ---------------------------------------------------------------- sharding rules


MESH = types.SimpleNamespace(shape={"data": 2, "fsdp": 4, "model": 2})


def test_fsdp_splits_the_largest_divisible_dimension_above_the_threshold():
    assert sharding.fsdp_spec((6, 64), 4, 0) == jax.sharding.PartitionSpec(None, "fsdp")
    assert sharding.fsdp_spec((64, 6), 4, 0) == jax.sharding.PartitionSpec("fsdp", None)
    assert sharding.fsdp_spec((64, 128), 4, 0) == jax.sharding.PartitionSpec(None, "fsdp")
    assert sharding.fsdp_spec((6, 7), 4, 0) == jax.sharding.PartitionSpec()  # none divisible
    assert sharding.fsdp_spec((64, 128), 4, 64 * 128 + 1) == jax.sharding.PartitionSpec()
    assert sharding.fsdp_spec((64, 128), 1, 0) == jax.sharding.PartitionSpec()


def test_rules_first_match_wins_and_fsdp_is_the_fallback_switch():
    rules = [("norm", "replicate"), ("attn/.*kernel", (None, "model")), ("mlp", "fsdp")]

    def spec(name, shape, fsdp=False):
        return sharding.leaf_spec(name, shape, rules, MESH, fsdp, 0)

    P = jax.sharding.PartitionSpec
    assert spec("params/block_0/attn/qkv/kernel", (64, 96)) == P(None, "model")
    assert spec("opt_state/0/mu/block_0/attn/qkv/kernel", (64, 96)) == P(None, "model")
    assert spec("params/block_0/mlp/fc1/kernel", (64, 128)) == P(None, "fsdp")
    assert spec("params/block_0/ln_1/norm/scale", (64,), fsdp=True) == P()
    assert spec("params/embedding", (32, 64)) == P()  # data parallel: replicated
    assert spec("params/embedding", (32, 64), fsdp=True) == P(None, "fsdp")


def test_bad_sharding_rules_name_the_parameter_and_the_numbers():
    with pytest.raises(
        ConfigError,
        match=r"cannot shard params/w of shape \(6, 64\): dimension 6 does not divide over 4",
    ):
        sharding.leaf_spec("params/w", (6, 64), [("w", ("fsdp", None))], MESH, False, 0)
    with pytest.raises(ConfigError, match="has 1 entries, but the array has shape"):
        sharding.leaf_spec("params/w", (8, 8), [("w", ("fsdp",))], MESH, False, 0)
    with pytest.raises(ConfigError, match="no mesh axis 'tensor'"):
        sharding.leaf_spec("params/w", (8, 8), [("w", (None, "tensor"))], MESH, False, 0)
    with pytest.raises(ConfigError, match="use 'replicate', 'fsdp'"):
        sharding.leaf_spec("params/w", (8, 8), [("w", "shard")], MESH, False, 0)


def test_mesh_errors_name_the_numbers():
    devices = jax.devices()
    with pytest.raises(ConfigError, match=r"needs 16 devices, but 1 are available"):
        sharding.make_mesh({"data": 16}, devices)
    with pytest.raises(ConfigError, match="at most one axis may be -1"):
        sharding.make_mesh({"data": -1, "fsdp": -1}, devices)
    assert sharding.resolve_mesh_config({"data": -1, "fsdp": 1}, fsdp=True) == {
        "data": 1,
        "fsdp": -1,
    }


# ---------------------------------------------------------------- one device, in process


def _one_step(task, batch, microbatches):
    config = load_config(TINY, [])
    optimizer = make_optimizer(config.optim, 100)
    schedule = learning_rate_schedule(config.optim, 100)
    rng = jax.random.key_data(jax.random.key(0))
    state = jax.jit(functools.partial(init_train_state, task, optimizer))(rng, batch)
    step = jax.jit(make_train_step(task, optimizer, schedule, microbatches))
    state = state.replace(step=jnp.asarray(50, jnp.int32))  # past warmup: a real update
    return step(state, batch)


@pytest.mark.slow  # CI keeps the suite under 10 minutes
def test_four_micro_batches_of_8_equal_one_batch_of_32():
    task = _task()
    (batch,) = _batches(task, 1, 32)
    whole, whole_metrics = _one_step(task, batch, 1)
    accumulated, accumulated_metrics = _one_step(task, batch, 4)
    np.testing.assert_allclose(accumulated_metrics["loss"], whole_metrics["loss"], rtol=1e-5)
    np.testing.assert_allclose(
        accumulated_metrics["grad_norm"], whole_metrics["grad_norm"], rtol=1e-5
    )
    for a, b in zip(jax.tree.leaves(accumulated.params), jax.tree.leaves(whole.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a whole run; CI keeps the suite under 10 minutes
def test_bfloat16_compute_keeps_float32_parameters_and_optimizer_state():
    task = _task("model.dtype=bfloat16")
    batches = _batches(task, 1, 4)
    config = load_config(TINY, ["optim.lr=3e-3"])
    optimizer = make_optimizer(config.optim, 60)
    schedule = learning_rate_schedule(config.optim, 60)
    init = jax.jit(functools.partial(init_train_state, task, optimizer))
    state = init(jax.random.key_data(jax.random.key(0)), batches[0])
    step = jax.jit(make_train_step(task, optimizer, schedule))
    losses = []
    for _ in range(15):
        state, metrics = step(state, batches[0])
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.8 * losses[0], losses
    dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state)) if x.ndim}
    assert dtypes == {jnp.dtype("float32")}
    logits, _ = task.model.apply(
        {"params": state.params}, batches[0]["image"], batches[0]["question"]
    )
    assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize(
    "variant",
    [
        [],  # the default: image shared by the questions, with the word pointer's bias
        pytest.param(["model.share_image=False", "model.lookup_bias=none"], marks=pytest.mark.slow),
    ],
)
def test_remat_and_scanned_layers_compute_the_same_function(variant):
    base = _task(*variant, "model.depth=2")
    (batch,) = _batches(base, 1, 2)
    params = jax.jit(base.init_params)(jax.random.key(0), batch)
    rng = jax.random.key(1)

    def loss_and_grads(task, params):
        return jax.jit(jax.value_and_grad(lambda p: task.loss(p, batch, rng)[0]))(params)

    loss, grads = loss_and_grads(base, params)
    remat = _task(*variant, "model.depth=2", "model.remat=True")
    remat_loss, remat_grads = loss_and_grads(remat, params)
    np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(grads)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    scanned = _task(*variant, "model.depth=2", "model.scan_layers=True")
    stacked = dict(params)
    fusion = dict(stacked["fusion"])
    blocks = [fusion.pop(f"block_{i}") for i in range(2)]
    fusion["blocks"] = jax.tree.map(lambda *x: jnp.stack(x), *blocks)
    stacked["fusion"] = fusion
    abstract = jax.eval_shape(scanned.init_params, jax.random.key(0), batch)
    assert jax.tree.structure(stacked) == jax.tree.structure(abstract)
    scanned_loss = jax.jit(lambda p: scanned.loss(p, batch, rng)[0])(stacked)
    np.testing.assert_allclose(scanned_loss, loss, rtol=1e-5)


# ---------------------------------------------------------------- 8 devices, subprocess


def _sharded_child(out_path: str) -> None:
    """Runs 4 steps on 1 device, data parallel on 8 and FSDP on 8; saves losses and params."""
    task = _task()
    config = load_config(TINY, [])
    optimizer = make_optimizer(config.optim, 100)
    schedule = learning_rate_schedule(config.optim, 100)
    batches = _batches(task, 4, 8)
    rng = jax.random.key_data(jax.random.key(0))
    devices = jax.devices()
    assert len(devices) == 8
    out = {}
    setups = {
        "one": ({"data": 1, "fsdp": 1}, devices[:1], False),
        "data_parallel": ({"data": 8, "fsdp": 1}, devices, False),
        "fsdp": ({"data": 1, "fsdp": 8}, devices, True),
    }
    for name, (mesh_config, mesh_devices, fsdp) in setups.items():
        mesh = sharding.make_mesh(mesh_config, mesh_devices)
        abstract = jax.eval_shape(
            lambda r, b: init_train_state(task, optimizer, r, b), rng, batches[0]
        )
        shardings = sharding.tree_shardings(abstract, mesh, {"fsdp": fsdp, "fsdp_min_size": 512})
        state = jax.jit(
            lambda r, b: init_train_state(task, optimizer, r, b), out_shardings=shardings
        )(rng, batches[0])
        train_step = make_train_step(task, optimizer, schedule)

        def traced(state, batch, mesh=mesh, train_step=train_step):
            with partitioning.activation_sharding(mesh):
                return train_step(state, batch)

        step = jax.jit(
            traced,
            in_shardings=(shardings, sharding.batch_sharding(mesh)),
            out_shardings=(shardings, sharding.replicated(mesh)),
            donate_argnums=0,
        )
        hlo = step.lower(state, sharding.global_batch(batches[0], mesh)).as_text()
        out[f"{name}/activation_constraints"] = np.asarray(hlo.count("sharding_constraint"))
        losses = []
        for batch in batches:
            state, metrics = step(state, sharding.global_batch(batch, mesh))
            losses.append(float(metrics["loss"]))
        out[f"{name}/losses"] = np.asarray(losses)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
            key = jax.tree_util.keystr(path, simple=True, separator="/")
            out[f"{name}/params/{key}"] = np.asarray(leaf)
            shard_shape = leaf.addressable_shards[0].data.shape
            out[f"{name}/shard_fraction/{key}"] = np.prod(shard_shape) / max(1, leaf.size)
    np.savez(out_path, **out)


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded") / "runs.npz"
    result = subprocess.run(
        [sys.executable, __file__, "sharded", str(out)],
        cwd=ROOT,
        env=_env(8),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out))


def _assert_same_params(got: dict, want: dict, steps: int) -> None:
    """Asserts that two runs of `steps` steps of the TINY config trained the same parameters.

    Attention key biases get a gradient of exactly zero (softmax ignores a shift of all
    logits), so what Adam applies to them is its normalisation of float noise, which differs
    between device layouts (by 1e-4 after 6 tiny steps). They are held to what Adam can move
    them: its bias-corrected update is at most about the learning rate a step.
    """
    lr = load_config(TINY, []).optim.lr
    assert got.keys() == want.keys()
    for key in got:
        if key.endswith("key/bias"):
            assert np.abs(got[key] - want[key]).max() <= 2 * steps * lr, key
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.slow  # the 8-device child run: about a minute
@pytest.mark.parametrize("name", ["data_parallel", "fsdp"])
def test_eight_devices_give_the_one_device_losses_and_parameters(sharded_runs, name):
    runs = sharded_runs
    np.testing.assert_allclose(runs[f"{name}/losses"], runs["one/losses"], rtol=1e-5)
    params = {
        run: {k.split("/params/")[1]: v for k, v in runs.items() if k.startswith(f"{run}/params/")}
        for run in (name, "one")
    }
    _assert_same_params(params[name], params["one"], steps=len(runs["one/losses"]))


@pytest.mark.slow
def test_activations_carry_logical_sharding_constraints(sharded_runs):
    # "batch" maps to (data, fsdp): constrained on 8 devices, not on one (axes of size 1).
    assert sharded_runs["data_parallel/activation_constraints"] > 10
    assert sharded_runs["fsdp/activation_constraints"] > 10
    assert sharded_runs["one/activation_constraints"] == 0


@pytest.mark.slow
def test_fsdp_really_shards_the_large_parameters(sharded_runs):
    fractions = {
        k.split("/shard_fraction/")[1]: v
        for k, v in sharded_runs.items()
        if k.startswith("fsdp/shard_fraction/")
    }
    sizes = {k: sharded_runs[f"fsdp/params/{k}"].size for k in fractions}
    large = [k for k in fractions if sizes[k] >= 512]
    assert large and all(fractions[k] == pytest.approx(1 / 8) for k in large)
    assert all(fractions[k] == 1 for k in fractions if sizes[k] < 512)
    assert all(
        v == 1 for k, v in sharded_runs.items() if k.startswith("data_parallel/shard_fraction/")
    )


# ---------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _main(workdir, data_dir, devices, *flags):
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={TINY}",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        "--config.batch_size=8",
        "--config.data.num_validation=16",
        "--config.evals.validation.batch_size=16",
        "--config.evals.validation.every=1000",
        "--config.evals.test.batch_size=16",
        "--config.total_steps=6",
        "--config.checkpoint_every=6",
        *flags,
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _final_params(workdir):
    from mmjax.train.checkpoints import Checkpointer

    step, state, _ = Checkpointer(os.path.join(workdir, "checkpoints")).restore_latest(
        with_data=False
    )
    leaves = jax.tree_util.tree_leaves_with_path(state["params"])
    return step, {jax.tree_util.keystr(p, simple=True, separator="/"): x for p, x in leaves}


@pytest.mark.slow  # about 2 minutes: three runs of main, two of them talking over gloo
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    data_dir = str(tmp_path / "data")
    single = _main(tmp_path / "single", data_dir, 8)
    _, stderr = single.communicate(timeout=300)
    assert single.returncode == 0, stderr[-3000:]

    address = f"localhost:{_free_port()}"
    processes = [
        _main(
            tmp_path / "multi",
            data_dir,
            4,
            f"--coordinator_address={address}",
            "--num_processes=2",
            f"--process_id={i}",
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for p, (_, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-3000:]
    assert "mesh {'data': 8, 'fsdp': 1}" in outputs[0][1]
    # Only process 0 reports and writes metrics; each process saved its iterator state.
    assert "question-only" in outputs[0][0] and "question-only" not in outputs[1][0]
    data_files = sorted(os.listdir(tmp_path / "multi" / "checkpoints" / "6" / "data"))
    assert [f for f in data_files if f.endswith(".json")] == [
        "process_0-of-2.json",
        "process_1-of-2.json",
    ]
    with open(tmp_path / "multi" / "metrics.jsonl") as f:
        multi_losses = [json.loads(x)["train/loss"] for x in f if "train/loss" in x]
    with open(tmp_path / "single" / "metrics.jsonl") as f:
        single_losses = [json.loads(x)["train/loss"] for x in f if "train/loss" in x]
    np.testing.assert_allclose(multi_losses, single_losses, rtol=1e-5)
    step, multi = _final_params(str(tmp_path / "multi"))
    single_step, single_params = _final_params(str(tmp_path / "single"))
    assert step == single_step == 6
    _assert_same_params(multi, single_params, steps=6)


def test_microbatches_that_do_not_divide_the_batch_are_a_config_error(tmp_path):
    process = _main(tmp_path / "never", tmp_path / "data", 1, "--config.microbatches=3")
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 2
    assert re.search(
        r"batch_size=8 does not split into microbatches=3 micro-batches over 1", stderr
    )
    assert not (tmp_path / "never").exists()


if __name__ == "__main__":
    if sys.argv[1] == "sharded":
        _sharded_child(sys.argv[2])
