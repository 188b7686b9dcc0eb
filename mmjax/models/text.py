"""Text embeddings and text encoder for token ids [..., L] (id `pad_id`, default 0, is padding)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.attention import causal_mask, padding_mask
from mmjax.models.transformer import Encoder

Array = jax.Array
DType = Any


def embedding_tables(
    module: nn.Module, vocab_size: int, width: int, max_len: int, length: int, dtype, param_dtype
) -> tuple[nn.Embed, Array]:
    """The token embedding and the [max_len, width] position table, as parameters of `module`.

    Called inside `module`'s compact method, it creates `token_embedding` (an `nn.Embed`) and
    `pos_embedding` directly under `module`, the layout `TextEmbedding` and `TextDecoder` share.

    Raises:
      ValueError if `length`, the sequence length to embed, exceeds max_len.
    """
    if length > max_len:
        raise ValueError(f"Sequence length {length} exceeds max_len={max_len}.")
    init = nn.initializers.normal(stddev=0.02)
    embed = nn.Embed(
        vocab_size,
        width,
        embedding_init=init,
        dtype=dtype,
        param_dtype=param_dtype,
        name="token_embedding",
        parent=module,
    )
    return embed, module.param("pos_embedding", init, (max_len, width), param_dtype)


class TextEmbedding(nn.Module):
    """Token embedding plus learned position embedding: ids [..., L] -> [..., L, width].

    Attributes:
      vocab_size: number of token ids.
      width: embedding width D.
      max_len: longest supported sequence (size of the position table).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    vocab_size: int
    width: int
    max_len: int
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, tokens: Array) -> Array:
        """Embed int tokens [..., L] (L <= max_len) into [..., L, width]."""
        length = tokens.shape[-1]
        embed, positions = embedding_tables(
            self, self.vocab_size, self.width, self.max_len, length, self.dtype, self.param_dtype
        )
        x = embed(tokens)
        return x + positions[:length].astype(x.dtype)


class TextEncoder(nn.Module):
    """TextEmbedding, dropout, then an `Encoder` over the non-padding tokens.

    Bidirectional by default; with `causal` each position sees only itself and the positions
    before it (CLIP's text tower, whose embedding is read at the EOS position).

    Attributes:
      vocab_size: number of token ids.
      width: token width D.
      max_len: longest supported sequence.
      depth: number of encoder blocks.
      num_heads: attention heads.
      mlp_dim: MLP hidden width.
      dropout_rate: embedding, residual and MLP dropout.
      attention_dropout_rate: dropout on attention weights.
      pad_id: token id of padding (masked out as attention keys); -1: no id is padding (with
        `causal`, positions after the one read out never matter).
      causal: attend only to the same and earlier positions.
      window: when > 0 (odd), each token's embedding gets a convolution of the `window`
        embeddings centred on it added (padding zeroed first), before the blocks: a phrase's
        words meet in one token (as the patch stem's window binds an object's colour, shape
        and place). 0: none.
      activation: the MLPs' activation (`mmjax.models.transformer.ACTIVATIONS`).
      layer_norm_eps: epsilon of the LayerNorms.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    vocab_size: int
    width: int
    max_len: int
    depth: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    pad_id: int = 0
    causal: bool = False
    window: int = 0
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(
        self, tokens: Array, train: bool = False, return_attention: bool = False
    ) -> tuple[Array, dict[str, Any]]:
        """Encode int tokens [..., L].

        Returns:
          (x [..., L, width], intermediates from `Encoder`: {"attention": {"block_{i}":
          [..., H, L, L]}} when `return_attention`, else {}). Outputs at padding positions are
          computed (from the valid tokens) but meaningless.
        """
        x = TextEmbedding(
            self.vocab_size,
            self.width,
            self.max_len,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="embedding",
        )(tokens)
        if self.window:
            if self.window % 2 == 0 or self.window < 0:
                raise ValueError(f"TextEncoder window={self.window} must be odd and positive.")
            real = (tokens != self.pad_id)[..., None] if self.pad_id >= 0 else 1
            x = x + nn.Conv(
                self.width,
                (self.window,),
                padding="SAME",
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="window",
            )(x * real)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        mask = padding_mask(tokens != self.pad_id) if self.pad_id >= 0 else None
        if self.causal:
            causal = causal_mask(tokens.shape[-1])
            mask = causal if mask is None else mask & causal
        return Encoder(
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            activation=self.activation,
            layer_norm_eps=self.layer_norm_eps,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="encoder",
        )(
            x,
            mask=mask,
            train=train,
            return_attention=return_attention,
        )
