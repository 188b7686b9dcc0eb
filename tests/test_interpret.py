"""Attention rollout against hand-computed products, joint attention matrices, overlays, and the
attention of a layer-scanned VQA model read through unstacked parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.interpret.attention import vqa_attention
from mmjax.interpret.overlay import colorize, overlay
from mmjax.interpret.rollout import answer_relevance, attention_rollout, joint_attention
from mmjax.models.vqa import VQATransformer


def _stochastic(rng, shape):
    x = rng.random(shape)
    return x / x.sum(-1, keepdims=True)


def test_rollout_of_two_layers_by_hand():
    first = np.array([[1.0, 0.0], [0.5, 0.5]])
    second = np.array([[0.2, 0.8], [0.0, 1.0]])
    # Two identical heads, so the head mean is the matrix itself.
    layers = [np.stack([first, first]), np.stack([second, second])]
    # 0.5 I + 0.5 A: [[1, 0], [.25, .75]] then [[.6, .4], [0, 1]]; rollout = second @ first.
    expected = np.array([[0.7, 0.3], [0.25, 0.75]])
    np.testing.assert_allclose(attention_rollout(layers), expected, rtol=1e-12)


def test_rollout_rows_sum_to_one_and_without_residual_one_layer_is_the_head_mean():
    rng = np.random.default_rng(0)
    layers = [_stochastic(rng, (2, 3, 4, 7, 7)) for _ in range(3)]
    for fusion in ("mean", "max", "min"):
        rollout = attention_rollout(layers, head_fusion=fusion)
        assert rollout.shape == (2, 3, 7, 7)
        np.testing.assert_allclose(rollout.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(attention_rollout(layers[:1], residual=0.0), layers[0].mean(-3))
    with pytest.raises(ValueError, match="residual=1.5 must lie in"):
        attention_rollout(layers, residual=1.5)


def test_joint_attention_of_shared_image_tokens_and_answer_relevance():
    rng = np.random.default_rng(1)
    image = _stochastic(rng, (1, 2, 3, 3))  # B=1, H=2, N=3
    text = _stochastic(rng, (1, 4, 2, 2, 5))  # Q=4, L=2 rows over N + L = 5 keys
    joint = joint_attention(image, text)
    assert joint.shape == (1, 4, 2, 5, 5)
    np.testing.assert_array_equal(joint[:, 1, :, :3, :3], image)
    assert not joint[..., :3, 3:].any()  # image tokens never attend to the question
    np.testing.assert_array_equal(joint[..., 3:, :], text)
    rollout = attention_rollout([joint], residual=0.0)
    relevance = answer_relevance(rollout, 3, np.array([1.0, 0.0]))  # the first question token
    np.testing.assert_allclose(relevance, text.mean(2)[..., 0, :3])
    with pytest.raises(ValueError, match="do not make a square"):
        joint_attention(image, text[..., :4])


def test_overlay_keeps_the_size_and_colours_only_where_the_map_is():
    image = np.full((30, 45, 3), 255, np.uint8)
    heat = np.full((2, 3), 0.4)
    np.testing.assert_array_equal(overlay(image, heat), image)  # even attention marks nothing
    heat[0, 0] = 2.0
    out = overlay(image, heat, alpha=1.0)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[2, 2] != 255).any()  # inside the top-left cell
    np.testing.assert_array_equal(out[-1, -1], [255, 255, 255])  # far from it
    ends = colorize(np.array([0.0, 1.0, 7.0]))  # values above 1 are clipped
    np.testing.assert_array_equal(ends, [[0, 0, 4], [252, 255, 164], [252, 255, 164]])
    with pytest.raises(ValueError, match="image must be uint8"):
        overlay(image.astype(np.float32), heat)


@pytest.mark.slow
def test_a_layer_scanned_model_gives_its_attention_through_unstacked_parameters():
    kw = dict(width=8, depth=2, num_heads=2, mlp_dim=16, stem="patch", patch_size=5, vocab_size=12)
    scanned = VQATransformer(**kw, scan_layers=True)
    images = jnp.asarray(np.random.default_rng(2).integers(0, 255, (1, 15, 15, 3)), jnp.uint8)
    questions = jnp.array([[[2, 5, 6, 3], [2, 7, 3, 0]]])
    params = jax.jit(scanned.init)(jax.random.key(0), images, questions)["params"]
    params["head_out"]["kernel"] = jnp.ones_like(params["head_out"]["kernel"]).cumsum(-1)
    logits, _ = jax.jit(scanned.apply)({"params": params}, images, questions)
    maps = vqa_attention(scanned, params, images, questions)
    np.testing.assert_allclose(maps.logits, logits, rtol=1e-5, atol=1e-6)
    assert len(maps.layers) == 2 and maps.grid == (3, 3)
    assert maps.rollout.shape == (1, 2, 13, 13) and maps.relevance.shape == (1, 2, 9)


def test_maps_of_a_model_that_keeps_some_patches_are_placed_back_on_the_patch_grid():
    kw = dict(width=8, depth=1, num_heads=2, mlp_dim=16, stem="patch", patch_size=5, vocab_size=12)
    model = VQATransformer(**kw, keep_tokens=2, token_selector="salient_patches")
    images = np.full((1, 15, 15, 3), 255, np.uint8)
    images[0, 5:10, 0:5] = (255, 0, 0)  # patch 3
    images[0, 10:15, 10:15] = (0, 0, 255)  # patch 8
    questions = jnp.array([[[2, 5, 6, 3]]])
    params = jax.jit(model.init)(jax.random.key(0), images, questions)["params"]
    maps = vqa_attention(model, params, images, questions)
    assert maps.grid == (3, 3) and maps.rollout.shape == (1, 1, 6, 6)  # 2 kept + 4 words
    assert maps.relevance.shape == (1, 1, 9) and maps.answer_to_image[0].shape == (1, 1, 2, 9)
    assert (maps.relevance[0, 0, [3, 8]] > 0).all()
    np.testing.assert_array_equal(np.delete(maps.relevance[0, 0], [3, 8]), 0)
