"""Image stems by name, for models that let the config choose one."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.image import ConvStem, PatchStem
from mmjax.models.resnet import ResNetStem

DType = Any


def image_stem(
    stem: str,
    width: int,
    *,
    patch_size: int = 16,
    patch_kernel: int = 0,
    keep_tokens: int = 0,
    token_selector: str = "",
    coords: bool = False,
    conv_channels: Sequence[int] = (32, 64, 128, 128),
    resnet: str = "resnet50",
    posemb: str = "learn",
    class_token: str = "none",
    patch_bias: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dtype: DType = jnp.float32,
    param_dtype: DType = jnp.float32,
    name: str = "stem",
) -> nn.Module:
    """The image stem named `stem`: "patch" (ViT), "conv" or "resnet"; images -> [B, N, width].

    `patch_kernel`, `keep_tokens`, `token_selector`, `class_token` and `patch_bias` are the
    patch stem's (`PatchStem.kernel_size`, `.keep_tokens`, `.token_selector`, ...); `coords`
    (CoordConv input channels) applies to patch and conv; `mean` and `std` (the pixel
    normalisation) to every stem, None keeping the stem's own default.
    """
    kw = dict(posemb=posemb, dtype=dtype, param_dtype=param_dtype, name=name)
    kw.update({k: tuple(v) for k, v in (("mean", mean), ("std", std)) if v is not None})
    if stem != "patch" and (class_token != "none" or not patch_bias):
        raise ValueError(f"class_token and patch_bias are options of stem='patch', not {stem!r}.")
    if stem == "patch":
        return PatchStem(
            patch_size,
            width,
            coords=coords,
            kernel_size=patch_kernel,
            keep_tokens=keep_tokens,
            token_selector=token_selector,
            class_token=class_token,
            patch_bias=patch_bias,
            **kw,
        )
    if stem == "conv":
        return ConvStem(width, channels=conv_channels, coords=coords, **kw)
    if stem == "resnet":
        return ResNetStem(width, variant=resnet, **kw)
    raise ValueError(f"Unknown stem {stem!r}; use 'patch', 'conv' or 'resnet'.")
