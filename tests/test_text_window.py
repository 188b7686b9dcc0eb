"""The text tower's token window (TextEncoder.window): what each token sees before the blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.text import TextEncoder


def _encoder(window):
    # No blocks: the output is the embedding plus the window (then the encoder's final norm).
    return TextEncoder(
        vocab_size=20, width=8, max_len=12, depth=0, num_heads=2, mlp_dim=16, window=window
    )


def test_a_token_sees_its_window_and_nothing_beyond():
    model = _encoder(window=3)
    tokens = jnp.array([[2, 5, 6, 7, 8, 9, 10, 3, 0, 0]])
    params = model.init(jax.random.key(0), tokens)
    out = model.apply(params, tokens)[0]
    changed = model.apply(params, tokens.at[0, 4].set(11))[0]
    moved = np.flatnonzero(np.abs(np.asarray(changed - out)).sum(-1)[0] > 1e-6)
    assert moved.tolist() == [3, 4, 5]  # the token itself and one on each side
    # Without the window, only the changed token moves.
    plain = _encoder(window=0)
    p0 = plain.init(jax.random.key(0), tokens)
    diff = plain.apply(p0, tokens.at[0, 4].set(11))[0] - plain.apply(p0, tokens)[0]
    assert np.flatnonzero(np.abs(np.asarray(diff)).sum(-1)[0] > 1e-6).tolist() == [4]


def test_padding_adds_nothing_to_the_last_real_tokens():
    model = _encoder(window=5)
    padded = jnp.array([[2, 5, 6, 7, 3, 0, 0, 0]])
    params = model.init(jax.random.key(1), padded)
    long = model.apply(params, padded)[0][0, :5]
    short = model.apply(params, padded[:, :5])[0][0]  # the sequence ends at EOS: zeros beyond
    np.testing.assert_allclose(np.asarray(long), np.asarray(short), atol=1e-6)


def test_an_even_window_is_an_error():
    model = _encoder(window=4)
    with pytest.raises(ValueError, match="window=4 must be odd"):
        model.init(jax.random.key(0), jnp.ones((1, 6), jnp.int32))
