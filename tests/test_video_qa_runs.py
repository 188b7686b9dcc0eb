"""Video QA runs: sharded like the image tasks, exact resume after a kill, predict from the
command line. All slow (whole runs of `mmjax.main` or a child with 8 fake devices).

The 8-device check runs in a subprocess (this file is its entry point:
`python tests/test_video_qa_runs.py sharded OUT.npz`).
"""

import functools
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = f"{ROOT}/configs/video_qa.py:size=tiny,num_train=24,num_validation=8,num_test=8"
STEPS, CHECKPOINT_EVERY = 30, 10


# ---------------------------------------------------------------- 8 devices, subprocess


def _sharded_child(out_path: str) -> None:
    """4 steps of the tiny video QA on 1 device, data parallel on 8 and FSDP on 8."""
    import jax

    from mmjax.config_loader import load_config
    from mmjax.experiment import Experiment
    from mmjax.models import partitioning
    from mmjax.projects.bouncing_shapes import clips
    from mmjax.projects.bouncing_shapes.dataset import common_record
    from mmjax.train import sharding
    from mmjax.train.optimizer import learning_rate_schedule, make_optimizer
    from mmjax.train.steps import init_train_state, make_train_step

    config = load_config(TINY, [])
    task = Experiment.assemble(config, prepare_data=False).task
    examples = [
        task.preprocess(common_record(c, i))
        for i, c in enumerate(clips.generate_split(0, 32, "train"))
    ]
    stacked = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    batches = [{k: v[i * 8 : (i + 1) * 8] for k, v in stacked.items()} for i in range(4)]
    optimizer = make_optimizer(config.optim, 100)
    schedule = learning_rate_schedule(config.optim, 100)
    rng = jax.random.key_data(jax.random.key(0))
    devices = jax.devices()
    assert len(devices) == 8
    init = functools.partial(init_train_state, task, optimizer)
    out = {}
    setups = {
        "one": ({"data": 1, "fsdp": 1}, devices[:1], False),
        "data_parallel": ({"data": 8, "fsdp": 1}, devices, False),
        "fsdp": ({"data": 1, "fsdp": 8}, devices, True),
    }
    for name, (mesh_config, mesh_devices, fsdp) in setups.items():
        mesh = sharding.make_mesh(mesh_config, mesh_devices)
        abstract = jax.eval_shape(init, rng, batches[0])
        shardings = sharding.tree_shardings(abstract, mesh, {"fsdp": fsdp, "fsdp_min_size": 256})
        state = jax.jit(init, out_shardings=shardings)(rng, batches[0])
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
        losses = []
        for batch in batches:
            state, metrics = step(state, sharding.global_batch(batch, mesh))
            losses.append(float(metrics["loss"]))
        out[f"{name}/losses"] = np.asarray(losses)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
            key = jax.tree_util.keystr(path, simple=True, separator="/")
            out[f"{name}/params/{key}"] = np.asarray(leaf)
            shard = leaf.addressable_shards[0].data.shape
            out[f"{name}/shard_fraction/{key}"] = np.prod(shard) / max(1, leaf.size)
    np.savez(out_path, **out)


@pytest.mark.slow  # the 8-device child: 1-3 minutes on the shared 2-core CPU
def test_eight_devices_train_the_video_model_like_one(tmp_path):
    out = tmp_path / "runs.npz"
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    result = subprocess.run(
        [sys.executable, __file__, "sharded", str(out)],
        cwd=ROOT,
        env=dict(os.environ, XLA_FLAGS=flags),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = dict(np.load(out))
    steps = len(runs["one/losses"])
    for name in ("data_parallel", "fsdp"):
        np.testing.assert_allclose(runs[f"{name}/losses"], runs["one/losses"], rtol=1e-5)
        for key in (k.split("/params/")[1] for k in runs if k.startswith("one/params/")):
            got, want = runs[f"{name}/params/{key}"], runs[f"one/params/{key}"]
            if key.endswith("key/bias"):  # zero gradient: Adam moves float noise (test_scale_out)
                assert np.abs(got - want).max() <= 2 * steps * 1e-3, key
            else:
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=key)
    # FSDP really splits the large parameters (the tubelet kernel among them) over 8 devices.
    fractions = {k: v for k, v in runs.items() if k.startswith("fsdp/shard_fraction/")}
    kernel = "fsdp/shard_fraction/stem/embedding/kernel"
    assert fractions[kernel] == pytest.approx(1 / 8)
    assert all(v == 1 for k, v in runs.items() if k.startswith("data_parallel/shard_fraction/"))


# ---------------------------------------------------------------- kill, resume, predict


def _main(workdir, data_dir, **kwargs) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "mmjax.main",
        f"--config={TINY},data_dir={data_dir}",
        f"--workdir={workdir}",
        f"--config.total_steps={STEPS}",
        f"--config.checkpoint_every={CHECKPOINT_EVERY}",
        "--config.log_every=1",
        "--config.evals.validation.every=1000",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, text=True, stderr=subprocess.PIPE, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(data_dir, workdir) of one uninterrupted tiny run."""
    root = tmp_path_factory.mktemp("video_qa")
    process = _main(root / "reference", root / "data")
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]
    return root / "data", root / "reference"


@pytest.mark.slow  # two starts of mmjax.main and the reference run: 2-5 minutes here
def test_a_run_killed_after_a_checkpoint_resumes_bitwise_equal(reference, tmp_path):
    from reliability_runs import assert_bitwise_equal, newest_checkpoint, state_leaves

    data_dir, reference_dir = reference
    workdir = tmp_path / "run"
    process = _main(workdir, data_dir)
    lines = []
    for line in process.stderr:  # kill it past step 12, once the checkpoint of step 10 is saved
        lines.append(line)
        match = re.search(r"\] step (\d+)/", line)
        if match and int(match.group(1)) >= 12:
            while newest_checkpoint(str(workdir)) < CHECKPOINT_EVERY and process.poll() is None:
                time.sleep(0.005)  # the save is asynchronous
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=300)
    assert process.returncode == -signal.SIGKILL, "".join(lines)[-3000:]
    resumed = _main(workdir, data_dir)
    _, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stderr[-3000:]
    resumed_at = re.search(r"resumed from the checkpoint at step (\d+)", stderr)
    assert resumed_at and int(resumed_at.group(1)) >= CHECKPOINT_EVERY, stderr[-3000:]
    assert_bitwise_equal(state_leaves(str(workdir)), state_leaves(str(reference_dir)))


@pytest.mark.slow  # two runs of mmjax.predict on the reference run: about a minute
def test_predict_answers_about_a_clip_file_from_the_command_line(reference, tmp_path):
    from mmjax.projects.bouncing_shapes import clips

    _, workdir = reference
    clip = next(clips.generate_split(0, 1, "test"))["video"]
    np.save(tmp_path / "clip.npy", clip)
    np.save(tmp_path / "short.npy", clip[:6])

    def predict(path):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mmjax.predict",
                f"--workdir={workdir}",
                f"--clip={path}",
                "--question=which object moves fastest?",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )

    done = predict(tmp_path / "clip.npy")
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.fullmatch(
        r"(red|green|blue|orange|gray|yellow) \(probability 0\.\d{3}\)", done.stdout.strip()
    ), done.stdout
    done = predict(tmp_path / "short.npy")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"mmjax: input error: '{tmp_path}/short.npy' has 6 frames; this model takes clips of "
        "8 frames"
    )


if __name__ == "__main__":
    if sys.argv[1] == "sharded":
        _sharded_child(sys.argv[2])
