"""Captioner: an image encoder and a causal text decoder that cross-attends to its tokens.

The encoder is a stem (ViT patches, conv stem or ResNet) and transformer blocks; its options
after `posemb` (class token, patch bias, pixel normalisation, input LayerNorm, activation,
LayerNorm epsilon) let it take the image tower of another codebase (`mmjax.weights`).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.decoder import TextDecoder
from mmjax.models.stems import image_stem
from mmjax.models.transformer import Encoder

Array = jax.Array
DType = Any


def captioner_decoder(captioner: "Captioner") -> TextDecoder:
    """The TextDecoder of `captioner`, as a stand-alone module.

    Built outside a module, it runs with the captioner's params["decoder"], which is what the
    decoding functions need.
    """
    return TextDecoder(
        vocab_size=captioner.vocab_size,
        max_len=captioner.max_len,
        width=captioner.width,
        depth=captioner.decoder_depth,
        num_heads=captioner.num_heads,
        mlp_dim=captioner.mlp_dim,
        dropout_rate=captioner.dropout_rate,
        dtype=captioner.dtype,
        param_dtype=captioner.param_dtype,
    )


class Captioner(nn.Module):
    """Image-to-text model: `encode` images, then `decode` tokens against the image tokens.

    images [B, H, W, 3] -> stem -> `encoder_depth` transformer blocks -> image tokens
    [B, N, width]; tokens [B, R, L] (R captions per image, teacher forcing) -> TextDecoder ->
    logits [B, R, L, vocab]. Each image is encoded once for its R captions.

    Attributes:
      vocab_size: text vocabulary size (id 0 is padding).
      max_len: longest caption, BOS and EOS included.
      width: token width of the encoder and the decoder.
      encoder_depth: transformer blocks over the image tokens (0: the stem's tokens as they are).
      decoder_depth: decoder blocks.
      num_heads: attention heads.
      mlp_dim: MLP hidden width.
      dropout_rate: dropout in the encoder and decoder.
      stem: "patch", "conv", "resnet", or "vivit" for clips [B, T, H, W, 3] in place of
        images (`mmjax.models.video.ViViT`; see `image_stem`).
      video: the "vivit" stem's options (a dict: kind, tubelet, depth, spatial_depth,
        temporal_depth, pool, mlp_dim; `mmjax.models.stems.VIVIT_OPTIONS`).
      patch_size: patch size of the "patch" stem.
      patch_kernel: window of the "patch" stem's embedding, centred on each patch (0: the
        patch itself; see `PatchStem.kernel_size`).
      keep_tokens: the "patch" stem keeps only this many tokens per image, those that
        `token_selector` picks (0 keeps all; see `PatchStem`).
      token_selector: a registered token selector (`mmjax.registry.TOKEN_SELECTORS`).
      conv_channels: channels of the "conv" stem.
      resnet: ResNet variant of the "resnet" stem (a key of `resnet.RESNETS`).
      posemb: image position embeddings, "learn" or "sincos2d".
      class_token: the patch stem's class token, "none", "with_posemb" or "no_posemb" (see
        `PatchStem`).
      patch_bias: whether the patch embedding has a bias.
      image_mean: per-channel mean of the pixel normalisation (None: the stem's default).
      image_std: per-channel std of the pixel normalisation (None: the stem's default).
      image_input_norm: a LayerNorm on the image tokens before the first encoder block.
      activation: the image encoder's MLP activation (`transformer.ACTIVATIONS`).
      layer_norm_eps: epsilon of the image encoder's LayerNorms.
      dtype: computation dtype (logits are float32).
      param_dtype: parameter dtype.
    """

    vocab_size: int
    max_len: int = 64
    width: int = 128
    encoder_depth: int = 1
    decoder_depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 512
    dropout_rate: float = 0.0
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
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def setup(self):
        """Create the stem, image encoder and decoder."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
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
        if self.encoder_depth:
            self.image_encoder = Encoder(
                depth=self.encoder_depth,
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                dropout_rate=self.dropout_rate,
                activation=self.activation,
                layer_norm_eps=self.layer_norm_eps,
                input_norm=self.image_input_norm,
                **kw,
            )
        self.decoder = captioner_decoder(self)

    def encode(self, images: Array, train: bool = False) -> Array:
        """Image tokens [B, N, width] for images [B, H, W, 3] (uint8 or float in [0, 1])."""
        x = self.image_stem(images)
        if self.encoder_depth:
            x, _ = self.image_encoder(x, train=train)
        return x

    def __call__(self, images: Array, tokens: Array, train: bool = False) -> tuple[Array, dict]:
        """Teacher-forced logits [B, R, L, vocab] float32 for captions tokens [B, R, L].

        tokens[..., t] is the input at position t (BOS first); the logits at t predict
        tokens[..., t + 1].
        """
        encoded = self.encode(images, train=train)
        batch, captions, length = tokens.shape
        # Each image's tokens serve its R captions: [B, N, D] -> [B * R, N, D].
        encoded = jnp.repeat(encoded, captions, axis=0)
        logits, intermediates = self.decoder(
            tokens.reshape(batch * captions, length), encoded, None, train=train
        )
        return logits.reshape(batch, captions, length, -1), intermediates
