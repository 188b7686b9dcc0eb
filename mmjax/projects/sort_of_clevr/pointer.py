"""The word pointer bias: where a question's words point, and look-ups biased by distance from it.

Registered as the text-to-image bias "pointer" (`mmjax.models.hooks.TextImageBias`):
`WordPointer` is its context, `word_pointer_features` its features and `LookupDistanceBias`
its per-block module.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.hooks import TextImageBias

Array = jax.Array
DType = Any


class WordPointer(nn.Module):
    """Per head, a look at the image tokens by one word of each question, the word being chosen.

    Each question word, embedded without a position term (so "red" looks for the same object in
    every question, wherever the word stands), attends to the image tokens on its own; a learned
    score over the question's valid words picks, per head, whose look counts. The result says
    where a question points ("the red object" of "the object furthest from the red object"), for
    `LookupDistanceBias`. It reads no values: its only training signal is how useful the
    distances from it are.

    Attributes:
      vocab_size: question vocabulary size (id 0 is padding).
      num_heads: H, independent pointers.
      width: word embedding width.
      head_dim: query / key width per head.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    vocab_size: int
    num_heads: int
    width: int
    head_dim: int = 16
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, questions: Array, image_tokens: Array) -> Array:
        """Questions [B, Q, L] ids (0 = padding), image_tokens [B, N, D] -> [B, Q, H, 1, N].

        The weights over the N image tokens sum to 1.
        """
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        features = (self.num_heads, self.head_dim)
        embedding = nn.Embed(self.vocab_size, self.width, name="word_embedding", **kw)
        word_norm = nn.LayerNorm(name="word_norm", **kw)
        query_proj = nn.DenseGeneral(features, name="query", **kw)
        word_score = nn.Dense(self.num_heads, name="word_score", **kw)
        image = nn.LayerNorm(name="image_norm", **kw)(image_tokens)
        key = nn.DenseGeneral(features, name="key", **kw)(image)  # [B, N, H, Dh]
        valid = (questions != 0)[..., None]  # [B, Q, L, 1]
        scale = 1.0 / math.sqrt(self.head_dim)
        # A word's look depends on the word and the image only: with a vocabulary smaller than
        # a question batch's Q * L tokens (Sort-of-CLEVR: 64 against 320), each entry's look
        # is computed once and the looks are summed per question with the choice weights.
        if self.vocab_size <= questions.shape[-2] * questions.shape[-1]:
            words = word_norm(embedding(jnp.arange(self.vocab_size)))  # [V, D]
            logits = jnp.einsum("vhd,bnhd->bhvn", query_proj(words), key) * scale
            looks = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)  # [B, H, V, N]
            score = word_score(words).astype(jnp.float32)[questions]  # [B, Q, L, H]
            choice = jax.nn.softmax(jnp.where(valid, score, -1e9), axis=-2)
            per_word = jnp.einsum(
                "bqlh,bqlv->bqhv", choice, jax.nn.one_hot(questions, self.vocab_size)
            )
            return jnp.einsum("bqhv,bhvn->bqhn", per_word, looks)[..., None, :]
        words = word_norm(embedding(questions))  # [B, Q, L, D]
        logits = jnp.einsum("bqlhd,bnhd->bqhln", query_proj(words), key) * scale
        looks = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)  # [B, Q, H, L, N]
        score = word_score(words).astype(jnp.float32)
        choice = jax.nn.softmax(jnp.where(valid, score, -1e9), axis=-2)  # [B, Q, L, H]
        return jnp.einsum("bqlh,bqhln->bqhn", choice, looks)[..., None, :]


LIKENESS_RANGE = 8.0


def pointer_features(weights: Array, positions: Array) -> Array:
    """Each image token's distance from each pointer, and how much it is like what is pointed at.

    A pointer h' is a set of weights w_h' over the N image tokens (summing to 1), at position
    p_h' = sum_n w_h'n pos_n. Returns [B, Q, 2, H', L, N]: index 0 is |pos_n - p_h'|, index 1
    like_h'n = 1 + max(log(w_h'n / max_m w_h'm), -8) / 8 in [0, 1], how much token n is like the
    tokens the pointer weights most (all the patches of the object it points at score near 1,
    not only the one or two that hold most of the weight).

    Args:
      weights: [B, Q, H', L, N] pointer weights of each of the L tokens of Q questions.
      positions: [B, N, 2] image token positions.
    """
    weights = weights.astype(jnp.float32)
    pointer = jnp.einsum("bqkln,bnc->bqklc", weights, positions)  # [B, Q, H', L, 2]
    offset = positions[:, None, None, None] - pointer[..., None, :]  # [B, Q, H', L, N, 2]
    # The 1e-6 keeps the gradient finite where a token sits exactly at the pointer.
    distance = jnp.sqrt(jnp.square(offset).sum(-1) + 1e-6)
    log_weights = jnp.log(jnp.maximum(weights, 1e-30))
    relative = log_weights - log_weights.max(-1, keepdims=True)
    likeness = 1.0 + jnp.maximum(relative, -LIKENESS_RANGE) / LIKENESS_RANGE
    return jnp.stack([distance, likeness], axis=2)


class LookupDistanceBias(nn.Module):
    """Bias of a question's look-up at the image by distance from where it points.

    With the `pointer_features` of H' pointers (distances d and likeness l), the bias of the
    look-up's head h at image token n is

      sum_h' (a_hh' * d_h'n + c_hh' * l_h'n),

    with the coefficients a and c linear in the text token's state and zero at initialisation.
    With a > 0 the look-up goes to the token farthest from the pointer ("the object furthest
    from the red one"), with a < 0 to the nearest, and c < 0 leaves out the object pointed at
    itself, whose own patches are the nearest to it ("the object closest to the red one").

    Attributes:
      num_heads: H, heads of the biased look-up (and H' of the pointers).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    num_heads: int
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x_text: Array, features: Array) -> Array:
        """x_text [B, Q, L, D], features [B, Q, 2, H', L, N] -> bias [B, H, Q, L, N]."""
        h = self.num_heads
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = nn.LayerNorm(name="norm", **kw)(x_text)
        coefficients = nn.DenseGeneral(
            (2, h, h),
            use_bias=False,
            kernel_init=nn.initializers.zeros,
            name="coefficients",
            **kw,
        )(x)  # [B, Q, L, 2, H, H']
        return jnp.einsum("bqlchk,bqckln->bhqln", coefficients, features)


def word_pointer_features(pointer: Array, positions: Array, text_len: int) -> Array:
    """`pointer_features` of the pointer [B, Q, H, 1, N] for each of `text_len` text tokens.

    Returns [B, Q, 2, H, text_len, N]: the same in every fusion block; only the coefficients
    that weigh them are per block.
    """
    pointer = jnp.broadcast_to(pointer, (*pointer.shape[:3], text_len, pointer.shape[-1]))
    return pointer_features(pointer, positions)


POINTER_BIAS = TextImageBias(WordPointer, word_pointer_features, LookupDistanceBias)
