"""Video encoders after ViViT (Arnab et al. 2021): tubelet embedding, joint and factorised.

A clip [B, T, H, W, 3] (uint8, or float in [0, 1]) is cut into non-overlapping tubelets of
t frames by p x p pixels, each embedded linearly (a 3-D convolution with stride = kernel
size): a grid of T' x H' x W' tokens (T' = T / t, H' = H // p, W' = W // p) of width D.
Position embeddings are separable, a spatial table [1, H' W', D] (parameter `pos_embedding`,
the layout of an image `PatchStem`'s, so an image model's table loads as it is) plus a
temporal one [1, T', D] (`temporal_embedding`, zero at initialisation, so a video model
started from an image model sees T identical frames as that image).

- kind="joint" (ViViT model 1, spatio-temporal attention): all T' H' W' tokens attend to each
  other in `depth` blocks; tokens [B, T' H' W', D] in (time, row, column) order, pooled by
  their mean. Its attention costs O((T' H' W')^2).
- kind="factorised" (ViViT model 2, factorised encoder): `spatial_depth` blocks over the
  H' W' tokens of each time step alone, each step pooled to one frame token (a per-frame class
  token, pool="cls", or the mean), then `temporal_depth` blocks over the T' frame tokens;
  tokens [B, T', D], pooled by a temporal class token or the mean. Its attention costs
  O(T' (H' W')^2 + T'^2).

`ViViT.__call__` returns the tokens, for the fusion encoder and the decoders (a stem's
contract, `mmjax.models.stems.image_stem(stem="vivit")`); `ViViT.encode` returns (tokens,
pooled vector [B, D]).

Initialising from an image model (`inflate_kernel`): the 2-D patch kernel [p, p, C, D] becomes
the tubelet kernel [t, p, p, C, D] either repeated over t and divided by t ("average", filter
inflation) or put at the central frame with zeros elsewhere ("central"); either way a clip of
t identical frames embeds exactly as the image does. `config.init_from.inflate` picks the rule.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models.image import normalize_images, prepend_class_token
from mmjax.models.transformer import Encoder

Array = jax.Array
DType = Any

KINDS = ("joint", "factorised")
POOLS = ("mean", "cls")
INFLATIONS = ("average", "central")


def inflate_kernel(kernel: np.ndarray, frames: int, rule: str = "average") -> np.ndarray:
    """A 2-D patch kernel [p, p, C, D] as a tubelet kernel [frames, p, p, C, D].

    "average": the kernel at every frame, divided by `frames` (ViViT's filter inflation);
    "central": the kernel at frame frames // 2, zeros at the others (central-frame init).
    """
    kernel = np.asarray(kernel)
    if rule == "average":
        return np.repeat(kernel[None] / frames, frames, axis=0).astype(kernel.dtype)
    if rule == "central":
        out = np.zeros((frames, *kernel.shape), kernel.dtype)
        out[frames // 2] = kernel
        return out
    raise ValueError(f"Unknown inflation rule {rule!r}; use one of {INFLATIONS}.")


class TubeletEmbedding(nn.Module):
    """A 3-D patch embedding: video [B, T, H, W, C] -> tokens [B, T / t, H // p, W // p, D].

    The parameters are a 3-D convolution's, kernel [t, p, p, C, D] (lecun normal) and bias
    [D] (zeros), applied with stride (t, p, p); it is computed as one matmul of the
    flattened tubelets (t, p, p, C order) with the flattened kernel, which equals the
    convolution and runs at matmul speed on CPUs (a conv with 3 input channels does not).
    Pixels past the last whole patch are dropped; T must be a multiple of t.

    Attributes:
      features: D.
      frames: t, the tubelet's length in frames.
      patch_size: p.
      use_bias: whether there is a bias.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    features: int
    frames: int
    patch_size: int
    use_bias: bool = True
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, video: Array) -> Array:
        """Embed video [B, T, H, W, C] (already normalised) into [B, T', H', W', D]."""
        t, p = self.frames, self.patch_size
        batch, frames, height, width, channels = video.shape
        if frames % t:
            raise ValueError(
                f"a clip of {frames} frames is not a whole number of {t}-frame tubelets."
            )
        grid = (frames // t, height // p, width // p)
        if min(grid) < 1:
            raise ValueError(f"a {frames}x{height}x{width} clip has no whole {t}x{p}x{p} tubelet.")
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (t, p, p, channels, self.features),
            self.param_dtype,
        )
        bias = jnp.zeros((self.features,), self.param_dtype)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), bias.shape, self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(video, kernel, bias, dtype=self.dtype)
        x = x[:, :, : grid[1] * p, : grid[2] * p]
        x = x.reshape(batch, grid[0], t, grid[1], p, grid[2], p, channels)
        x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(batch, *grid, t * p * p * channels)
        return x @ kernel.reshape(-1, self.features) + bias


