"""ResNet image encoders (He et al. 2016) that return tokens [B, N, width] for the fusion stack.

GroupNorm with weight-standardised convolutions (BiT, Kolesnikov et al. 2020) replaces
BatchNorm, so `__call__` stays pure (no mutable batch statistics) and small per-device batches
train as well as large ones. The last feature map [B, h, w, C] becomes h * w tokens, projected
to `width`, with position embeddings.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.image import _AddPositionEmbedding, normalize_images

Array = jax.Array
DType = Any

# name -> (block kind, blocks per stage, base channels of the first stage)
RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2), 64),
    "resnet34": ("basic", (3, 4, 6, 3), 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 64),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 64),
    # CPU-sized variants for tests and laptops.
    "resnet_tiny": ("basic", (1, 1), 16),
    "resnet_small": ("basic", (1, 1, 1), 32),
}


class StdConv(nn.Conv):
    """A convolution whose kernel is standardised (zero mean, unit variance per output channel).

    Weight standardisation makes GroupNorm networks train like BatchNorm ones (Qiao et al. 2019).
    """

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Convolve x [B, H, W, C] with the standardised kernel."""
        kernel = self.param(
            "kernel",
            self.kernel_init,
            (*self.kernel_size, x.shape[-1], self.features),
            self.param_dtype,
        )
        mean = kernel.mean(axis=(0, 1, 2), keepdims=True)
        var = kernel.var(axis=(0, 1, 2), keepdims=True)
        kernel = (kernel - mean) * jax.lax.rsqrt(var + 1e-10)
        strides = self.strides or 1
        if isinstance(strides, int):
            strides = (strides,) * len(self.kernel_size)
        return jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            kernel.astype(self.dtype),
            window_strides=strides,
            padding=self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )


def _norm(channels: int, name: str, dtype: DType, param_dtype: DType) -> nn.GroupNorm:
    return nn.GroupNorm(
        num_groups=math.gcd(32, channels), name=name, dtype=dtype, param_dtype=param_dtype
    )


class ResidualBlock(nn.Module):
    """Pre-activation residual block: basic (two 3x3) or bottleneck (1x1, 3x3, 1x1; 4x wider out).

    Maps [B, H, W, C] to [B, H / stride, W / stride, out] with out = channels (basic) or
    4 * channels (bottleneck); a projected shortcut where the shape changes.

    Attributes:
      channels: inner channels.
      stride: spatial stride of the block's 3x3 conv.
      bottleneck: bottleneck (True) or basic (False) block.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    channels: int
    stride: int = 1
    bottleneck: bool = False
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Apply the block to x [B, H, W, C]."""
        kw = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        out = self.channels * (4 if self.bottleneck else 1)
        s = (self.stride, self.stride)
        y = nn.relu(_norm(x.shape[-1], "norm_in", self.dtype, self.param_dtype)(x))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != out:
            shortcut = StdConv(out, (1, 1), s, name="proj", **kw)(y)
        if self.bottleneck:
            convs = [
                (self.channels, (1, 1), (1, 1)),
                (self.channels, (3, 3), s),
                (out, (1, 1), (1, 1)),
            ]
        else:
            convs = [(self.channels, (3, 3), s), (out, (3, 3), (1, 1))]
        for i, (features, kernel, strides) in enumerate(convs):
            if i:
                y = nn.relu(_norm(y.shape[-1], f"norm_{i}", self.dtype, self.param_dtype)(y))
            y = StdConv(features, kernel, strides, padding="SAME", name=f"conv_{i}", **kw)(y)
        return shortcut + y


class ResNetStem(nn.Module):
    """A ResNet encoder as an image stem: images [B, H, W, 3] -> tokens [B, N, width].

    A 7x7 stride-2 conv and a 3x3 stride-2 max-pool, then stages of residual blocks (each stage
    after the first halves H and W and doubles the channels), a final GroupNorm + ReLU, a
    Dense to `width` and position embeddings. N = (H / 2^(1 + num_stages))^2, e.g. 7 x 7 = 49
    for ResNet-50 at 224 pixels, 5 x 5 = 25 for resnet_small at 75 pixels.

    Attributes:
      width: token width D.
      variant: a key of RESNETS ("resnet50", ..., "resnet_tiny").
      posemb: "learn" or "sincos2d".
      mean: per-channel mean for normalisation (of images in [0, 1]).
      std: per-channel std for normalisation.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    width: int
    variant: str = "resnet50"
    posemb: str = "learn"
    mean: Sequence[float] = (0.485, 0.456, 0.406)
    std: Sequence[float] = (0.229, 0.224, 0.225)
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, images: Array) -> Array:
        """Embed images [B, H, W, 3] into [B, N, width] tokens."""
        if self.variant not in RESNETS:
            raise ValueError(f"ResNet variant {self.variant!r} is not one of {sorted(RESNETS)}")
        kind, stages, base = RESNETS[self.variant]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = normalize_images(images, self.mean, self.std, self.dtype)
        x = StdConv(base, (7, 7), (2, 2), padding="SAME", use_bias=False, name="root", **kw)(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, blocks in enumerate(stages):
            for j in range(blocks):
                x = ResidualBlock(
                    base * 2**i,
                    stride=2 if i > 0 and j == 0 else 1,
                    bottleneck=kind == "bottleneck",
                    name=f"stage{i}_block{j}",
                    **kw,
                )(x)
        x = nn.relu(_norm(x.shape[-1], "norm_out", self.dtype, self.param_dtype)(x))
        x = nn.Dense(self.width, name="embedding", **kw)(x)
        return _AddPositionEmbedding(self.posemb, self.param_dtype, name="posemb")(x)
