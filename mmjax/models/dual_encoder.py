"""DualEncoder: two towers that embed images and texts in one space, for contrastive training.

Image tower: stem (ViT patches, conv stem or ResNet; `image_stem`) -> `image_depth` transformer
blocks -> pooling ("mean" of the tokens, "map", a learned attention probe, or "cls", the class
token's output) -> Dense(embed_dim) -> L2 normalisation. Text tower: `TextEncoder` over token
ids (0 = padding) -> pooling ("mean" of the real tokens, "first", the output at the first token
(BOS) like a CLS token, "map" over the real tokens, or "eos", the output at the EOS token, as
CLIP reads its causal text tower) -> Dense(embed_dim) -> L2 normalisation.

The options after `posemb` make the towers those of other codebases, so that their trained
weights load exactly (`mmjax.weights`: Hugging Face CLIP is class_token="with_posemb",
patch_bias=False, image_input_norm=True, activation="quick_gelu", layer_norm_eps=1e-5,
projection_bias=False, text_causal=True, text_pool="eos", image_pool="cls"); their defaults
keep mmjax's own towers.

The towers share no parameters and never see each other, so an image is embedded once whatever
the texts it is compared with (and vice versa): retrieval over a split costs one pass of each
tower and a matrix product. Alongside them live the contrastive loss's learnable log logit
scale (the logits are exp(log_scale) * cosine similarity, i.e. 1 / temperature) and bias (used
by the sigmoid loss only).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models.attention import MultiHeadAttention, padding_mask
from mmjax.models.partitioning import constrain
from mmjax.models.stems import image_stem
from mmjax.models.text import TextEncoder
from mmjax.models.transformer import MLP, Encoder

Array = jax.Array
DType = Any

# CLIP (Radford et al. 2021) initialises the temperature at 0.07; SigLIP (Zhai et al. 2023)
# initialises the scale at 10 and the bias at -10, so that at the start the B - 1 negatives of
# each row do not swamp the one positive.
CLIP_LOG_SCALE_INIT = float(np.log(1 / 0.07))
SIGLIP_LOG_SCALE_INIT = float(np.log(10.0))
SIGLIP_BIAS_INIT = -10.0


def l2_normalize(x: Array, eps: float = 1e-6) -> Array:
    """Divides x [..., D] by max(its L2 norm, eps) along the last axis, in float32: [..., D]."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


IMAGE_POOLS = ("mean", "map", "cls")
TEXT_POOLS = ("mean", "first", "map", "eos")


def eos_positions(tokens: Array, valid: Array, eos_id: int) -> Array:
    """The position [...] int32 of each text's EOS token in tokens [..., L].

    eos_id >= 0: its first occurrence (0 where absent); -1: the last valid position (`valid`
    [..., L] bool); -2: the position of the largest id (OpenAI CLIP, whose EOS id is largest).
    """
    if eos_id >= 0:
        return jnp.argmax(tokens == eos_id, axis=-1)
    if eos_id == -1:
        return jnp.maximum(valid.sum(-1) - 1, 0)
    if eos_id == -2:
        return jnp.argmax(tokens, axis=-1)
    raise ValueError(f"eos_id={eos_id} must be a token id, -1 or -2.")


