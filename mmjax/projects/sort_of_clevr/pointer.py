"""WordPointer: where in the image a question's words point, as weights over the image tokens."""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

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
