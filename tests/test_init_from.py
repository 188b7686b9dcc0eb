"""config.init_from: exactly the selected parameters load, the rest keep their initial values.

A tiny retrieval run (ViT patch stem, so it has image position embeddings) is initialised
through the trainer's own `compile_steps(...).init_state()` from an .npz of mmjax paths and
from a workdir's checkpoint; mismatches are errors naming the parameters before anything is
written.
"""

import json
import os

import jax
import numpy as np
import pytest

from mmjax.config_loader import load_config
from mmjax.experiment import Experiment
from mmjax.train import sharding
from mmjax.train.checkpoints import Checkpointer
from mmjax.train.steps import compile_steps
from mmjax.weights import WeightsError, posemb, tree
from mmjax.workdir import Workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "retrieval_dual_encoder.py")
IMAGE_TOWER = "^(stem|image_encoder)/"


def _config(data_dir, **init_from):
    overrides = [f"data.data_dir={data_dir}", "model.stem=patch", "model.patch_size=15"]
    overrides += ["model.patch_kernel=0", "model.keep_tokens=0", "model.token_selector="]
    overrides.append("model.posemb=learn")
    overrides += [f"init_from.{k}={v}" for k, v in init_from.items()]
    return load_config(f"{CONFIG}:size=tiny,num_train=8,num_test=4", overrides)


def _experiment(config, workdir):
    experiment = Experiment.assemble(config, saved=None)
    experiment.save_vocabularies(Workdir(workdir))
    return experiment


def _first_state(experiment):
    config, task = experiment.config, experiment.task
    mesh = experiment.mesh()
    batch = experiment.local_batch(config.batch_size)
    return compile_steps(config, task, mesh, sharding.global_batch(batch, mesh)).init_state()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("data"))
    workdir = str(tmp_path_factory.mktemp("vocab"))
    experiment = _experiment(_config(data_dir), workdir)
    initial = tree.as_numpy(tree.flatten(_first_state(experiment).params))
    return data_dir, workdir, initial


def _source(tmp_path, initial, seed=0, **changes):
    """An .npz of mmjax paths with random values unlike the initial ones (`changes` replace)."""
    rng = np.random.default_rng(seed)
    arrays = {k: rng.normal(size=v.shape).astype(np.float32) + 3 for k, v in initial.items()}
    arrays.update(changes)
    path = str(tmp_path / f"source{seed}.npz")
    np.savez(path, **arrays)
    return path, arrays


def test_include_and_exclude_load_exactly_the_selected_parameters(setup, tmp_path):
    data_dir, workdir, initial = setup
    path, source = _source(tmp_path, initial)
    config = _config(data_dir, path=path, include=IMAGE_TOWER, exclude="posemb|block_0/mlp")
    experiment = _experiment(config, workdir)
    experiment.check_model()
    state = _first_state(experiment)
    params = tree.as_numpy(tree.flatten(state.params))
    chosen = {
        k
        for k in initial
        if k.startswith(("stem/", "image_encoder/"))
        and "posemb" not in k
        and "block_0/mlp" not in k
    }
    assert "stem/embedding/kernel" in chosen and "image_encoder/encoder_norm/scale" in chosen
    for name in initial:
        expected = source[name] if name in chosen else initial[name]
        np.testing.assert_array_equal(params[name], expected, err_msg=name)
    # The optimizer state starts at zero moments whatever was loaded.
    assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(state.opt_state))
    record = experiment.init_record
    assert record["path"] == path and record["kind"] == "mmjax_npz"
    assert sorted(record["loaded"]) == sorted(chosen)
    assert set(record["kept_initial"]) == set(initial) - chosen


def test_position_embeddings_are_resampled_to_the_new_grid(setup, tmp_path):
    data_dir, workdir, initial = setup
    name = "stem/posemb/pos_embedding"
    assert initial[name].shape == (1, 25, 32)  # 75 / 15: a 5 x 5 grid
    table = np.random.default_rng(1).normal(size=(1, 9, 32)).astype(np.float32)  # 3 x 3
    path, _ = _source(tmp_path, initial, seed=1, **{name: table})
    experiment = _experiment(_config(data_dir, path=path, include="posemb"), workdir)
    experiment.check_model()
    assert experiment.init_record["resampled"] == {name: [[1, 9, 32], [1, 25, 32]]}
    loaded = np.asarray(_first_state(experiment).params["stem"]["posemb"]["pos_embedding"])
    np.testing.assert_allclose(loaded, posemb.resample(table, 25), atol=1e-6)
    grid = loaded.reshape(5, 5, 32)
    # Half-pixel centres: the centre and the corners of the grid keep the source's values.
    np.testing.assert_allclose(grid[2, 2], table[0, 4], atol=1e-6)
    np.testing.assert_allclose(grid[0, 0], table[0, 0], atol=1e-6)
    np.testing.assert_allclose(grid[4, 4], table[0, 8], atol=1e-6)


