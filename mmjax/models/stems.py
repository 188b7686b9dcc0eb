"""Image stems by name, for models that let the config choose one; "vivit" takes clips.

stem="vivit" is `mmjax.models.video.ViViT` over clips [B, T, H, W, 3] with `video` its options
(kind "joint" or "factorised", tubelet frames, depth, spatial_depth, temporal_depth, pool,
mlp_dim), the model's patch_size, num_heads and width: a model that took an image takes a clip.
"kept_tubelets" (ViViT tubelets of the few patches a token selector keeps per frame),
"single_frame" and "frame_mean" (image-stem baselines) also take clips
(`mmjax.models.frame_stems.clip_token_stem`).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmjax.models.frame_stems import CLIP_STEMS, clip_token_stem
from mmjax.models.image import ConvStem, PatchStem
from mmjax.models.resnet import ResNetStem
from mmjax.models.video import ViViT

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
    video: dict | None = None,
    num_heads: int = 4,
    mlp_dim: int = 0,
    dtype: DType = jnp.float32,
    param_dtype: DType = jnp.float32,
    name: str = "stem",
) -> nn.Module:
    """The image stem named `stem`: "patch" (ViT), "conv" or "resnet"; images -> [B, N, width].

    `patch_kernel`, `keep_tokens`, `token_selector`, `class_token` and `patch_bias` are the
    patch stem's (`PatchStem.kernel_size`, `.keep_tokens`, `.token_selector`, ...); `coords`
    (CoordConv input channels) applies to patch and conv; `mean` and `std` (the pixel
    normalisation) to every stem, None keeping the stem's own default. "vivit" (clips
    [B, T, H, W, 3] -> [B, N, width]) is `ViViT` with the options in `video` (a dict of its
    fields: kind, tubelet, depth, spatial_depth, temporal_depth, pool, mlp_dim), `patch_size`,
    `num_heads` and `mlp_dim` (the model's, unless `video` has its own; 0: 4 * width).
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
    if stem == "vivit":
        return _vivit(width, patch_size, num_heads, {"mlp_dim": mlp_dim, **(video or {})}, kw)
    if stem in CLIP_STEMS:  # kept tubelets and the single-frame and frame-mean baselines
        return clip_token_stem(
            stem,
            width,
            patch_size=patch_size,
            patch_kernel=patch_kernel,
            keep_tokens=keep_tokens,
            token_selector=token_selector,
            video=video,
            **kw,
        )
    raise ValueError(
        f"Unknown stem {stem!r}; use 'patch', 'conv', 'resnet', 'vivit' or one of {CLIP_STEMS}."
    )


VIVIT_OPTIONS = ("kind", "tubelet", "depth", "spatial_depth", "temporal_depth", "pool", "mlp_dim")


def _vivit(width: int, patch_size: int, num_heads: int, video: dict, kw: dict) -> ViViT:
    """The "vivit" stem; ValueError naming an option of `video` that ViViT does not have."""
    unknown = sorted(set(video) - set(VIVIT_OPTIONS))
    if unknown:
        raise ValueError(f"model.video has no option {unknown}; use {VIVIT_OPTIONS}.")
    kw = dict(kw)
    if kw.pop("posemb") != "learn":
        raise ValueError("stem='vivit' has learned position embeddings only (posemb='learn').")
    return ViViT(width, patch_size=patch_size, num_heads=num_heads, **video, **kw)
