"""Clip stems that see frames one at a time, and the dispatch of every clip token stem.

Two baselines that take the same clips [B, T, H, W, 3] as a video model, so that a results
table shows what temporal modelling adds:

- `SingleFrameStem` ("single_frame"): one frame of the clip (the middle one by default,
  T // 2) through an image `PatchStem`: exactly an image VQA model shown that frame.
- `FrameMeanStem` ("frame_mean"): every frame through one shared image `PatchStem`, the
  tokens averaged over time: [B, N, D], N the stem's tokens of one frame. With all patches
  kept, token n is the mean over time of patch n's features: the model sees where objects
  pass (a motion blur) but not in which order.

`clip_token_stem` builds these and `mmjax.models.kept_tubelets.KeptTubeletStem`
("kept_tubelets") from a model's stem options (`mmjax.models.stems.image_stem`).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.image import PatchStem
from mmjax.models.kept_tubelets import KeptTubeletStem

Array = jax.Array
DType = Any

CLIP_STEMS = ("kept_tubelets", "single_frame", "frame_mean")
# The options each clip stem reads from the model's `video` dict.
CLIP_STEM_OPTIONS = {"kept_tubelets": ("tubelet",), "single_frame": ("frame",), "frame_mean": ()}


def _check_clip(video: Array, stem: str) -> None:
    if video.ndim != 5:
        raise ValueError(f"stem={stem!r} takes clips [B, T, H, W, 3], got shape {video.shape}")


class SingleFrameStem(PatchStem):
    """One frame of each clip through an image `PatchStem`: [B, T, H, W, 3] -> [B, N, D].

    The parameters are the `PatchStem`'s, so an image VQA model's weights load as they are.

    Attributes:
      frame: the frame's index; -1: the middle frame, T // 2. (The others are `PatchStem`'s.)
    """

    frame: int = -1

    def __call__(self, video: Array) -> Array:
        """The tokens of frame `frame` (or T // 2) of each clip."""
        _check_clip(video, "single_frame")
        frames = video.shape[1]
        index = frames // 2 if self.frame < 0 else self.frame
        if not 0 <= index < frames:
            raise ValueError(f"video.frame={self.frame} is outside 0..{frames - 1}")
        return super().__call__(video[:, index])


class FrameMeanStem(PatchStem):
    """Every frame through one image `PatchStem`, tokens averaged over time.

    [B, T, H, W, 3] -> [B, N, D], N the `PatchStem`'s tokens of one frame; its parameters are
    the `PatchStem`'s.
    """

    def __call__(self, video: Array) -> Array:
        """The mean over the T frames of each frame's tokens."""
        _check_clip(video, "frame_mean")
        batch, frames = video.shape[:2]
        tokens = super().__call__(video.reshape(batch * frames, *video.shape[2:]))
        return tokens.reshape(batch, frames, *tokens.shape[1:]).mean(1)


def clip_token_stem(
    stem: str,
    width: int,
    *,
    patch_size: int,
    patch_kernel: int = 0,
    keep_tokens: int = 0,
    token_selector: str = "",
    posemb: str = "sincos2d",
    video: dict | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dtype: DType = jnp.float32,
    param_dtype: DType = jnp.float32,
    name: str = "stem",
) -> nn.Module:
    """The clip stem named `stem` (one of `CLIP_STEMS`): clips [B, T, H, W, 3] -> [B, N, width].

    "kept_tubelets": `KeptTubeletStem` with video["tubelet"] frames per tubelet (default 3),
    `keep_tokens` per frame (fixed sin-cos positions: posemb must be "sincos2d");
    "single_frame": `SingleFrameStem` of a `PatchStem`, video["frame"] (default -1, the
    middle); "frame_mean": `FrameMeanStem` of a `PatchStem`. The patch options are
    `PatchStem`'s. ValueError naming an option of `video` the stem does not read.
    """
    video = dict(video or {})
    unknown = sorted(set(video) - set(CLIP_STEM_OPTIONS[stem]))
    if unknown:
        raise ValueError(
            f"model.video has no option {unknown} for stem={stem!r}; it reads "
            f"{list(CLIP_STEM_OPTIONS[stem])}."
        )
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    kw.update({k: tuple(v) for k, v in (("mean", mean), ("std", std)) if v is not None})
    if stem == "kept_tubelets":
        if posemb != "sincos2d":
            raise ValueError(
                "stem='kept_tubelets' has fixed sin-cos positions (posemb='sincos2d')."
            )
        return KeptTubeletStem(
            patch_size,
            width,
            kernel_size=patch_kernel,
            tubelet=video.get("tubelet", 3),
            keep_tokens=keep_tokens,
            token_selector=token_selector,
            name=name,
            **kw,
        )
    patch = dict(
        posemb=posemb,
        kernel_size=patch_kernel,
        keep_tokens=keep_tokens,
        token_selector=token_selector,
        name=name,
        **kw,
    )
    if stem == "single_frame":
        return SingleFrameStem(patch_size, width, frame=video.get("frame", -1), **patch)
    return FrameMeanStem(patch_size, width, **patch)