class MAPHead(nn.Module):
    """Multihead attention pooling (Lee et al. 2019, as in big_vision's ViT): tokens -> one vector.

    A learned probe attends to the tokens, then a residual MLP: x [..., L, D] -> [..., D].

    Attributes:
      num_heads: attention heads.
      mlp_dim: hidden width of the MLP after the attention.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    num_heads: int
    mlp_dim: int
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None) -> Array:
        """Pool x [..., L, D] over the tokens where `valid` [..., L] (bool) holds (all if None)."""
        width = x.shape[-1]
        probe = self.param(
            "probe", nn.initializers.xavier_uniform(), (1, width), self.param_dtype
        ).astype(self.dtype)
        probe = jnp.broadcast_to(probe, (*x.shape[:-2], 1, width))
        mask = None if valid is None else padding_mask(valid)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y, _ = MultiHeadAttention(num_heads=self.num_heads, name="attn", **kw)(probe, x, mask=mask)
        y = y + MLP(self.mlp_dim, name="mlp", **kw)(nn.LayerNorm(name="norm", **kw)(y))
        return y[..., 0, :]


class DualEncoder(nn.Module):
    """Image and text towers projected to one L2-normalised embedding space.

    images [B, H, W, 3] -> image embeddings [B, embed_dim]; tokens [..., L] (any leading
    dims, e.g. [B, R, L] for R captions per image) -> text embeddings [..., embed_dim]. Both
    are float32 and have unit L2 norm.

    Attributes:
      vocab_size: text vocabulary size (id 0 is padding).
      max_len: longest text, BOS and EOS included.
      embed_dim: width of the shared embedding space.
      width: token width of both towers (of the image tower when text_width is set).
      image_depth: transformer blocks over the image tokens (0: the stem's tokens as they are).
      text_depth: transformer blocks of the text encoder.
      num_heads: attention heads (encoders and MAP pooling).
      mlp_dim: MLP hidden width.
      dropout_rate: dropout in both encoders.
      text_width: token width of the text tower (None: width).
      text_num_heads: attention heads of the text tower (None: num_heads).
      text_mlp_dim: MLP hidden width of the text tower (None: mlp_dim).
      image_pool: "mean" or "map" (learned attention probe).
      text_pool: "mean" (over the real tokens), "first" (the BOS position) or "map".
      stem: "patch", "conv" or "resnet" (see `image_stem`).
      patch_size: patch size of the "patch" stem.
      patch_kernel: window of the "patch" stem's embedding, centred on each patch (0: the
        patch itself; see `PatchStem.kernel_size`).
      keep_tokens: the "patch" stem keeps only this many tokens per image, those that
        `token_selector` picks (0 keeps all; see `PatchStem`).
      token_selector: a registered token selector (`mmjax.registry.TOKEN_SELECTORS`).
      conv_channels: channels of the "conv" stem.
      resnet: ResNet variant of the "resnet" stem.
      video: the options of stem="vivit", for clips [B, T, H, W, 3] in place of images (a
        dict: kind, tubelet, depth, spatial_depth, temporal_depth, pool, mlp_dim; see
        `mmjax.models.stems.image_stem` and `mmjax.models.video.ViViT`).
      posemb: image position embeddings, "learn" or "sincos2d".
      class_token: the patch stem's class token, "none", "with_posemb" or "no_posemb" (see
        `PatchStem`).
      patch_bias: whether the patch embedding has a bias.
      image_mean: per-channel mean of the pixel normalisation (None: the stem's default).
      image_std: per-channel std of the pixel normalisation (None: the stem's default).
      image_input_norm: a LayerNorm on the image tokens before the first block (CLIP).
      activation: the MLP activation of both encoders (`transformer.ACTIVATIONS`).
      layer_norm_eps: epsilon of the encoders' LayerNorms.
      projection_bias: whether the two projections to the embedding space have biases.
      text_causal: a causal text encoder (each position sees the ones before it).
      text_window: the text tower's token window (`TextEncoder.window`; 0: none).
      pad_id: the padding token id (masked out as attention keys and in pooling); -1: none.
      eos_id: for text_pool="eos", the EOS token id: the embedding is read at its first
        position; -1 reads it at the last non-padding position, and -2 at the position of
        the largest id (OpenAI CLIP's rule: its EOS token has the largest id).
      logit_scale_init: initial log logit scale (log 1/temperature).
      logit_bias_init: initial logit bias (for the sigmoid loss).
      max_logit_scale: the scale is clipped to this (CLIP clips at 100 for stability).
      dtype: computation dtype (embeddings are float32).
      param_dtype: parameter dtype.
    """

    vocab_size: int
    max_len: int = 64
    embed_dim: int = 128
    width: int = 128
    image_depth: int = 1
    text_depth: int = 1
    num_heads: int = 4
    mlp_dim: int = 512
    dropout_rate: float = 0.0
    text_width: int | None = None
    text_num_heads: int | None = None
    text_mlp_dim: int | None = None
    image_pool: str = "mean"
    text_pool: str = "mean"
    stem: str = "conv"
    patch_size: int = 5
    patch_kernel: int = 0
    keep_tokens: int = 0
    token_selector: str = ""
    conv_channels: Sequence[int] = (32, 64, 128, 128)
    resnet: str = "resnet50"
    video: Any = None
    posemb: str = "learn"
    class_token: str = "none"
    patch_bias: bool = True
    image_mean: Sequence[float] | None = None
    image_std: Sequence[float] | None = None
    image_input_norm: bool = False
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    projection_bias: bool = True
    text_causal: bool = False
    text_window: int = 0
    pad_id: int = 0
    eos_id: int = -1
    logit_scale_init: float = CLIP_LOG_SCALE_INIT
    logit_bias_init: float = SIGLIP_BIAS_INIT
    max_logit_scale: float = 100.0
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def setup(self):
        """Create both towers and the logit scale and bias."""
        if self.image_pool not in IMAGE_POOLS:
            raise ValueError(f"Unknown image_pool {self.image_pool!r}; use one of {IMAGE_POOLS}.")
        if self.text_pool not in TEXT_POOLS:
            raise ValueError(f"Unknown text_pool {self.text_pool!r}; use one of {TEXT_POOLS}.")
        if self.image_pool == "cls" and self.class_token == "none":
            raise ValueError("image_pool='cls' needs a class_token.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        shared = dict(
            dropout_rate=self.dropout_rate,
            activation=self.activation,
            layer_norm_eps=self.layer_norm_eps,
        )
        image = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim)
        text = dict(
            num_heads=self.text_num_heads or self.num_heads,
            mlp_dim=self.text_mlp_dim or self.mlp_dim,
        )
        self.image_stem = image_stem(
            self.stem,
            self.width,
            patch_size=self.patch_size,
            patch_kernel=self.patch_kernel,
            keep_tokens=self.keep_tokens,
            token_selector=self.token_selector,
            conv_channels=self.conv_channels,
            resnet=self.resnet,
            posemb=self.posemb,
            class_token=self.class_token,
            patch_bias=self.patch_bias,
            mean=self.image_mean,
            std=self.image_std,
            video=self.video,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            **kw,
        )
        if self.image_depth:
            self.image_encoder = Encoder(
                depth=self.image_depth,
                input_norm=self.image_input_norm,
                **image,
                **shared,
                **kw,
            )
        self.text_encoder = TextEncoder(
            vocab_size=self.vocab_size,
            width=self.text_width or self.width,
            max_len=self.max_len,
            depth=self.text_depth,
            pad_id=self.pad_id,
            causal=self.text_causal,
            window=self.text_window,
            **text,
            **shared,
            **kw,
        )
        if self.image_pool == "map":
            self.image_map = MAPHead(**image, **kw)
        if self.text_pool == "map":
            self.text_map = MAPHead(**text, **kw)
        self.image_projection = nn.Dense(self.embed_dim, use_bias=self.projection_bias, **kw)
        self.text_projection = nn.Dense(self.embed_dim, use_bias=self.projection_bias, **kw)
        self.log_logit_scale = self.param(
            "log_logit_scale", nn.initializers.constant(self.logit_scale_init), (), jnp.float32
        )
        self.logit_bias = self.param(
            "logit_bias", nn.initializers.constant(self.logit_bias_init), (), jnp.float32
        )

    def embed_images(self, images: Array, train: bool = False) -> Array:
        """Unit-norm image embeddings [B, embed_dim] float32 for images [B, H, W, 3]."""
        x = self.image_stem(images)  # [B, N, width]
        if self.image_depth:
            x, _ = self.image_encoder(x, train=train)
        if self.image_pool == "map":
            x = self.image_map(x)
        elif self.image_pool == "cls":
            x = x[..., 0, :]
        else:
            x = jnp.mean(x, axis=-2)
        x = constrain(self.image_projection(x), ("batch", None))
        return l2_normalize(x)

    def embed_texts(self, tokens: Array, train: bool = False) -> Array:
        """Unit-norm text embeddings [..., embed_dim] float32 for int tokens [..., L].

        An all-padding row (an absent caption) gives a finite embedding that callers mask out.
        """
        x, _ = self.text_encoder(tokens, train=train)  # [..., L, width]
        valid = tokens != self.pad_id
        if self.text_pool == "map":
            x = self.text_map(x, valid)
        elif self.text_pool == "first":
            x = x[..., 0, :]
        elif self.text_pool == "eos":
            x = jnp.take_along_axis(
                x, eos_positions(tokens, valid, self.eos_id)[..., None, None], -2
            )
            x = x[..., 0, :]
        else:
            weights = valid[..., None].astype(x.dtype)
            # max(.., 1): an all-padding row pools to zeros rather than NaN.
            x = (x * weights).sum(-2) / jnp.maximum(weights.sum(-2), 1.0)
        x = self.text_projection(x)
        return l2_normalize(x)

    def logit_scale_and_bias(self) -> tuple[Array, Array]:
        """(scale, bias), float32 scalars: exp(log scale) clipped to max_logit_scale, and bias."""
        scale = jnp.exp(jnp.minimum(self.log_logit_scale, np.log(self.max_logit_scale)))
        return scale, self.logit_bias

    def __call__(
        self, images: Array, tokens: Array, train: bool = False
    ) -> tuple[dict[str, Array], dict[str, Any]]:
        """Embed both modalities.

        Args:
          images: [B, H, W, 3] uint8 (or float in [0, 1]).
          tokens: [..., L] int token ids of the texts (0 = padding).
          train: enables dropout ("dropout" rng).

        Returns:
          ({"image": [B, embed_dim], "text": [..., embed_dim], "logit_scale": [],
          "logit_bias": []}, {}): unit-norm float32 embeddings, the loss's scale and bias.
        """
        scale, bias = self.logit_scale_and_bias()
        out = {
            "image": self.embed_images(images, train=train),
            "text": self.embed_texts(tokens, train=train),
            "logit_scale": scale,
            "logit_bias": bias,
        }
        return out, {}
