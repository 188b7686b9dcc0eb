"""MultimodalAutoencoder: one low-dimensional vector z for an image and its text, decoded to both.

    images [B, H, W, 3] -> image stem (+ optional blocks) -> image tokens [B, N, D] -+
    text [B, L] ids      -> TextEncoder                   -> text tokens  [B, L, D] -+-> fusion
    K learned latent tokens [K, D] ---------------------------------------------------+
    fusion: `fusion_depth` encoder blocks over [latents; image; text] (masked keys = absent)
    z = Dense(z_dim)(latent outputs flattened)                              [B, z_dim]
        (pool="flatten": plus a linear map of all valid fused image and text states)
    z -> patch decoder: g x g tokens -> blocks -> an MLP per token to its pixels  Î [B, H, W, 3]
         (or transposed convolutions: z -> Dense -> [B, g, g, C] -> x2 ... -> crop)
    z -> Dense -> `z_tokens` memory tokens [B, M, D] -> TextDecoder (cross-attends) -> logits

Either modality may be absent. Passing `images=None` or `text=None` leaves its tokens out of the
fusion altogether; inside a batch, `image_present` / `text_present` flags [B] hide one modality
per example by masking its tokens as attention keys, which is the same function (a masked key
gets exactly zero weight). z depends only on the latent tokens' outputs and (pool="flatten") on
the valid tokens' states, so it is then computed from the other modality alone.

Images come out linear (unbounded, not squashed): a sigmoid output saturated at the white
background, where the MSE gradient vanishes, and training stalled at the blank image (measured).
The last layer starts at zero weights and a bias of `image_start`, so the first reconstruction
is a constant image (1.0: the white background) rather than noise.

In training (`train=True`, rng stream "mask") the model draws, per example:
  - modality dropout: with probability `image_only_rate` only the image reaches the encoder,
    with `text_only_rate` only the text, otherwise both; so the decoders learn to rebuild both
    modalities from z of either one (text -> image, image -> text);
  - masked autoencoding: each image token is hidden with probability `image_mask_ratio` (its
    pixels are set to the normalisation mean, 0.5 grey, so neighbouring conv tokens cannot see
    them either, and it is dropped as an attention key), and each real text token with
    probability `text_mask_ratio` (replaced by padding, which the text encoder masks out). The
    decoders still rebuild the whole image and text, hidden parts included.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.attention import padding_mask
from mmjax.models.decoder import TextDecoder
from mmjax.models.image import select_tokens
from mmjax.models.image_decoders import SpriteImageDecoder, image_decoder
from mmjax.models.stems import image_stem
from mmjax.models.text import TextEncoder
from mmjax.models.transformer import Encoder

Array = jax.Array
DType = Any


def autoencoder_text_decoder(model: "MultimodalAutoencoder") -> TextDecoder:
    """The TextDecoder of `model` as a stand-alone module, for `params["text_decoder"]`.

    The decoding functions (greedy, beam, sample) need the decoder module on its own.
    """
    return TextDecoder(
        vocab_size=model.vocab_size,
        max_len=model.max_len,
        width=model.width,
        depth=model.text_decoder_depth,
        num_heads=model.num_heads,
        mlp_dim=model.mlp_dim,
        dropout_rate=model.dropout_rate,
        pad_id=model.pad_id,
        dtype=model.dtype,
        param_dtype=model.param_dtype,
    )


class MultimodalAutoencoder(nn.Module):
    """Joint image-text autoencoder through a bottleneck z (see the module docstring).

    Attributes:
      vocab_size: text vocabulary size (id `pad_id` is padding).
      max_len: text length L, BOS and EOS included (position tables of encoder and decoder).
      image_size: image height and width (square images).
      width: token width D of every transformer.
      z_dim: dimension of the joint embedding z.
      num_heads: attention heads.
      mlp_dim: MLP hidden width.
      image_depth: encoder blocks over the image tokens alone (0: the stem's tokens).
      text_depth: encoder blocks over the text tokens alone.
      fusion_depth: encoder blocks over [latents; image; text].
      num_latents: K learned latent tokens whose fused states make z.
      pool: "latents" (z from the latent tokens' states) or "flatten" (plus one linear map of
        all valid image and text states, kept patches placed on the patch grid: more capacity
        for where each object is; measured image MSE 0.039 against 0.045 after 400 image-only
        steps of the conv stem and decoder).
      z_tokens: M memory tokens made from z that the text decoder cross-attends to.
      text_decoder_depth: decoder blocks.
      image_decoder_kind: "conv" (`ConvImageDecoder`), "patch" (`PatchImageDecoder`) or
        "sprites" (`SpriteImageDecoder`), all in `mmjax.models.image_decoders`.
      decoder_channels: channels of the conv decoder's x2 upsamplings.
      decoder_upsample: factor of the conv decoder's last upsampling, to RGB.
      decoder_patch_size: patch size of the patch decoder.
      num_sprites: K sprites of the sprite decoder.
      sprite_size: their side in pixels (odd).
      image_decoder_depth: transformer blocks of the patch or sprite decoder.
      image_start: the value of every pixel of the image decoder's output at initialisation.
      stem: image stem, "conv" or "patch" (masking needs one of these) or "resnet".
      patch_size: patch size of the "patch" stem.
      patch_kernel: the patch stem's window (`PatchStem.kernel_size`; 0: patch_size).
      keep_tokens: the patch stem keeps this many patches per image (0: all), those that
        `token_selector` picks (no image masking then).
      token_selector: a registered token selector (`mmjax.registry.TOKEN_SELECTORS`).
      conv_channels: channels of the "conv" stem (each conv halves H and W).
      posemb: image position embeddings, "learn" or "sincos2d".
      image_only_rate: training probability that only the image reaches the encoder.
      text_only_rate: training probability that only the text reaches the encoder.
      image_mask_ratio: training probability of hiding each image token (masked autoencoding).
      text_mask_ratio: training probability of hiding each real text token.
      dropout_rate: dropout in the transformers.
      pad_id: token id of padding.
      dtype: computation dtype (images and logits come back float32).
      param_dtype: parameter dtype.
    """

    vocab_size: int
    max_len: int = 25
    image_size: int = 75
    width: int = 64
    z_dim: int = 64
    num_heads: int = 4
    mlp_dim: int = 128
    image_depth: int = 0
    text_depth: int = 1
    fusion_depth: int = 1
    num_latents: int = 1
    pool: str = "latents"
    z_tokens: int = 4
    text_decoder_depth: int = 1
    image_decoder_kind: str = "conv"
    decoder_channels: Sequence[int] = (64, 64)
    decoder_upsample: int = 4
    decoder_patch_size: int = 15
    num_sprites: int = 6
    sprite_size: int = 15
    image_decoder_depth: int = 1
    image_start: float = 0.5
    stem: str = "conv"
    patch_size: int = 15
    patch_kernel: int = 0
    keep_tokens: int = 0
    token_selector: str = ""
    conv_channels: Sequence[int] = (32, 64, 64, 64)
    posemb: str = "sincos2d"
    image_only_rate: float = 0.0
    text_only_rate: float = 0.0
    image_mask_ratio: float = 0.0
    text_mask_ratio: float = 0.0
    dropout_rate: float = 0.0
    pad_id: int = 0
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def setup(self):
        """Create the encoders, the fusion, the bottleneck and both decoders."""
        if not 0.0 <= self.image_only_rate + self.text_only_rate <= 1.0:
            raise ValueError(
                f"image_only_rate + text_only_rate = {self.image_only_rate + self.text_only_rate}"
                " must lie in [0, 1]"
            )
        if self.pool not in ("latents", "flatten"):
            raise ValueError(f"Unknown pool {self.pool!r}; use 'latents' or 'flatten'.")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        blocks = dict(
            num_heads=self.num_heads, mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate, **kw
        )
        self.image_stem = image_stem(
            self.stem,
            self.width,
            patch_size=self.patch_size,
            patch_kernel=self.patch_kernel,
            keep_tokens=self.keep_tokens,
            token_selector=self.token_selector,
            conv_channels=self.conv_channels,
            posemb=self.posemb,
            **kw,
        )
        if self.image_depth:
            self.image_encoder = Encoder(depth=self.image_depth, **blocks)
        self.text_encoder = TextEncoder(
            self.vocab_size, self.width, self.max_len, self.text_depth, pad_id=self.pad_id, **blocks
        )
        init = nn.initializers.normal(stddev=0.02)
        self.image_type = self.param("image_type", init, (self.width,), self.param_dtype)
        self.text_type = self.param("text_type", init, (self.width,), self.param_dtype)
        self.latents = self.param("latents", init, (self.num_latents, self.width), self.param_dtype)
        self.fusion = Encoder(depth=self.fusion_depth, **blocks)
        self.to_z = nn.Dense(self.z_dim, **kw)
        if self.pool == "flatten":
            self.flat_to_z = {
                name: nn.Dense(self.z_dim, use_bias=False, name=f"{name}_to_z", **kw)
                for name in ("image", "text")
            }
        self.image_decoder = image_decoder(
            self.image_decoder_kind,
            self.image_size,
            self.image_start,
            channels=self.decoder_channels,
            upsample=self.decoder_upsample,
            patch_size=self.decoder_patch_size,
            num_sprites=self.num_sprites,
            sprite_size=self.sprite_size,
            width=self.width,
            depth=self.image_decoder_depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            **kw,
        )
        self.to_memory = nn.Dense(self.z_tokens * self.width, **kw)
        self.memory_norm = nn.LayerNorm(**kw)
        self.text_decoder = autoencoder_text_decoder(self)

    # ------------------------------------------------------------------ masks drawn in training

    def image_grid(self) -> tuple[int, int]:
        """(g, s): the stem's tokens form a g x g grid and token (i, j) covers pixels [s*i, s*i+s).

        Known statically for the "conv" stem (each 'SAME' stride-2 conv halves the grid,
        rounding up; s = 2 ** convs) and the "patch" stem (g = size // p, s = p).
        """
        if self.stem == "conv":
            grid = self.image_size
            for _ in self.conv_channels:
                grid = math.ceil(grid / 2)
            return grid, 2 ** len(self.conv_channels)
        if self.stem == "patch" and not self.keep_tokens:
            return self.image_size // self.patch_size, self.patch_size
        raise ValueError(
            f"image masking supports the 'conv' and 'patch' stems (keeping every patch), not"
            f" stem={self.stem!r} with keep_tokens={self.keep_tokens}"
        )

    def draw_modalities(self, batch: int) -> tuple[Array, Array]:
        """Modality dropout: (image_present [B], text_present [B]) bool, never both False.

        Drawn from the "mask" rng: image only with probability image_only_rate, text only with
        text_only_rate, both otherwise.
        """
        u = jax.random.uniform(self.make_rng("mask"), (batch,))
        image_only = u < self.image_only_rate
        text_only = (u >= self.image_only_rate) & (u < self.image_only_rate + self.text_only_rate)
        return ~text_only, ~image_only

    # ------------------------------------------------------------------ the encoder

    def encode(
        self,
        images: Array | None,
        text: Array | None,
        image_present: Array | None = None,
        text_present: Array | None = None,
        train: bool = False,
    ) -> tuple[Array, dict[str, Array]]:
        """The joint embedding z of whatever modalities are given.

        Args:
          images: [B, H, W, 3] uint8 (or float in [0, 1]), or None: no image.
          text: [B, L] int32 token ids (`pad_id` = padding), or None: no text.
          image_present: optional [B] bool; False hides that example's image (modality
            dropout). With `train=True` and a nonzero dropout rate, drawn when not given.
          text_present: optional [B] bool, likewise for the text.
          train: dropout ("dropout" rng) and, where the rates are nonzero, modality dropout and
            masking ("mask" rng).

        Returns:
          (z [B, z_dim], info) where info holds what was drawn or given: "image_present" and
          "text_present" [B] bool, "image_hidden" [B, N] and "text_hidden" [B, L] bool (hidden
          by masking; all False outside training), for the modalities that were given.
        """
        if images is None and text is None:
            raise ValueError("encode needs the images, the text or both")
        batch = (images if images is not None else text).shape[0]
        dropout = train and (self.image_only_rate > 0 or self.text_only_rate > 0)
        if dropout and images is not None and text is not None:
            drawn_image, drawn_text = self.draw_modalities(batch)
            image_present = drawn_image if image_present is None else image_present & drawn_image
            text_present = drawn_text if text_present is None else text_present & drawn_text
        info = {}
        # The fusion's input, part by part: (name, tokens [B, n, D], valid [B, n]).
        parts = [
            (
                "latents",
                jnp.broadcast_to(self.latents, (batch,) + self.latents.shape),
                jnp.ones((batch, self.num_latents), bool),
            )
        ]
        if images is not None:
            x, hidden = self._image_tokens(images, train)
            present = jnp.ones((batch,), bool) if image_present is None else image_present
            parts.append(("image", x + self.image_type.astype(x.dtype), present[:, None] & ~hidden))
            info.update(image_present=present, image_hidden=hidden)
        if text is not None:
            hidden = jnp.zeros(text.shape, bool)
            if train and self.text_mask_ratio > 0:
                hidden = jax.random.bernoulli(
                    self.make_rng("mask"), self.text_mask_ratio, text.shape
                )
                hidden &= text != self.pad_id
            # A hidden token becomes padding, which the text encoder masks out as a key.
            shown = jnp.where(hidden, self.pad_id, text)
            x, _ = self.text_encoder(shown, train=train)
            present = jnp.ones((batch,), bool) if text_present is None else text_present
            valid = present[:, None] & (shown != self.pad_id)
            parts.append(("text", x + self.text_type.astype(x.dtype), valid))
            info.update(text_present=present, text_hidden=hidden)
        x, _ = self.fusion(
            jnp.concatenate([tokens for _, tokens, _ in parts], axis=1),
            mask=padding_mask(jnp.concatenate([valid for _, _, valid in parts], axis=1)),
            train=train,
        )
        z = self.to_z(x[:, : self.num_latents].reshape(batch, -1))
        if self.pool == "flatten":
            # z is one linear map of all valid fused states, absent ones counting as zeros,
            # written as a sum of one map per modality so that an absent modality's term is
            # simply left out.
            start = self.num_latents
            for name, tokens, valid in parts[1:]:
                states = x[:, start : start + tokens.shape[1]] * valid[..., None].astype(x.dtype)
                if name == "image" and self.keep_tokens:
                    states = self._on_patch_grid(states, images)
                z = z + self.flat_to_z[name](states.reshape(batch, -1))
                start += tokens.shape[1]
        return z.astype(jnp.float32), info

    def _on_patch_grid(self, states: Array, images: Array) -> Array:
        """The kept patches' states [B, K, D] at their places on the patch grid [B, g * g, D].

        So that each weight of the flattening map always meets the same place of the image
        (the kept patches vary from image to image); the other places are zeros.
        """
        x = jnp.asarray(images)
        x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x
        kept = select_tokens(x, self.patch_size, self.keep_tokens, self.token_selector)
        cells = (self.image_size // self.patch_size) ** 2
        grid = jnp.zeros((states.shape[0], cells, states.shape[-1]), states.dtype)
        return grid.at[jnp.arange(states.shape[0])[:, None], kept].set(states)

    def _image_tokens(self, images: Array, train: bool) -> tuple[Array, Array]:
        """Image tokens [B, N, D] and the hidden flags [B, N] of masked autoencoding."""
        x = jnp.asarray(images)
        if x.dtype == jnp.uint8:
            x = x.astype(jnp.float32) / 255.0
        hidden = None
        if train and self.image_mask_ratio > 0:
            grid, stride = self.image_grid()
            hidden = jax.random.bernoulli(
                self.make_rng("mask"), self.image_mask_ratio, (x.shape[0], grid, grid)
            )
            # Each pixel's cell, so that hidden pixels are those of hidden tokens.
            cell = jnp.minimum(jnp.arange(x.shape[1]) // stride, grid - 1)
            pixels = hidden[:, cell][:, :, cell]
            # Grey (the stems' normalisation mean, 0 after normalising) hides what was there.
            x = jnp.where(pixels[..., None], 0.5, x)
            hidden = hidden.reshape(x.shape[0], grid * grid)
        x = self.image_stem(x)
        if hidden is None:
            hidden = jnp.zeros(x.shape[:2], bool)
        if self.image_depth:
            x, _ = self.image_encoder(x, mask=padding_mask(~hidden), train=train)
        return x, hidden

    # ------------------------------------------------------------------ the decoders

    def decode_image(self, z: Array, mode: bool = False) -> Array:
        """Images [B, H, W, 3] float32 from z [B, z_dim] (linear: about [0, 1], unclipped).

        `mode`: the sprite decoder's most likely image (each sprite at its likeliest place);
        the other decoders are deterministic and ignore it.
        """
        if isinstance(self.image_decoder, SpriteImageDecoder):
            return self.image_decoder(z.astype(self.dtype), mode=mode)
        return self.image_decoder(z.astype(self.dtype))

    def memory(self, z: Array) -> Array:
        """The text decoder's memory: M tokens [B, M, width] made from z [B, z_dim]."""
        x = self.to_memory(z.astype(self.dtype)).reshape(z.shape[0], self.z_tokens, self.width)
        return self.memory_norm(x)

    def decode_text(self, z: Array, tokens: Array, train: bool = False) -> Array:
        """Teacher-forced next-token logits [B, T, vocab] float32 for input tokens [B, T]."""
        logits, _ = self.text_decoder(tokens, self.memory(z), None, train=train)
        return logits

    def __call__(
        self,
        images: Array,
        text: Array,
        image_present: Array | None = None,
        text_present: Array | None = None,
        train: bool = False,
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        """Encode (see `encode`), then reconstruct both modalities from z.

        Args:
          images: [B, H, W, 3] uint8 or float in [0, 1].
          text: [B, L] int32, BOS ... EOS then padding: encoded whole, and fed to the decoder as
            text[:, :-1] (teacher forcing) to predict text[:, 1:].
          image_present, text_present, train: as in `encode`.

        Returns:
          ({"image": Î [B, H, W, 3] float32 (unclipped), "logits": [B, L-1, vocab] float32},
           {"z": [B, z_dim]} plus the masks of `encode`).
        """
        z, info = self.encode(images, text, image_present, text_present, train=train)
        outputs = {
            "image": self.decode_image(z),
            "logits": self.decode_text(z, text[:, :-1], train=train),
        }
        return outputs, {"z": z, **info}


__all__ = ["MultimodalAutoencoder", "autoencoder_text_decoder"]
