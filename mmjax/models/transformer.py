"""Transformer building blocks: MLP, pre-LayerNorm encoder block, encoder stack, decoder block.

Token layout is [..., L, D] with any number of leading batch dims; masks follow
`mmjax.models.attention` (boolean, broadcastable to [..., H, L, L], True = attend).

Options that imported architectures need (`mmjax.weights`), with defaults that keep mmjax's
own: the MLP's `activation` ("gelu", flax's tanh approximation; "gelu_exact" for PyTorch's and
Hugging Face's "gelu"; "quick_gelu" for OpenAI CLIP), the LayerNorms' `layer_norm_eps` (1e-6,
flax's; Hugging Face CLIP uses 1e-5, ViT 1e-12) and the encoder's `input_norm` (a LayerNorm
before the first block, CLIP's vision "pre_layrnorm").
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.attention import MultiHeadAttention
from mmjax.models.partitioning import constrain

Array = jax.Array
DType = Any


def quick_gelu(x: Array) -> Array:
    """The GELU approximation of OpenAI's CLIP: x * sigmoid(1.702 x)."""
    return x * jax.nn.sigmoid(1.702 * x)


# MLP activations by name; "gelu" is flax's default (the tanh approximation).
ACTIVATIONS = {
    "gelu": nn.gelu,
    "gelu_exact": lambda x: nn.gelu(x, approximate=False),
    "quick_gelu": quick_gelu,
}


