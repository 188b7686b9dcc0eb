"""Autoregressive text decoder that attends to an encoder's output (e.g. image tokens).

Token id `pad_id` (default 0) is padding. The decoder predicts token t+1 from tokens <= t, so
training feeds [BOS, y_1, ..., y_{L-1}] and scores the logits against [y_1, ..., y_L].

Fast generation follows flax linen's autoregressive cache pattern: `init_cache` creates the
"cache" collection (self-attention keys/values of capacity C, zeros; the cross-attention
keys/values of `encoded`, computed once; the current position), then each
`apply(..., decode=True, mutable=["cache"])` consumes ONE token per example and returns the
logits for the next one. `mmjax.models.decoding` builds greedy, beam and sampling loops on it.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.attention import causal_mask, padding_mask
from mmjax.models.text import embedding_tables
from mmjax.models.transformer import DecoderBlock

Array = jax.Array
DType = Any


class TextDecoder(nn.Module):
    """Token + learned position embeddings, pre-LN `DecoderBlock`s, final LayerNorm, logits.

    Parameter tree: `token_embedding`, `pos_embedding` [max_len, width], `block_{i}`,
    `decoder_norm`, `logits` (Dense width -> vocab_size).

    Attributes:
      vocab_size: number of token ids (output classes).
      max_len: longest sequence (size of the position table and the largest cache).
      width: token width D.
      depth: number of decoder blocks.
      num_heads: attention heads.
      mlp_dim: MLP hidden width.
      dropout_rate: embedding, residual and MLP dropout.
      attention_dropout_rate: dropout on attention weights.
      pad_id: token id of padding (masked out as a self-attention key).
      dtype: computation dtype (logits are returned in float32 regardless).
      param_dtype: parameter dtype.
    """

    vocab_size: int
    max_len: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    pad_id: int = 0
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(
        self,
        tokens: Array,
        encoded: Array,
        encoded_mask: Array | None = None,
        *,
        train: bool = False,
        decode: bool = False,
        return_attention: bool = False,
    ) -> tuple[Array, dict[str, Any]]:
        """Compute next-token logits.

        Args:
          tokens: [B, L] int32 input tokens (`pad_id` = padding). With `decode=True` and an
            existing cache, L must be 1 (the token at the cache's current position).
          encoded: [B, N, D_enc] encoder output. Ignored by decode steps once the cache holds
            its keys/values, but still required.
          encoded_mask: optional [B, N] bool, True for valid encoder tokens.
          train: enables dropout ("dropout" rng).
          decode: use and update the "cache" collection (apply with `mutable=["cache"]`). The
            first such call creates the cache from [B, C] tokens (see `init_cache`). Decode
            steps do not mask padding: generated prefixes contain none.
          return_attention: collect attention weights.

        Returns:
          (logits [B, L, vocab_size] float32, intermediates), where intermediates is
          {"attention": {"block_{i}": {"self": [B, H, L, L or C], "cross": [B, H, L, N]}}}
          when `return_attention`, else {}.
        """
        length = tokens.shape[-1]
        decode_step = decode and self.has_variable("cache", "position")
        embed, pos_table = embedding_tables(
            self, self.vocab_size, self.width, self.max_len, length, self.dtype, self.param_dtype
        )
        x = embed(tokens)
        if decode_step:
            if length != 1:
                raise ValueError(f"A decode step takes tokens of shape [B, 1], got {tokens.shape}.")
            position = self.variable("cache", "position", lambda: jnp.array(0, jnp.int32))
            pos = jax.lax.dynamic_slice_in_dim(pos_table, position.value, 1)
            position.value = position.value + 1
            # Causality comes from the cache index inside the attention modules.
            self_mask = None
        else:
            if decode:
                self.variable("cache", "position", lambda: jnp.array(0, jnp.int32))
            pos = pos_table[:length]
            self_mask = causal_mask(length) & padding_mask(tokens != self.pad_id)
        x = x + pos.astype(x.dtype)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)

        cross_mask = None if encoded_mask is None else padding_mask(encoded_mask)
        attention = {}
        for i in range(self.depth):
            x, weights = DecoderBlock(
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                dropout_rate=self.dropout_rate,
                attention_dropout_rate=self.attention_dropout_rate,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"block_{i}",
            )(
                x,
                encoded,
                self_mask=self_mask,
                cross_mask=cross_mask,
                train=train,
                decode=decode,
                return_weights=return_attention,
            )
            if return_attention:
                attention[f"block_{i}"] = weights
        x = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="decoder_norm")(x)
        logits = nn.Dense(
            self.vocab_size, dtype=self.dtype, param_dtype=self.param_dtype, name="logits"
        )(x)
        return logits.astype(jnp.float32), ({"attention": attention} if return_attention else {})


def init_cache(
    decoder: TextDecoder,
    params: Any,
    encoded: Array,
    encoded_mask: Array | None = None,
    length: int | None = None,
) -> Any:
    """Create the decoding cache for `decoder` at position 0.

    The self-attention caches are zeros of capacity `length`; the cross-attention keys/values
    of `encoded` are computed here with the real `params`, once for the whole generation.

    Args:
      decoder: the module.
      params: its parameters (the "params" collection).
      encoded: [B, N, D_enc] encoder output.
      encoded_mask: optional [B, N] bool, True for valid encoder tokens.
      length: cache capacity C (how many tokens can be decoded); defaults to `decoder.max_len`.

    Returns:
      The "cache" collection: pass it as `{"params": params, "cache": cache}` to
      `decoder.apply(..., decode=True, mutable=["cache"])`.
    """
    length = decoder.max_len if length is None else length
    batch = encoded.shape[0]

    def create(tokens):
        _, variables = decoder.apply(
            {"params": params}, tokens, encoded, encoded_mask, decode=True, mutable=["cache"]
        )
        return variables["cache"]

    # A creating call on [B, C] tokens would size the cache right but cost a full forward pass;
    # one on [B, 1] tokens computes the same cross-attention keys/values but sizes the
    # self-attention caches to 1. So take the structure from the former (shapes only, no
    # compute) and the values from the latter: leaves whose shape differs are the
    # self-attention keys/values, which a creating call leaves at zeros anyway.
    template = jax.eval_shape(create, jax.ShapeDtypeStruct((batch, length), jnp.int32))
    small = create(jnp.full((batch, 1), decoder.pad_id, jnp.int32))
    return jax.tree.map(
        lambda t, s: s if t.shape == s.shape else jnp.zeros(t.shape, t.dtype), template, small
    )


__all__ = ["TextDecoder", "init_cache"]
