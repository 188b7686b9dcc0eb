"""Single-stream fusion of image tokens with the tokens of several questions per image.

In VQA each image comes with Q questions. `MultimodalEncoder` runs one transformer over the
concatenation [image tokens; question tokens] with learned modality-type embeddings. With
`share_image=True` image tokens attend only to image tokens, so their states do not depend on
the question: they are computed once per image ([B, N, D]) while every question's tokens attend
to all image tokens and to the valid tokens of their own question. This is the same function as
running the concatenated transformer per question with that attention mask (tested), at about
1/Q of the image cost. `share_image=False` is the plain per-question concatenation, where image
tokens also attend to text (Q times the image compute; for ablations).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.attention import attention_dropout, padding_mask, scaled_dot_product_attention
from mmjax.models.transformer import EncoderBlock
from mmjax.registry import TEXT_IMAGE_BIASES

Array = jax.Array
DType = Any


def image_text_attention(
    q_text: Array,
    k_image: Array,
    v_image: Array,
    k_text: Array,
    v_text: Array,
    text_mask: Array,
    *,
    bias_image: Array | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: Array | None = None,
    deterministic: bool = True,
    return_weights: bool = False,
) -> tuple[Array, Array | None]:
    """Attend from each question's tokens to the shared image keys and to its own tokens.

    One softmax runs over the joint key set [image; own question], but the image keys/values are
    never copied per question, and the two logit blocks are not even concatenated: the softmax
    is assembled from a shared row maximum and the two partial sums (as in flash attention).
    The image logits are one [Q*L, Dh] x [Dh, N] matmul per example and head. Why: broadcasting
    the image keys/values to every question and calling `jax.nn.dot_product_attention` with a
    mask copies them Q times, and concatenating the two logit blocks before one softmax
    materialises [Q*L, N + L]; both were measured slower on CPU when this was written. The
    copying one is timed against this function, forward and backward, by
    `experiments/benchmarks/fusion_attention.py` (docs/benchmarks.md).

    Args:
      q_text: [B, Q, L, H, Dh] text queries.
      k_image: [B, N, H, Dh] image keys, shared by the Q questions (N >= 1).
      v_image: [B, N, H, Dh] image values.
      k_text: [B, Q, L, H, Dh] text keys.
      v_text: [B, Q, L, H, Dh] text values.
      text_mask: [B, Q, L] bool, True for valid text keys.
      bias_image: optional [B, H, Q, L, N] added to the image logits.
      dropout_rate: attention-weight dropout rate.
      dropout_rng: PRNG key, required when dropout is active.
      deterministic: if True, no dropout.
      return_weights: also return the (pre-dropout) attention weights.

    Returns:
      (out [B, Q, L, H, Dh], weights [B, Q, H, L, N + L] float32 or None).
    """
    f32 = dict(preferred_element_type=jnp.float32)
    q_text = q_text * jnp.asarray(1.0 / math.sqrt(q_text.shape[-1]), q_text.dtype)
    # [B, H, Q, L, keys]: batch dims (B, H) lead, so the big image-logit block needs no transpose.
    logits_image = jnp.einsum("bqlhd,bnhd->bhqln", q_text, k_image, **f32)
    if bias_image is not None:
        logits_image = logits_image + bias_image.astype(jnp.float32)
    logits_text = jnp.einsum("bqlhd,bqmhd->bhqlm", q_text, k_text, **f32)
    logits_text = jnp.where(text_mask[:, None, :, None, :], logits_text, jnp.finfo(jnp.float32).min)
    # The result does not depend on the shift, so no gradient needs to flow through it. Every row
    # has N >= 1 unmasked image keys, so the shift is finite and no row is fully masked.
    shift = jax.lax.stop_gradient(
        jnp.maximum(logits_image.max(-1, keepdims=True), logits_text.max(-1, keepdims=True))
    )
    exp_image = jnp.exp(logits_image - shift)
    exp_text = jnp.exp(logits_text - shift)
    denom = exp_image.sum(-1, keepdims=True) + exp_text.sum(-1, keepdims=True)
    weights = None
    if return_weights:
        weights = jnp.concatenate([exp_image, exp_text], axis=-1) / denom
        weights = jnp.einsum("bhqlk->bqhlk", weights)
    if dropout_rate > 0.0 and not deterministic:
        rng_image, rng_text = jax.random.split(dropout_rng)
        exp_image = attention_dropout(exp_image, dropout_rate, rng_image)
        exp_text = attention_dropout(exp_text, dropout_rate, rng_text)
    dtype = v_text.dtype
    out = jnp.einsum("bhqln,bnhd->bhqld", exp_image.astype(dtype), v_image)
    out = out + jnp.einsum("bhqlm,bqmhd->bhqld", exp_text.astype(dtype), v_text)
    out = out / denom.astype(dtype)
    return jnp.einsum("bhqld->bqlhd", out), weights


class SharedImageBlock(EncoderBlock):
    """`EncoderBlock` (same parameters) applied to image tokens shared by Q questions.

    Image tokens run plain self-attention among themselves; text tokens attend jointly to the
    image tokens and to the valid tokens of their own question (`image_text_attention`).
    Calling the block directly (`__call__`) is the ordinary encoder block.
    """

    text_image_bias: str = "none"

    def setup(self):
        """The encoder block's layers, and the block's part of a text-to-image bias, if any."""
        super().setup()
        if self.text_image_bias != "none":
            self.lookup_bias = TEXT_IMAGE_BIASES.get(self.text_image_bias).block(
                self.num_heads, dtype=self.dtype, param_dtype=self.param_dtype
            )

    def shared_image(
        self,
        x_image: Array,
        x_text: Array,
        text_mask: Array,
        train: bool = False,
        return_weights: bool = False,
        bias_features=None,
    ) -> tuple[Array, Array, Array | None, Array | None]:
        """Apply the block to image tokens [B, N, D] and text tokens [B, Q, L, D].

        Args:
          x_image: [B, N, D] image tokens.
          x_text: [B, Q, L, D] text tokens.
          text_mask: [B, Q, L] bool, True for valid text tokens.
          train: enables dropout ("dropout" rng).
          return_weights: also return attention weights.
          bias_features: the features of the block's text-to-image bias (`text_image_bias`),
            from which its `lookup_bias` module makes the bias [B, H, Q, L, N] of the text
            tokens' logits over the image tokens; None for no bias.

        Returns:
          (x_image [B, N, D], x_text [B, Q, L, D], image weights [B, H, N, N] or None,
          text weights [B, Q, H, L, N + L] or None).
        """
        use_dropout = train and self.attention_dropout_rate > 0.0

        def dropout_kw():
            return dict(
                dropout_rate=self.attention_dropout_rate,
                dropout_rng=self.make_rng("dropout") if use_dropout else None,
                deterministic=not use_dropout,
            )

        q_image, k_image, v_image = self.attn.qkv(self.ln_1(x_image))
        q_text, k_text, v_text = self.attn.qkv(self.ln_1(x_text))
        res = scaled_dot_product_attention(
            q_image, k_image, v_image, return_weights=return_weights, **dropout_kw()
        )
        image_out, image_weights = res if return_weights else (res, None)
        text_out, text_weights = image_text_attention(
            q_text,
            k_image,
            v_image,
            k_text,
            v_text,
            text_mask,
            bias_image=(None if bias_features is None else self.lookup_bias(x_text, bias_features)),
            return_weights=return_weights,
            **dropout_kw(),
        )
        image_out = self.attn.project_out(image_out, x_image.shape[-1])
        text_out = self.attn.project_out(text_out, x_text.shape[-1])
        x_image = self.feed_forward(self.residual(x_image, image_out, train), train)
        x_text = self.feed_forward(self.residual(x_text, text_out, train), train)
        return x_image, x_text, image_weights, text_weights


class FusionLayer(SharedImageBlock):
    """One fusion block as a function carry -> (carry, None), the form nn.scan and nn.remat need.

    Same parameters as `SharedImageBlock`. The carry is (image [B, N, D], text [B, Q, L, D])
    with `share_image=True` and the joint tokens [B, Q, N + L, D] otherwise; `inputs` is
    (text mask [B, Q, L], bias features or None) (see `SharedImageBlock.shared_image`) or
    the joint attention mask, respectively.
    """

    share_image: bool = True
    train: bool = False

    def __call__(self, carry, inputs):
        """Applies the block to `carry` (see the class docstring); returns (carry, None)."""
        if self.share_image:
            x_image, x_text = carry
            text_mask, features = inputs
            x_image, x_text, _, _ = self.shared_image(
                x_image, x_text, text_mask, self.train, bias_features=features
            )
            return (x_image, x_text), None
        x, _ = super().__call__(carry, mask=inputs, train=self.train)
        return x, None


def _joint_tokens(x_image: Array, x_text: Array, text_mask: Array) -> tuple[Array, Array]:
    """Per question, [image; question] tokens [B, Q, N + L, D] and their attention mask.

    x_image is [B, N, D], copied for each question; x_text [B, Q, L, D]; text_mask [B, Q, L]
    bool. The mask is `padding_mask` of the valid keys (every image token, the valid text).
    """
    b, n, d = x_image.shape
    q = x_text.shape[1]
    x = jnp.concatenate([jnp.broadcast_to(x_image[:, None], (b, q, n, d)), x_text], axis=2)
    mask = padding_mask(jnp.concatenate([jnp.ones((b, q, n), bool), text_mask], axis=2))
    return x, mask


class MultimodalEncoder(nn.Module):
    """Single-stream transformer over image tokens and the tokens of Q questions per image.

    Learned modality-type embeddings (`type_embedding`, [2, D]: image, text) are added to the
    inputs; then `depth` blocks and a final LayerNorm. The parameters under `block_{i}` and
    `encoder_norm` have exactly the layout of `mmjax.models.transformer.Encoder`.

    With `share_image=True` image tokens attend only to image tokens (computed once per image)
    and text tokens attend to all image tokens and the valid tokens of their own question. With
    `share_image=False` each question gets its own copy of the image tokens and every token
    attends to every valid token of [image; question].

    Attributes:
      depth: number of blocks.
      num_heads: attention heads.
      mlp_dim: MLP hidden width.
      dropout_rate: residual and MLP dropout.
      attention_dropout_rate: dropout on attention weights.
      share_image: encode each image once for all its questions (see above).
      remat: recompute each block's activations in the backward pass (`nn.remat`).
      scan_layers: one `nn.scan` over the blocks, parameters stacked under `blocks` (one
        compiled block for any depth). Neither can return attention weights.
      text_image_bias: "none" or a registered text-to-image bias
        (`mmjax.registry.TEXT_IMAGE_BIASES`), whose `block` module, under each block's
        `lookup_bias`, biases the text tokens' attention to the image (needs share_image=True).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    depth: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    share_image: bool = True
    remat: bool = False
    scan_layers: bool = False
    text_image_bias: str = "none"
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def _block_kwargs(self) -> dict[str, Any]:
        return dict(
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            text_image_bias=self.text_image_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def _layers(self, carry, inputs, train: bool):
        """The blocks through `FusionLayer`, rematerialised and/or scanned."""
        layer = nn.remat(FusionLayer) if self.remat else FusionLayer
        kw = dict(self._block_kwargs(), share_image=self.share_image, train=train)
        if self.scan_layers:
            scanned = nn.scan(
                layer,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=nn.broadcast,
                length=self.depth,
            )
            carry, _ = scanned(**kw, name="blocks")(carry, inputs)
            return carry
        for i in range(self.depth):
            carry, _ = layer(**kw, name=f"block_{i}")(carry, inputs)
        return carry

    @nn.compact
    def __call__(
        self,
        image_tokens: Array,
        text_tokens: Array,
        text_mask: Array,
        train: bool = False,
        return_attention: bool = False,
        bias_features=None,
    ) -> tuple[Array, Array, dict[str, Any]]:
        """Fuse image and question tokens.

        Args:
          image_tokens: [B, N, D].
          text_tokens: [B, Q, L, D].
          text_mask: [B, Q, L] bool, True for valid (non-padding) text tokens.
          train: enables dropout ("dropout" rng).
          return_attention: collect per-layer attention weights.
          bias_features: with `text_image_bias`, the bias's features (see its registry
            entry), the same for every block; each block's `lookup_bias` turns them into
            the bias of its text-to-image logits.

        Returns:
          (image_out, text_out [B, Q, L, D], intermediates). image_out is [B, N, D] with
          `share_image=True` and per question, [B, Q, N, D], otherwise. With `return_attention`,
          intermediates has "text_attention": {"block_{i}": [B, Q, H, L, N + L]} (text rows over
          [image; text] keys) and "image_attention": {"block_{i}": ...}, [B, H, N, N] with
          `share_image=True`, else [B, Q, H, N, N + L]; otherwise it is {}.
        """
        _, n, _ = image_tokens.shape  # [B, N, D]
        x_image, x_text = self._add_type_embedding(image_tokens, text_tokens)
        text_mask = jnp.asarray(text_mask, dtype=bool)
        # What every block carries and the inputs it reads besides (see `FusionLayer`).
        if self.share_image:
            carry, inputs = (x_image, x_text), (text_mask, bias_features)
        else:
            carry, inputs = _joint_tokens(x_image, x_text, text_mask)
        if (self.text_image_bias == "none") != (bias_features is None):
            raise ValueError("text_image_bias and bias_features go together: give both or neither.")
        if bias_features is not None and not self.share_image:
            raise ValueError("A text-to-image bias needs share_image=True.")

        if self.remat or self.scan_layers:
            if return_attention:
                raise ValueError("return_attention needs remat=False and scan_layers=False")
            carry = self._layers(carry, inputs, train)
            image_attention, text_attention = {}, {}
        else:
            carry, image_attention, text_attention = self._unrolled_blocks(
                carry, inputs, n, train, return_attention
            )
        image_out, text_out = self._final_norm(carry, n)
        intermediates = {}
        if return_attention:
            intermediates = {"image_attention": image_attention, "text_attention": text_attention}
        return image_out, text_out, intermediates

    def _add_type_embedding(self, image_tokens: Array, text_tokens: Array) -> tuple[Array, Array]:
        """Image [B, N, D] and text [B, Q, L, D] tokens plus their `type_embedding` rows."""
        type_embedding = self.param(
            "type_embedding",
            nn.initializers.normal(stddev=0.02),
            (2, image_tokens.shape[-1]),
            self.param_dtype,
        )
        x_image = (image_tokens + type_embedding[0]).astype(self.dtype)
        x_text = (text_tokens + type_embedding[1]).astype(self.dtype)
        return x_image, x_text

    def _unrolled_blocks(
        self, carry, inputs, num_image_tokens: int, train: bool, return_attention: bool
    ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """The blocks `block_{i}` one by one on `carry` (see `FusionLayer` for carry and inputs).

        Returns (carry, image attention, text attention): the attention dicts map "block_{i}"
        to its weights (shapes in `__call__`), or to None without `return_attention`.
        """
        n = num_image_tokens
        image_attention, text_attention = {}, {}
        for i in range(self.depth):
            block = SharedImageBlock(**self._block_kwargs(), name=f"block_{i}")
            if self.share_image:
                (x_image, x_text), (text_mask, features) = carry, inputs
                x_image, x_text, w_image, w_text = block.shared_image(
                    x_image,
                    x_text,
                    text_mask,
                    train=train,
                    return_weights=return_attention,
                    bias_features=features,
                )
                carry = (x_image, x_text)
            else:
                carry, w = block(carry, mask=inputs, train=train, return_weights=return_attention)
                w_image, w_text = (None, None) if w is None else (w[..., :n, :], w[..., n:, :])
            image_attention[f"block_{i}"], text_attention[f"block_{i}"] = w_image, w_text
        return carry, image_attention, text_attention

    def _final_norm(self, carry, num_image_tokens: int) -> tuple[Array, Array]:
        """`encoder_norm` of the blocks' output `carry`, split into (image, text) tokens.

        Image [B, N, D] and text [B, Q, L, D] with share_image=True; from the joint tokens
        [B, Q, N + L, D] otherwise, image [B, Q, N, D] and text [B, Q, L, D].
        """
        norm = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="encoder_norm")
        if self.share_image:
            x_image, x_text = carry
            return norm(x_image), norm(x_text)
        x = norm(carry)
        return x[:, :, :num_image_tokens], x[:, :, num_image_tokens:]