def activation_fn(name: str):
    """The activation named `name` (a key of ACTIVATIONS); ValueError listing them if none."""
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; use one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Transformer feed-forward block: Dense(mlp_dim) -> activation -> Dropout -> Dense(out).

    Maps [..., D] to [..., out_dim or D].

    Attributes:
      mlp_dim: hidden width.
      out_dim: output width; defaults to the input width.
      dropout_rate: dropout after the activation (only with `train=True`).
      activation: a key of ACTIVATIONS ("gelu": the tanh approximation).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    mlp_dim: int
    out_dim: int | None = None
    dropout_rate: float = 0.0
    activation: str = "gelu"
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Apply the MLP to x [..., D]."""
        dense = dict(
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.normal(stddev=1e-6),
        )
        y = nn.Dense(self.mlp_dim, name="fc1", **dense)(x)
        y = constrain(y, ("batch",) + (None,) * (y.ndim - 2) + ("mlp",))
        y = activation_fn(self.activation)(y)
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        return nn.Dense(self.out_dim or x.shape[-1], name="fc2", **dense)(y)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer encoder block.

    x = x + Dropout(SelfAttention(LN(x))); x = x + Dropout(MLP(LN(x))). Built in `setup` so that
    fusion modules can reuse its sub-layers (`ln_1`, `attn`, `feed_forward`) with other attention
    patterns while keeping exactly this parameter tree.

    Attributes:
      num_heads: attention heads.
      mlp_dim: MLP hidden width.
      dropout_rate: residual and MLP dropout.
      attention_dropout_rate: dropout on attention weights.
      activation: the MLP's activation (a key of ACTIVATIONS).
      layer_norm_eps: epsilon of the LayerNorms.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def setup(self):
        """Create the sub-layers."""
        norm = dict(epsilon=self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype)
        self.ln_1 = nn.LayerNorm(**norm)
        self.attn = MultiHeadAttention(
            num_heads=self.num_heads,
            dropout_rate=self.attention_dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        self.ln_2 = nn.LayerNorm(**norm)
        self.mlp = MLP(
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            activation=self.activation,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        self.dropout = nn.Dropout(self.dropout_rate)

    def residual(self, x: Array, update: Array, train: bool) -> Array:
        """Return x + Dropout(update)."""
        return x + self.dropout(update, deterministic=not train)

    def feed_forward(self, x: Array, train: bool = False) -> Array:
        """Return x + Dropout(MLP(LN(x))) for x [..., L, D]."""
        return self.residual(x, self.mlp(self.ln_2(x), train=train), train)

    def __call__(
        self,
        x: Array,
        mask: Array | None = None,
        bias: Array | None = None,
        train: bool = False,
        return_weights: bool = False,
    ) -> tuple[Array, Array | None]:
        """Apply the block.

        Args:
          x: [..., L, D] tokens.
          mask: optional bool broadcastable to [..., H, L, L]; True = attend.
          bias: optional additive attention bias broadcastable to [..., H, L, L].
          train: enables dropout ("dropout" rng).
          return_weights: also return the attention weights.

        Returns:
          (x [..., L, D], attention weights [..., H, L, L] or None).
        """
        y, weights = self.attn(
            self.ln_1(x), mask=mask, bias=bias, train=train, return_weights=return_weights
        )
        x = self.residual(x, y, train)
        return self.feed_forward(x, train), weights


class DecoderBlock(nn.Module):
    """Pre-LayerNorm transformer decoder block with causal self- and cross-attention.

    x = x + Dropout(SelfAttention(LN(x))); x = x + Dropout(CrossAttention(LN(x), encoded));
    x = x + Dropout(MLP(LN(x))). With `decode=True` both attentions use the key/value cache of
    `MultiHeadAttention` (one new position per call; see `MultiHeadAttention.__call__`).

    Attributes:
      num_heads: attention heads (self and cross).
      mlp_dim: MLP hidden width.
      dropout_rate: residual and MLP dropout.
      attention_dropout_rate: dropout on attention weights.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def setup(self):
        """Create the sub-layers."""
        norm = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn = dict(
            num_heads=self.num_heads,
            dropout_rate=self.attention_dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        self.ln_1 = nn.LayerNorm(**norm)
        self.self_attn = MultiHeadAttention(**attn)
        self.ln_2 = nn.LayerNorm(**norm)
        self.cross_attn = MultiHeadAttention(**attn)
        self.ln_3 = nn.LayerNorm(**norm)
        self.mlp = MLP(
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        self.dropout = nn.Dropout(self.dropout_rate)

    def residual(self, x: Array, update: Array, train: bool) -> Array:
        """Return x + Dropout(update)."""
        return x + self.dropout(update, deterministic=not train)

    def __call__(
        self,
        x: Array,
        encoded: Array,
        self_mask: Array | None = None,
        cross_mask: Array | None = None,
        train: bool = False,
        decode: bool = False,
        return_weights: bool = False,
    ) -> tuple[Array, dict[str, Array]]:
        """Apply the block.

        Args:
          x: [..., L, D] target tokens (L = 1 for a `decode=True` step after the cache exists).
          encoded: [..., N, D_enc] encoder output to attend to.
          self_mask: optional bool broadcastable to [..., H, L, L] (the caller supplies the
            causal part; in a decode step, [..., H, 1, C] over the cache, causality is added
            by the cache).
          cross_mask: optional bool broadcastable to [..., H, L, N]; True = attend.
          train: enables dropout ("dropout" rng).
          decode: use and update the "cache" collection.
          return_weights: also return the attention weights.

        Returns:
          (x [..., L, D], {"self": [..., H, L, L or C], "cross": [..., H, L, N]} when
          `return_weights`, else {}).
        """
        y, self_w = self.self_attn(
            self.ln_1(x), mask=self_mask, train=train, return_weights=return_weights, decode=decode
        )
        x = self.residual(x, y, train)
        y, cross_w = self.cross_attn(
            self.ln_2(x),
            encoded,
            mask=cross_mask,
            train=train,
            return_weights=return_weights,
            decode=decode,
        )
        x = self.residual(x, y, train)
        x = self.residual(x, self.mlp(self.ln_3(x), train=train), train)
        return x, ({"self": self_w, "cross": cross_w} if return_weights else {})


class Encoder(nn.Module):
    """Stack of pre-LN encoder blocks (`block_{i}`) followed by a final LayerNorm.

    Attributes:
      depth: number of blocks.
      num_heads: attention heads.
      mlp_dim: MLP hidden width.
      dropout_rate: residual and MLP dropout.
      attention_dropout_rate: dropout on attention weights.
      activation: the MLPs' activation (a key of ACTIVATIONS).
      layer_norm_eps: epsilon of every LayerNorm.
      input_norm: a LayerNorm ("input_norm") on the tokens before the first block, as CLIP's
        vision tower has.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    depth: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    input_norm: bool = False
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: Array,
        mask: Array | None = None,
        train: bool = False,
        return_attention: bool = False,
    ) -> tuple[Array, dict[str, Any]]:
        """Encode tokens.

        Args:
          x: [..., L, D] tokens.
          mask: optional bool broadcastable to [..., H, L, L]; True = attend.
          train: enables dropout ("dropout" rng).
          return_attention: collect per-layer attention weights.

        Returns:
          (x [..., L, D] after the final LayerNorm, intermediates), where intermediates is
          {"attention": {"block_{i}": [..., H, L, L]}} when `return_attention`, else {}.
        """
        attention = {}
        norm = dict(epsilon=self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.input_norm:
            x = nn.LayerNorm(name="input_norm", **norm)(x)
        for i in range(self.depth):
            x, weights = EncoderBlock(
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                dropout_rate=self.dropout_rate,
                attention_dropout_rate=self.attention_dropout_rate,
                activation=self.activation,
                layer_norm_eps=self.layer_norm_eps,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"block_{i}",
            )(x, mask=mask, train=train, return_weights=return_attention)
            if return_attention:
                attention[f"block_{i}"] = weights
        x = nn.LayerNorm(name="encoder_norm", **norm)(x)
        return x, ({"attention": attention} if return_attention else {})
