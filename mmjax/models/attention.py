"""Scaled dot-product attention and multi-head attention.

Layout follows `jax.nn.dot_product_attention` ("BTNH"): queries are [..., Lq, H, Dh], keys and
values [..., Lk, H, Dh]; masks and biases broadcast to [..., H, Lq, Lk] and attention weights
come back as [..., H, Lq, Lk]. Masks are boolean with True meaning "may attend".

A query row whose mask allows no key at all gets an output of zeros (and zero weights), on both
code paths and in the gradient, instead of the uniform average (or NaN) that a plain softmax over
all-masked logits would give.

`MultiHeadAttention(..., decode=True)` follows flax linen's autoregressive cache pattern: the
first call (with the "cache" collection mutable and not yet holding this module's entries)
creates the cache, and later calls read and update it. See `MultiHeadAttention.__call__`.
"""

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.partitioning import constrain

Array = jax.Array
DType = Any


def causal_mask(length: int) -> Array:
    """Return a boolean causal mask of shape [1, length, length] (query i sees keys <= i)."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))[None]


def padding_mask(valid: Array, valid_q: Array | None = None) -> Array:
    """Return a boolean mask from per-token validity flags.

    Args:
      valid: [..., Lk] bool, True for real (non-padding) keys.
      valid_q: optional [..., Lq] bool. When given, padded query rows are masked as well (they
        then attend to nothing and their outputs are zeros); by default every query row attends
        to all valid keys, which keeps padded rows finite and harmless.

    Returns:
      [..., 1, 1, Lk] (or [..., 1, Lq, Lk] with valid_q), broadcastable to [..., H, Lq, Lk].

    """
    valid = jnp.asarray(valid, dtype=bool)
    if valid_q is None:
        return valid[..., None, None, :]
    valid_q = jnp.asarray(valid_q, dtype=bool)
    return (valid_q[..., :, None] & valid[..., None, :])[..., None, :, :]


def _with_rank(x: Array, rank: int) -> Array:
    """Prepends unit dimensions until x has at least `rank` dimensions."""
    return x.reshape((1,) * (rank - x.ndim) + x.shape) if x.ndim < rank else x


def _flatten_batch(x: Array, batch_shape: tuple[int, ...]) -> Array:
    """Reshapes a [..., A, B, C] mask/bias to the 4-D [batch, A, B, C] `jax.nn` wants."""
    x = _with_rank(x, len(batch_shape) + 3)
    lead = x.shape[:-3]
    if all(d == 1 for d in lead):
        # Keep a broadcast batch of 1 instead of materialising one copy per example.
        return x.reshape((1,) + x.shape[-3:])
    x = jnp.broadcast_to(x, batch_shape + x.shape[-3:])
    return x.reshape((-1,) + x.shape[-3:])


def _fused_attention(q, k, v, mask, bias, implementation):
    """Call `jax.nn.dot_product_attention` after folding leading batch dims into one."""
    batch_shape = q.shape[:-3]
    q4 = q.reshape((-1,) + q.shape[-3:])
    k4 = k.reshape((-1,) + k.shape[-3:])
    v4 = v.reshape((-1,) + v.shape[-3:])
    mask4 = None if mask is None else _flatten_batch(mask, batch_shape)
    bias4 = None if bias is None else _flatten_batch(bias, batch_shape)
    out = jax.nn.dot_product_attention(
        q4, k4, v4, bias=bias4, mask=mask4, implementation=implementation
    )
    return out.reshape(q.shape[:-1] + v.shape[-1:])


def _attention_weights(q, k, mask, bias):
    """Softmax attention weights [..., H, Lq, Lk] in float32; fully masked rows are zeros."""
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k, preferred_element_type=jnp.float32)
    logits = logits * (1.0 / math.sqrt(q.shape[-1]))
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if mask is not None:
        # A finite floor (not -inf) keeps all-masked rows NaN-free; they are zeroed below.
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1)
    if mask is not None:
        weights = jnp.where(jnp.any(mask, axis=-1, keepdims=True), weights, 0.0)
    return weights


def attention_dropout(weights: Array, rate: float, rng: Array) -> Array:
    """Drop attention weights with probability `rate`, rescaling the kept ones by 1/(1-rate)."""
    keep = jax.random.bernoulli(rng, 1.0 - rate, weights.shape)
    return jnp.where(keep, weights / (1.0 - rate), 0.0).astype(weights.dtype)


def scaled_dot_product_attention(
    q: Array,
    k: Array,
    v: Array,
    mask: Array | None = None,
    bias: Array | None = None,
    *,
    dropout_rate: float = 0.0,
    dropout_rng: Array | None = None,
    deterministic: bool = True,
    return_weights: bool = False,
    implementation: str | None = None,
) -> Array | tuple[Array, Array]:
    """Compute softmax(Q K^T / sqrt(Dh) + bias, masked) V.

    Uses `jax.nn.dot_product_attention` when neither weights nor dropout are needed (with
    `implementation=None` that is XLA today; pass "cudnn" to force the cuDNN flash kernel on a
    GPU for inputs it supports), otherwise an explicit einsum/softmax path. Both give zeros for
    query rows with no valid key.

    Args:
      q: [..., Lq, H, Dh] queries.
      k: [..., Lk, H, Dh] keys.
      v: [..., Lk, H, Dv] values.
      mask: optional bool, broadcastable to [..., H, Lq, Lk]; True = attend.
      bias: optional additive float bias broadcastable to [..., H, Lq, Lk].
      dropout_rate: probability of dropping an attention weight.
      dropout_rng: PRNG key, required when dropout is active.
      deterministic: if True, no dropout.
      return_weights: also return the (pre-dropout) attention weights.
      implementation: passed to `jax.nn.dot_product_attention` (None, "xla" or "cudnn").

    Returns:
      out [..., Lq, H, Dv] in v's dtype, and weights [..., H, Lq, Lk] (float32) if
      `return_weights`.

    """
    use_dropout = dropout_rate > 0.0 and not deterministic
    if use_dropout and dropout_rng is None:
        raise ValueError("dropout_rng is required when dropout is active.")
    if mask is not None:
        mask = _with_rank(jnp.asarray(mask, dtype=bool), 3)
    if bias is not None:
        bias = _with_rank(jnp.asarray(bias), 3)

    weights = None
    if return_weights or use_dropout:
        weights = _attention_weights(q, k, mask, bias)
        probs = attention_dropout(weights, dropout_rate, dropout_rng) if use_dropout else weights
        out = jnp.einsum("...hqk,...khd->...qhd", probs.astype(v.dtype), v)
    else:
        out = _fused_attention(q, k, v, mask, bias, implementation)
        if mask is not None:
            # jax.nn averages all values for an all-masked row; such rows must be zeros instead.
            has_key = jnp.swapaxes(jnp.any(mask, axis=-1), -1, -2)[..., None]  # [..., Lq, H, 1]
            out = jnp.where(has_key, out, jnp.zeros((), out.dtype))
    return (out, weights) if return_weights else out


class _HeadsDense(nn.Module):
    """Linear map that splits [..., D] into heads [..., H, Dh] or merges heads back to [..., F].

    Like `nn.DenseGeneral`, but the output width may default to the input width, which is only
    known at call time; that lets `MultiHeadAttention` build its projections in `setup` and
    expose them to other modules.

    Attributes:
      num_heads: number of heads H.
      merge: False for [..., D] -> [..., H, F // H]; True for [..., H, Dh] -> [..., F].
      features: F; None means `default_features` given at call time, else the input width
        (D, or H * Dh when merging).
      use_bias: whether to add a bias.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      kernel_init: initializer, applied to the flattened 2-D kernel.

    """

    num_heads: int
    merge: bool = False
    features: int | None = None
    use_bias: bool = True
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32
    kernel_init: Callable[..., Array] = nn.initializers.xavier_uniform()

    @nn.compact
    def __call__(self, x: Array, default_features: int | None = None) -> Array:
        """Apply the projection; see the class docstring for shapes."""
        h = self.num_heads
        if self.merge:
            features = self.features or default_features or x.shape[-2] * x.shape[-1]
            kernel_shape, out_shape, eq = x.shape[-2:] + (features,), (features,), "...hd,hdf->...f"
        else:
            features = self.features or default_features or x.shape[-1]
            if features % h:
                raise ValueError(f"features={features} is not divisible by {h} heads.")
            kernel_shape, out_shape = (x.shape[-1], h, features // h), (h, features // h)
            eq = "...d,dhe->...he"

        def init(rng, shape, dtype):
            # Flattened to 2-D first so fan-in/fan-out are those of the whole projection.
            fan_in = math.prod(shape[:-1]) if self.merge else shape[0]
            flat = self.kernel_init(rng, (fan_in, math.prod(shape) // fan_in), dtype)
            return flat.reshape(shape)

        kernel = self.param("kernel", init, kernel_shape, self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, out_shape, self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jnp.einsum(eq, x, kernel)
        return y + bias if self.use_bias else y


class MultiHeadAttention(nn.Module):
    """Multi-head dot-product attention with learned query/key/value/output projections.

    Parameters: query/key/value kernels [D, H, Dh], out kernel [H, Dh, out_features], biases.

    Attributes:
      num_heads: number of heads H.
      qkv_features: total query/key/value width (H * Dh); defaults to the query input width (so
        cross-attention keys/values of another width are projected to the queries' width).
      out_features: output width; defaults to the query input width.
      dropout_rate: attention-weight dropout, active only with `train=True` ("dropout" rng).
      use_bias: whether the projections have biases.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      kernel_init: initializer of the projection kernels.

    """

    num_heads: int
    qkv_features: int | None = None
    out_features: int | None = None
    dropout_rate: float = 0.0
    use_bias: bool = True
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32
    kernel_init: Callable[..., Array] = nn.initializers.xavier_uniform()

    def setup(self):
        """Create the query/key/value/out projections."""
        kw = dict(
            num_heads=self.num_heads,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
        )
        self.query = _HeadsDense(features=self.qkv_features, **kw)
        self.key = _HeadsDense(features=self.qkv_features, **kw)
        self.value = _HeadsDense(features=self.qkv_features, **kw)
        self.out = _HeadsDense(features=self.out_features, merge=True, **kw)

    def qkv(self, inputs_q: Array, inputs_kv: Array | None = None) -> tuple[Array, Array, Array]:
        """Project [..., Lq, D] queries and [..., Lk, Dkv] keys/values to [..., L, H, Dh] heads.

        Public so that fusion modules can reuse these parameters with their own attention
        pattern (e.g. one set of image keys shared by many text queries).
        """
        inputs_kv = inputs_q if inputs_kv is None else inputs_kv
        width = inputs_q.shape[-1]
        heads = (self.query(inputs_q), self.key(inputs_kv, width), self.value(inputs_kv, width))
        return tuple(
            constrain(h, ("batch",) + (None,) * (h.ndim - 3) + ("heads", None)) for h in heads
        )

    def project_out(self, heads: Array, width: int | None = None) -> Array:
        """Merge [..., L, H, Dh] heads into [..., L, F] with the output projection.

        F is `out_features`, else `width` (the query input width), else H * Dh.
        """
        return self.out(heads, width)

    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        mask: Array | None = None,
        bias: Array | None = None,
        train: bool = False,
        return_weights: bool = False,
        decode: bool = False,
    ) -> tuple[Array, Array | None]:
        """Attend from inputs_q [..., Lq, D] to inputs_kv [..., Lk, Dkv] (self-attention if None).

        With `decode=True` the module keeps keys/values in the "cache" collection (apply with
        `mutable=["cache"]`):

        - self-attention (`inputs_kv=None`): the first call, on [..., C, D] inputs, creates
          `cached_key`/`cached_value` [..., C, H, Dh] (zeros) and `cache_index` (0) and otherwise
          behaves like `decode=False`. Each later call takes ONE position, [..., 1, D], writes
          its key/value at `cache_index`, attends to positions <= `cache_index` (and `mask`, if
          given, broadcastable to [..., H, 1, C]) and advances the index.
        - cross-attention (`inputs_kv` given): the first call projects `inputs_kv` and caches
          the keys/values; later calls reuse them and ignore `inputs_kv`.

        Args:
          inputs_q: [..., Lq, D] queries.
          inputs_kv: [..., Lk, Dkv] keys/values; defaults to inputs_q.
          mask: optional bool broadcastable to [..., H, Lq, Lk]; True = attend.
          bias: optional additive bias broadcastable to [..., H, Lq, Lk].
          train: enables attention dropout.
          return_weights: also return the attention weights.
          decode: use and update the key/value cache (see above).

        Returns:
          (out [..., Lq, out_features], weights [..., H, Lq, Lk] or None).

        """
        if decode:
            q, k, v, mask = self._cached_qkv(inputs_q, inputs_kv, mask)
        else:
            q, k, v = self.qkv(inputs_q, inputs_kv)
        use_dropout = train and self.dropout_rate > 0.0
        res = scaled_dot_product_attention(
            q,
            k,
            v,
            mask,
            bias,
            dropout_rate=self.dropout_rate,
            dropout_rng=self.make_rng("dropout") if use_dropout else None,
            deterministic=not use_dropout,
            return_weights=return_weights,
        )
        out, weights = res if return_weights else (res, None)
        return self.project_out(out, inputs_q.shape[-1]), weights

    def _cached_qkv(
        self, inputs_q: Array, inputs_kv: Array | None, mask: Array | None
    ) -> tuple[Array, Array, Array, Array | None]:
        """Heads and mask for `decode=True`, reading and updating the "cache" collection."""
        if inputs_kv is not None:
            # Cross-attention: keys/values depend only on the fixed encoder output, so they are
            # projected once, when the cache is created, instead of at every generated token.
            if self.has_variable("cache", "cached_key"):
                q = self.query(inputs_q)
                q = constrain(q, ("batch",) + (None,) * (q.ndim - 3) + ("heads", None))
                k = self.get_variable("cache", "cached_key")
                v = self.get_variable("cache", "cached_value")
            else:
                q, k, v = self.qkv(inputs_q, inputs_kv)
                self.put_variable("cache", "cached_key", k)
                self.put_variable("cache", "cached_value", v)
            return q, k, v, mask

        q, k, v = self.qkv(inputs_q)
        # get/put_variable rather than self.variable: this module is built in `setup`, where
        # new variables could only be declared there, before the capacity is known.
        if not self.has_variable("cache", "cached_key"):
            # The creating call sizes the cache from its own length (the capacity) and attends
            # over its full input, like decode=False.
            self.put_variable("cache", "cached_key", jnp.zeros_like(k))
            self.put_variable("cache", "cached_value", jnp.zeros_like(v))
            self.put_variable("cache", "cache_index", jnp.array(0, jnp.int32))
            return q, k, v, mask
        cached_key = self.get_variable("cache", "cached_key")
        cached_value = self.get_variable("cache", "cached_value")
        index = self.get_variable("cache", "cache_index")
        *batch, capacity, heads, head_dim = cached_key.shape
        if q.shape != (*batch, 1, heads, head_dim):
            raise ValueError(
                f"decode=True takes one query position per call: expected query heads of shape "
                f"{(*batch, 1, heads, head_dim)}, got {q.shape}."
            )
        start = (0,) * len(batch) + (index, 0, 0)
        k = jax.lax.dynamic_update_slice(cached_key, k.astype(cached_key.dtype), start)
        v = jax.lax.dynamic_update_slice(cached_value, v.astype(cached_value.dtype), start)
        self.put_variable("cache", "cached_key", k)
        self.put_variable("cache", "cached_value", v)
        self.put_variable("cache", "cache_index", index + 1)
        # Slots past the current position are still zeros and must not be attended to.
        step_mask = (jnp.arange(capacity) <= index)[None, None, :]  # [H=1, Lq=1, capacity]
        mask = step_mask if mask is None else jnp.asarray(mask, dtype=bool) & step_mask
        return q, k, v, mask


__all__ = [
    "MultiHeadAttention",
    "attention_dropout",
    "causal_mask",
    "padding_mask",
    "scaled_dot_product_attention",
]
