"""Kept tubelets: a ViViT tubelet embedding of only the few patches of each frame that matter.

ViViT (Arnab et al. 2021) embeds a clip as tubelets of t frames by p x p pixels, every one of
them a token: a 64x64 clip of 8 frames in 8x8 patches is 512 tokens, too many for joint
space-time attention on a CPU. On scenes of a few objects on a plain background most of those
tokens are background. This stem keeps, in each frame, the `keep_tokens` patches a registered
token selector picks (e.g. "salient_patches": the patches farthest from the frame's mean
colour, the objects'), and embeds each kept patch from a tubelet centred on it: the
`kernel_size` square window around the patch (as `PatchStem.kernel_size`, so a token sees the
whole of an object it covers a part of) in the `tubelet` frames around its frame (t - r .. t + r,
r = tubelet // 2, the clip's first and last frames repeated past its ends). A token therefore
sees where its object is and how it moves (its velocity, a bounce), and the fusion transformer
runs joint space-time attention (ViViT model 1) over T * K tokens instead of T * H' * W'.

video [B, T, H, W, 3] (uint8, or float in [0, 1]) -> tokens [B, T * K, D], in (frame, kept
patch in raster order) order, each with the fixed 2-D sin-cos embedding of its patch's grid
cell plus a learned embedding of its frame ([T, D], parameter `temporal_embedding`).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.image import _PatchEmbedding, normalize_images, posemb_sincos_2d, select_tokens

Array = jax.Array
DType = Any


def tubelet_frames(video: Array, tubelet: int) -> Array:
    """Each frame stacked with its neighbours along channels: [B, T, H, W, C] -> [B, T, H, W, tC].

    Frame t gets frames t - r .. t + r (r = tubelet // 2; indices clamped to the clip, so the
    first and last frames repeat), in time order: channels (frame t - r's C, ..., frame t + r's).
    """
    if tubelet < 1 or tubelet % 2 == 0:
        raise ValueError(f"tubelet={tubelet} must be odd: a tubelet is centred on its frame.")
    frames = video.shape[1]
    radius = tubelet // 2
    index = jnp.clip(jnp.arange(frames)[:, None] + jnp.arange(-radius, radius + 1), 0, frames - 1)
    stacked = video[:, index]  # [B, T, t, H, W, C]
    stacked = jnp.moveaxis(stacked, 2, -2)  # [B, T, H, W, t, C]
    return stacked.reshape(*stacked.shape[:-2], -1)


class KeptTubeletStem(nn.Module):
    """Clip [B, T, H, W, 3] -> the kept tubelets' tokens [B, T * keep_tokens, width].

    See the module docstring.

    Attributes:
      patch_size: p; the frame is cut into H // p x W // p patches.
      width: token width D.
      kernel_size: the window each token is embedded from (p plus an even number; 0: p).
      tubelet: frames per tubelet, odd (1: each token sees its own frame only).
      keep_tokens: tokens kept per frame (0 keeps all).
      token_selector: a registered token selector (`mmjax.registry.TOKEN_SELECTORS`); it
        picks from each frame alone.
      mean: per-channel mean for normalisation (of pixels in [0, 1]).
      std: per-channel std for normalisation.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    patch_size: int
    width: int
    kernel_size: int = 0
    tubelet: int = 3
    keep_tokens: int = 0
    token_selector: str = ""
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, video: Array) -> Array:
        """Embed clips [B, T, H, W, 3] into [B, T * K, width] tokens (K kept per frame)."""
        if video.ndim != 5:
            raise ValueError(
                f"the kept-tubelet stem takes clips [B, T, H, W, 3], got shape {video.shape}"
            )
        p, k = self.patch_size, self.kernel_size or self.patch_size
        if k < p or (k - p) % 2:
            raise ValueError(f"kernel_size={k} must be patch_size={p} plus an even number.")
        batch, frames = video.shape[:2]
        video = video[:, :, : video.shape[2] // p * p, : video.shape[3] // p * p]
        grid = (video.shape[2] // p, video.shape[3] // p)
        cells = grid[0] * grid[1]
        flat = video.reshape(batch * frames, *video.shape[2:])
        if self.keep_tokens:
            if not 0 < self.keep_tokens <= cells:
                raise ValueError(f"keep_tokens={self.keep_tokens} must be in 1..{cells}.")
            kept = select_tokens(flat, p, self.keep_tokens, self.token_selector)
        else:
            kept = jnp.broadcast_to(jnp.arange(cells), (batch * frames, cells))
        x = normalize_images(video, self.mean, self.std, self.dtype)
        x = tubelet_frames(x, self.tubelet)
        x = x.reshape(batch * frames, *x.shape[2:])
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = _PatchEmbedding(self.width, k, p, name="embedding", **kw)(x, kept)
        if k > p:  # as PatchStem: an overlapping window's embedding is normalised
            x = nn.LayerNorm(name="embedding_norm", **kw)(x)
        space = jnp.take(jnp.asarray(posemb_sincos_2d(*grid, self.width)[0], x.dtype), kept, 0)
        time = self.param(
            "temporal_embedding",
            nn.initializers.normal(stddev=self.width**-0.5),
            (frames, self.width),
            self.param_dtype,
        )
        x = x.reshape(batch, frames, -1, self.width) + space.reshape(batch, frames, -1, self.width)
        x = x + time.astype(x.dtype)[None, :, None]
        return x.reshape(batch, -1, self.width)
