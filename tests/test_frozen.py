"""config.optim.frozen: frozen parameters stay bitwise, hold no optimizer state, get no gradient.

Trains a tiny retrieval run for a few steps through the trainer's own compiled steps with the
image tower frozen.
"""

import os

import jax
import numpy as np
import pytest

from mmjax.config_loader import load_config
from mmjax.config_utils import ConfigError
from mmjax.experiment import Experiment
from mmjax.train import sharding
from mmjax.train.steps import compile_steps
from mmjax.weights import tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "retrieval_dual_encoder.py")
FROZEN = "^(stem|image_encoder)/"


def _setup(data_dir, frozen):
    config = load_config(
        f"{CONFIG}:size=tiny,num_train=8,num_test=4",
        [f"data.data_dir={data_dir}", f"optim.frozen={frozen}", "optim.lr=0.05"]
        # The conv stem: its first layer's bias is the parameter the test signs.
        + [
            "model.stem=conv",
            "model.patch_kernel=0",
            "model.keep_tokens=0",
            "model.token_selector=",
        ],
    )
    experiment = Experiment.assemble(config, saved=None)
    mesh = experiment.mesh()
    batch = sharding.global_batch(experiment.local_batch(config.batch_size), mesh)
    return experiment, compile_steps(config, experiment.task, mesh, batch), batch


def _array_paths(tree_):
    return [
        jax.tree_util.keystr(path, simple=True, separator="/")
        for path, _ in jax.tree_util.tree_flatten_with_path(tree_)[0]
    ]


def test_frozen_parameters_are_bitwise_unchanged_and_have_no_optimizer_state(tmp_path):
    _, steps, batch = _setup(str(tmp_path), FROZEN)
    state = steps.init_state()
    # -0.0 + 0.0 is +0.0: a frozen parameter must not even be added a zero update.
    bias = state.params["stem"]["conv_0"]["bias"]
    state = state.replace(
        params={
            **state.params,
            "stem": {
                **state.params["stem"],
                "conv_0": {**state.params["stem"]["conv_0"], "bias": -0.0 * (bias + 1)},
            },
        }
    )
    before = tree.as_numpy(tree.flatten(state.params))
    assert np.all(np.signbit(before["stem/conv_0/bias"]))
    for _ in range(3):
        state, metrics = steps.train_step(state, batch)
        assert bool(metrics["finite"])
    after = tree.as_numpy(tree.flatten(state.params))
    frozen = [k for k in before if k.startswith(("stem/", "image_encoder/"))]
    trained = [k for k in before if k not in frozen]
    assert frozen and trained
    for name in frozen:
        assert before[name].tobytes() == after[name].tobytes(), name
    changed = [k for k in trained if not np.array_equal(before[k], after[k])]
    assert "text_projection/kernel" in changed and "image_projection/kernel" in changed
    assert len(changed) >= len(trained) - 2  # all but possibly logit_bias (softmax loss)

    # The optimizer holds moments for the trained parameters only.
    opt_paths = _array_paths(state.opt_state)
    assert not [p for p in opt_paths if "/stem/" in p or "/image_encoder/" in p]
    moments = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.opt_state))
    trained_size = sum(before[k].size for k in trained)
    assert 2 * trained_size <= moments <= 2 * trained_size + 8  # mu, nu and step counts


def test_an_unfrozen_run_keeps_moments_for_every_parameter(tmp_path):
    _, steps, _ = _setup(str(tmp_path), "")
    state = steps.init_state()
    size = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    moments = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.opt_state))
    assert 2 * size <= moments <= 2 * size + 8


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("^nothing/", "matches no parameter"), ("(unclosed", "is not a regex")],
)
def test_a_frozen_pattern_that_matches_nothing_is_a_config_error(tmp_path, pattern, message):
    config = load_config(
        f"{CONFIG}:size=tiny,num_train=8,num_test=4",
        [f"data.data_dir={tmp_path}", f"optim.frozen={pattern}"],
    )
    experiment = Experiment.assemble(config, saved=None)
    with pytest.raises(ConfigError, match=message):
        experiment.check_model()