class VideoPositionEmbedding(nn.Module):
    """Adds separable position embeddings to tokens [B, T', H', W', D]: [B, T', H' W', D] out.

    Parameters: `pos_embedding` [1, H' W', D] (normal, stddev 1 / sqrt(D), as an image
    stem's) and `temporal_embedding` [1, T', D] (zeros; see the module docstring).

    Attributes:
      param_dtype: parameter dtype.
    """

    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Tokens [B, T', H', W', D] plus spatial and temporal embeddings: [B, T', H' W', D]."""
        batch, frames, rows, cols, width = x.shape
        spatial_init = nn.initializers.normal(stddev=1.0 / np.sqrt(width))
        spatial = self.param(
            "pos_embedding", spatial_init, (1, rows * cols, width), self.param_dtype
        )
        temporal = self.param(
            "temporal_embedding", nn.initializers.zeros_init(), (1, frames, width), self.param_dtype
        )
        x = x.reshape(batch, frames, rows * cols, width)
        return x + spatial[:, None].astype(x.dtype) + temporal[:, :, None].astype(x.dtype)


class ViViT(nn.Module):
    """A ViViT video encoder, joint (model 1) or factorised (model 2); see the module docstring.

    Attributes:
      width: token width D.
      patch_size: p, the tubelet's side in pixels.
      tubelet: t, the tubelet's length in frames.
      kind: "joint" or "factorised".
      depth: joint blocks over all space-time tokens (kind="joint"; 0: the embedded tokens, for
        a model whose own encoder does the joint attention).
      spatial_depth: blocks over each time step's tokens (kind="factorised").
      temporal_depth: blocks over the frame tokens (kind="factorised").
      pool: "mean" or "cls" (factorised only: a class token per frame and a temporal one).
      num_heads: attention heads.
      mlp_dim: MLP hidden width (0: 4 * width).
      dropout_rate: dropout in the blocks (with `train`).
      mean: per-channel mean of the pixel normalisation.
      std: per-channel std of the pixel normalisation.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    width: int
    patch_size: int = 8
    tubelet: int = 2
    kind: str = "joint"
    depth: int = 0
    spatial_depth: int = 0
    temporal_depth: int = 0
    pool: str = "mean"
    num_heads: int = 4
    mlp_dim: int = 0
    dropout_rate: float = 0.0
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def _check(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown ViViT kind {self.kind!r}; use one of {KINDS}.")
        if self.pool not in POOLS:
            raise ValueError(f"Unknown ViViT pool {self.pool!r}; use one of {POOLS}.")
        if self.kind == "joint" and (
            self.spatial_depth or self.temporal_depth or self.pool != "mean"
        ):
            raise ValueError(
                "ViViT kind='joint' takes depth (and pool='mean'); spatial_depth, temporal_depth "
                "and pool='cls' are kind='factorised' options."
            )
        if self.kind == "factorised" and self.depth:
            raise ValueError(
                "ViViT kind='factorised' takes spatial_depth and temporal_depth, not depth."
            )

    def _encoder(self, depth: int, name: str) -> Encoder:
        return Encoder(
            depth=depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim or 4 * self.width,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    def _pool(self, x: Array, cls: bool) -> tuple[Array, Array]:
        """(tokens, pooled) of x [..., L, D] whose first token is a class token if `cls`."""
        if cls:
            return x[..., 1:, :], x[..., 0, :]
        return x, x.mean(axis=-2)

    @nn.compact
    def encode(self, video: Array, train: bool = False) -> tuple[Array, Array]:
        """(tokens [B, N, D], pooled [B, D]) of video [B, T, H, W, 3] (see the module docstring)."""
        self._check()
        if video.ndim != 5:
            raise ValueError(
                f"ViViT takes clips [B, T, H, W, 3], not an array of shape {video.shape}."
            )
        x = normalize_images(video, self.mean, self.std, self.dtype)
        x = TubeletEmbedding(
            self.width,
            self.tubelet,
            self.patch_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="embedding",
        )(x)
        x = VideoPositionEmbedding(self.param_dtype, name="posemb")(x)  # [B, T', N, D]
        if self.kind == "joint":
            x = x.reshape(x.shape[0], -1, x.shape[-1])
            if self.depth:
                x, _ = self._encoder(self.depth, "encoder")(x, train=train)
            return x, x.mean(axis=-2)
        cls = self.pool == "cls"
        if cls:
            frame_cls = self.param(
                "cls", nn.initializers.zeros, (1, 1, self.width), self.param_dtype
            )
            frame_cls = jnp.broadcast_to(frame_cls.astype(x.dtype), (*x.shape[:2], 1, self.width))
            x = jnp.concatenate([frame_cls, x], axis=2)  # [B, T', 1 + N, D]
        if self.spatial_depth:
            x, _ = self._encoder(self.spatial_depth, "spatial")(x, train=train)
        _, frames = self._pool(x, cls)  # [B, T', D]
        if cls:
            temporal_cls = self.param(
                "temporal_cls", nn.initializers.zeros, (1, 1, self.width), self.param_dtype
            )
            frames = prepend_class_token(temporal_cls, frames)
        if self.temporal_depth:
            frames, _ = self._encoder(self.temporal_depth, "temporal")(frames, train=train)
        return self._pool(frames, cls)

    def __call__(self, video: Array, train: bool = False) -> Array:
        """The tokens [B, N, D] of video [B, T, H, W, 3]: a stem's output."""
        return self.encode(video, train)[0]