def test_resample_keeps_the_class_token_row_and_is_identity_on_the_same_grid():
    table = np.random.default_rng(2).normal(size=(1, 1 + 16, 8)).astype(np.float32)
    np.testing.assert_array_equal(posemb.resample(table, 17), table)
    bigger = posemb.resample(table, 1 + 64)
    assert bigger.shape == (1, 65, 8)
    np.testing.assert_array_equal(bigger[:, 0], table[:, 0])
    assert not posemb.can_resample((1, 17, 8), (1, 64, 8))  # class-token row on one side only


def test_a_shape_mismatch_names_the_parameter_and_both_shapes(setup, tmp_path):
    data_dir, workdir, initial = setup
    kernel = "image_encoder/block_0/mlp/fc1/kernel"
    path, _ = _source(tmp_path, initial, **{kernel: np.zeros((32, 48), np.float32)})
    experiment = _experiment(_config(data_dir, path=path, include=IMAGE_TOWER), workdir)
    with pytest.raises(WeightsError) as error:
        experiment.check_model()
    message = str(error.value)
    assert kernel in message and "(32, 48)" in message and "(32, 64)" in message


def test_missing_and_unplaceable_parameters_are_named(setup, tmp_path):
    data_dir, workdir, initial = setup
    partial = {k: v for k, v in initial.items() if not k.startswith("text_encoder/")}
    np.savez(tmp_path / "partial.npz", **partial)
    experiment = _experiment(_config(data_dir, path=str(tmp_path / "partial.npz")), workdir)
    with pytest.raises(WeightsError, match="not in .*text_encoder/embedding/pos_embedding"):
        experiment.check_model()
    extra = "image_encoder/block_1/ln_1/scale"  # a deeper source than the model
    path, _ = _source(tmp_path, initial, seed=3, **{extra: np.ones(32, np.float32)})
    experiment = _experiment(_config(data_dir, path=path, include=IMAGE_TOWER), workdir)
    with pytest.raises(WeightsError, match=f"no place in the model.*{extra}"):
        experiment.check_model()
    experiment = _experiment(_config(data_dir, path=str(tmp_path / "nowhere.npz")), workdir)
    with pytest.raises(WeightsError, match="does not exist"):
        experiment.check_model()


def test_a_workdir_checkpoint_and_rename(setup, tmp_path):
    data_dir, workdir, initial = setup
    experiment = _experiment(_config(data_dir), workdir)
    state = _first_state(experiment)
    changed = jax.tree.map(lambda x: x + 1, state.params)
    run = tmp_path / "run"
    checkpointer = Checkpointer(str(run / "checkpoints"))
    checkpointer.save(7, state.replace(params=changed), {"position": 0})
    checkpointer.close()
    # Load the source's text projection into the image projection (same shapes).
    config = _config(
        data_dir,
        path=str(run),
        include="^image_projection/",
        rename="(('^text_projection/', 'image_projection/'),)",
    )
    experiment = _experiment(config, workdir)
    experiment.check_model()
    assert experiment.init_record["kind"] == "workdir" and experiment.init_record["step"] == 7
    params = _first_state(experiment).params
    np.testing.assert_array_equal(
        params["image_projection"]["kernel"], changed["text_projection"]["kernel"]
    )
    np.testing.assert_array_equal(
        params["text_projection"]["kernel"], initial["text_projection/kernel"]
    )
    experiment.save_init_record(Workdir(tmp_path / "fine_tune"))
    with open(tmp_path / "fine_tune" / "init_from.json") as f:
        assert json.load(f)["path"] == str(run)


def test_the_command_line_converts_and_exports_a_workdir(setup, tmp_path):
    from mmjax.weights import big_vision
    from mmjax.weights.__main__ import main as weights_main

    data_dir, workdir, _ = setup
    experiment = _experiment(_config(data_dir), workdir)
    state = _first_state(experiment)
    run = tmp_path / "run"
    checkpointer = Checkpointer(str(run / "checkpoints"))
    checkpointer.save(3, state, {"position": 0})
    checkpointer.close()
    Workdir(run).write_config(experiment.config)
    params = tree.as_numpy(tree.flatten(state.params))

    assert weights_main(["convert", str(run), str(tmp_path / "all.npz")]) == 0
    with np.load(tmp_path / "all.npz") as npz:
        assert sorted(npz.files) == sorted(params)
        np.testing.assert_array_equal(npz["stem/embedding/kernel"], params["stem/embedding/kernel"])
    assert weights_main(["export", str(run), str(tmp_path / "vit.npz")]) == 0
    exported = big_vision.load(str(tmp_path / "vit.npz")).params
    tower = {k for k in params if k.startswith(("stem/", "image_encoder/"))}
    assert set(exported) == tower
    for name in tower:
        np.testing.assert_array_equal(exported[name], params[name], err_msg=name)
    assert weights_main(["show", str(tmp_path / "missing")]) == 2
