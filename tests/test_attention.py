import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.attention import (
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)


def numpy_attention(q, k, v, mask=None, bias=None):
    """softmax(Q K^T / sqrt(d) + bias) V written out directly, in float64.

    q [..., Lq, H, D], k/v [..., Lk, H, D]; mask/bias broadcast to [..., H, Lq, Lk]. Rows with no
    valid key give zero weights and zero output.
    """
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = np.einsum("...qhd,...khd->...hqk", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    if mask is not None:
        logits = np.where(np.asarray(mask), logits, -np.inf)
    row_max = logits.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.exp(logits - row_max)
    total = e.sum(axis=-1, keepdims=True)
    weights = np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
    return np.einsum("...hqk,...khd->...qhd", weights, v), weights


def _qkv(batch=(2,), lq=5, lk=7, heads=3, dh=8, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=batch + (lq, heads, dh)).astype(np.float32)
    k = rng.normal(size=batch + (lk, heads, dh)).astype(np.float32)
    v = rng.normal(size=batch + (lk, heads, dh)).astype(np.float32)
    return q, k, v


def _run(path, q, k, v, mask=None, bias=None):
    if path == "fused":
        return scaled_dot_product_attention(q, k, v, mask, bias), None
    return scaled_dot_product_attention(q, k, v, mask, bias, return_weights=True)


def _valid(batch, lk, seed=1):
    lengths = np.random.default_rng(seed).integers(1, lk + 1, size=batch)
    return np.arange(lk) < lengths[..., None]


CASES = ["plain", "padding", "causal", "bias", "padding+bias", "two_batch_dims", "cross"]


@pytest.mark.parametrize("path", ["fused", "weights"])
@pytest.mark.parametrize("case", CASES)
def test_matches_numpy(path, case):
    batch, lq, lk = (2,), 5, 7
    if case == "two_batch_dims":
        batch = (2, 3)
    if case == "causal":
        lq = lk = 6
    if case == "cross":
        lq = 3
    q, k, v = _qkv(batch, lq, lk)
    mask = bias = None
    if "padding" in case or case in ("two_batch_dims", "cross"):
        mask = padding_mask(_valid(batch, lk))
    if case == "causal":
        mask = causal_mask(lk)
    if "bias" in case:
        bias = np.random.default_rng(2).normal(size=batch + (3, lq, lk)).astype(np.float32)
    out, weights = _run(path, q, k, v, mask, bias)
    want_out, want_weights = numpy_attention(q, k, v, mask, bias)
    assert out.shape == q.shape
    np.testing.assert_allclose(out, want_out, atol=2e-5, rtol=1e-5)
    if weights is not None:
        assert weights.shape == batch + (3, lq, lk)
        np.testing.assert_allclose(weights, want_weights, atol=2e-6)


def test_mask_helpers():
    np.testing.assert_array_equal(causal_mask(3)[0], np.tril(np.ones((3, 3), bool)))
    valid = np.array([[True, True, False]])
    assert padding_mask(valid).shape == (1, 1, 1, 3)
    both = padding_mask(valid, valid)
    assert both.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(both[0, 0, 2], [False, False, False])
    np.testing.assert_array_equal(both[0, 0, 0], [True, True, False])


def _fully_masked_case():
    q, k, v = _qkv((2,), 4, 5)
    valid = np.ones((2, 4, 5), bool)
    valid[0, 1] = False  # query row 1 of example 0 sees no key
    valid[1, :, 3:] = False
    return q, k, v, jnp.asarray(valid)[:, None]  # [B, 1, Lq, Lk]


@pytest.mark.parametrize("path", ["fused", "weights"])
def test_fully_masked_row_gives_zeros(path):
    q, k, v, mask = _fully_masked_case()
    out, weights = _run(path, q, k, v, mask)
    assert np.isfinite(np.asarray(out)).all()
    np.testing.assert_array_equal(out[0, 1], 0.0)
    np.testing.assert_allclose(out, numpy_attention(q, k, v, mask)[0], atol=2e-5)
    if weights is not None:
        np.testing.assert_array_equal(weights[0, :, 1], 0.0)


def test_gradients_finite_and_paths_agree():
    q, k, v, mask = _fully_masked_case()
    bias = jnp.asarray(np.random.default_rng(3).normal(size=(2, 1, 4, 5)), jnp.float32)

    def loss(path):
        return lambda q, k, v, b: (_run(path, q, k, v, mask, b)[0] ** 2).sum()

    grads = {
        p: jax.grad(loss(p), argnums=(0, 1, 2, 3))(q, k, v, bias) for p in ("fused", "weights")
    }
    for g_fused, g_weights in zip(grads["fused"], grads["weights"], strict=True):
        assert np.isfinite(np.asarray(g_fused)).all()
        assert np.isfinite(np.asarray(g_weights)).all()
        np.testing.assert_allclose(g_fused, g_weights, atol=1e-4)
    np.testing.assert_array_equal(grads["fused"][0][0, 1], 0.0)  # the masked query row


def test_dropout():
    q, k, v = _qkv()
    kw = dict(dropout_rate=0.5, dropout_rng=jax.random.key(0))
    no_drop = scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(
        scaled_dot_product_attention(q, k, v, **kw, deterministic=True), no_drop, atol=1e-6
    )
    a = scaled_dot_product_attention(q, k, v, **kw, deterministic=False)
    b = scaled_dot_product_attention(q, k, v, **kw, deterministic=False)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, no_drop)
    with pytest.raises(ValueError):
        scaled_dot_product_attention(q, k, v, dropout_rate=0.5, deterministic=False)


def test_multi_head_attention_weights_sum_to_one_over_valid_keys():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 16)), jnp.float32)
    valid = jnp.asarray(_valid((2,), 6))
    mha = MultiHeadAttention(num_heads=4)
    params = jax.jit(mha.init)(jax.random.key(0), x)
    apply = jax.jit(mha.apply, static_argnames="return_weights")
    out, weights = apply(params, x, mask=padding_mask(valid), return_weights=True)
    assert out.shape == (2, 6, 16)
    assert weights.shape == (2, 4, 6, 6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.where(valid[:, None, None, :], 0.0, weights), 0.0)
    out_fused, none = apply(params, x, mask=padding_mask(valid))
    assert none is None
    np.testing.assert_allclose(out_fused, out, atol=1e-5)


def test_multi_head_attention_features_dtype_and_dropout():
    x = jnp.ones((2, 5, 12))
    kv = jnp.ones((2, 7, 6))
    mha = MultiHeadAttention(num_heads=2, qkv_features=8, out_features=10, dropout_rate=0.5)
    params = jax.jit(mha.init)(jax.random.key(0), x, kv)
    out, _ = jax.jit(mha.apply)(params, x, kv)
    assert out.shape == (2, 5, 10)
    assert params["params"]["query"]["kernel"].shape == (12, 2, 4)
    assert params["params"]["key"]["kernel"].shape == (6, 2, 4)
    with pytest.raises(Exception, match="dropout"):
        mha.apply(params, x, kv, train=True)
    bf16 = MultiHeadAttention(num_heads=2, dtype=jnp.bfloat16)
    params = jax.jit(bf16.init)(jax.random.key(0), x)
    assert params["params"]["query"]["kernel"].dtype == jnp.float32
    assert jax.jit(bf16.apply)(params, x)[0].dtype == jnp.bfloat16
