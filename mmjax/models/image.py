"""Image stems: turn images [B, H, W, 3] into tokens [B, N, D] with position embeddings.

Images may be uint8 (converted to float in [0, 1]) or float already in [0, 1]; the stems then
normalise them with a per-channel mean and std, so data pipelines can keep compact uint8.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
DType = Any


def normalize_images(
    images: Array,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    dtype: DType = jnp.float32,
) -> Array:
    """Return (x - mean) / std in dtype for images [..., 3], uint8 being first scaled to [0, 1].

    Float images are taken to be in [0, 1] already.
    """
    x = jnp.asarray(images)
    if x.dtype == jnp.uint8:
        x = x.astype(jnp.float32) / 255.0
    x = (x.astype(jnp.float32) - jnp.asarray(mean)) / jnp.asarray(std)
    return x.astype(dtype)


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2-D sin-cos position embeddings [1, h * w, width] (row-major over the h x w grid).

    A quarter of the channels each hold sin(x), cos(x), sin(y), cos(y) at geometrically spaced
    frequencies, as in MoCo v3 / big_vision.
    """
    if width % 4:
        raise ValueError(f"width={width} must be divisible by 4 for 2-D sin-cos embeddings.")
    y, x = np.mgrid[:h, :w]
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4))
    y = y.reshape(-1)[:, None] * omega[None]
    x = x.reshape(-1)[:, None] * omega[None]
    pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
    return pe[None].astype(np.float32)


class _AddPositionEmbedding(nn.Module):
    """Add position embeddings to grid tokens [B, h, w, D] and flatten them to [B, h * w, D].

    With `kept` (indices [B, K] into the h x w grid, row-major) the tokens are [B, K, D] already,
    those of the kept grid cells, and each gets its own cell's embedding. With `cls` (a class
    token [1, 1, D]) it is put first and gets the first of 1 + h * w learned embeddings (the
    layout of Hugging Face's ViT and CLIP): [B, 1 + N, D].

    Attributes:
      posemb: "learn" (parameter `pos_embedding`, [1, h * w, D], or [1, 1 + h * w, D] with a
        class token) or "sincos2d" (fixed).
      param_dtype: parameter dtype.
    """

    posemb: str = "learn"
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array, grid: tuple[int, int] | None = None, kept=None, cls=None) -> Array:
        """Return x as [B, N, D] plus position embeddings (`grid`: (h, w), needed with `kept`)."""
        if kept is None:
            b, h, w, d = x.shape
            x = x.reshape(b, h * w, d)
        else:
            (h, w), d = grid, x.shape[-1]
        extra = 0 if cls is None else 1
        if self.posemb == "learn":
            init = nn.initializers.normal(stddev=1.0 / math.sqrt(d))
            pe = self.param("pos_embedding", init, (1, extra + h * w, d), self.param_dtype)
        elif self.posemb == "sincos2d" and cls is None:
            pe = posemb_sincos_2d(h, w, d)
        elif self.posemb == "sincos2d":
            raise ValueError("class_token='with_posemb' needs posemb='learn'.")
        else:
            raise ValueError(f"Unknown posemb {self.posemb!r}; use 'learn' or 'sincos2d'.")
        pe = jnp.asarray(pe, x.dtype)
        pe_cls, pe = pe[:, :extra], pe[:, extra:]
        if kept is not None:
            pe = jnp.take(pe[0], kept, axis=0)
        x = x + pe
        if cls is None:
            return x
        return prepend_class_token(cls + pe_cls, x)


def prepend_class_token(cls: Array, x: Array) -> Array:
    """The class token cls [1, 1, D] put before tokens x [B, N, D]: [B, 1 + N, D]."""
    cls = jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
    return jnp.concatenate([cls, x], axis=1)


CLASS_TOKENS = ("none", "with_posemb", "no_posemb")


def select_tokens(images: Array, patch_size: int, keep: int, selector: str) -> Array:
    """Indices [B, keep] (ascending, row-major over the patch grid) of the patches to keep.

    `selector` names a registered token selector (`mmjax.registry.TOKEN_SELECTORS`), a function
    (images [B, H, W, C] normalised, patch_size, keep) -> indices [B, keep] that a project
    supplies, e.g. for scenes whose background needs no tokens.
    """
    from mmjax.registry import TOKEN_SELECTORS

    if not selector:
        raise ValueError(
            f"keep_tokens={keep} needs a token_selector, one of {TOKEN_SELECTORS.names()}"
        )
    indices = TOKEN_SELECTORS.get(selector)(normalize_images(images), patch_size, keep)
    return jnp.sort(jax.lax.stop_gradient(indices), axis=-1)


def patch_positions(
    images: Array, patch_size: int, keep_tokens: int = 0, token_selector: str = ""
) -> Array:
    """Grid positions [B, N, 2] (row, column, in units of the image side) of `PatchStem`'s tokens.

    The tokens' order is the stem's: all patches in raster order, or with `keep_tokens` the
    kept ones (`select_tokens` with `token_selector`). A patch's position is its centre
    divided by H (rows) and W (columns), so positions lie in (0, 1).
    """
    b, h, w = images.shape[:3]
    grid_h, grid_w = h // patch_size, w // patch_size
    if keep_tokens:
        indices = select_tokens(images, patch_size, keep_tokens, token_selector)
    else:
        indices = jnp.broadcast_to(jnp.arange(grid_h * grid_w), (b, grid_h * grid_w))
    rows, cols = indices // grid_w, indices % grid_w
    return jnp.stack([rows / grid_h, cols / grid_w], -1) + 0.5 / jnp.array([grid_h, grid_w])


class PatchStem(nn.Module):
    """ViT patch embedding: a conv with kernel = stride = patch_size, plus position embeddings.

    Maps images [B, H, W, 3] to tokens [B, N, width] with N = (H // p) * (W // p); pixels beyond
    the last whole patch are dropped.

    Attributes:
      patch_size: p.
      width: token width D.
      posemb: "learn" or "sincos2d" (fixed; width must be divisible by 4).
      kernel_size: if larger than patch_size, each token is embedded from a kernel_size square
        window centred on its patch (an overlapping patch embedding, zero-padded after
        normalisation), followed by a LayerNorm, so a token sees the whole of a small object
        it covers a part of. 0 means patch_size.
      coords: append pixel coordinates as two input channels (as `ConvStem`'s CoordConv), so
        each token holds its position linearly as well as in `posemb`.
      keep_tokens: if > 0, keep only this many tokens per image, those of the patches that
        `token_selector` picks (`select_tokens`), in raster order, each with its own position
        embedding: N = keep_tokens.
      token_selector: a registered token selector (`mmjax.registry.TOKEN_SELECTORS`).
      class_token: "none"; "with_posemb", a learned token (parameter `cls`, [1, 1, D]) put
        before the patches that gets the first of 1 + N position embeddings (Hugging Face ViT
        and CLIP); or "no_posemb", put before them after their N position embeddings were
        added (big_vision's "tok" pooling): N + 1 tokens, the class token first.
      patch_bias: whether the patch embedding has a bias (CLIP's has none).
      mean: per-channel mean for normalisation (of images in [0, 1]).
      std: per-channel std for normalisation.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    patch_size: int
    width: int
    posemb: str = "learn"
    coords: bool = False
    kernel_size: int = 0
    keep_tokens: int = 0
    token_selector: str = ""
    class_token: str = "none"
    patch_bias: bool = True
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, images: Array) -> Array:
        """Embed images [B, H, W, 3] into [B, N, width] tokens."""
        x = normalize_images(images, self.mean, self.std, self.dtype)
        if self.coords:
            x = append_coordinates(x)
        p = self.patch_size
        k = self.kernel_size or p
        if k < p or (k - p) % 2:
            raise ValueError(f"kernel_size={k} must be patch_size={p} plus an even number.")
        x = x[:, : x.shape[1] // p * p, : x.shape[2] // p * p]
        grid = (x.shape[1] // p, x.shape[2] // p)
        kept = None
        if self.keep_tokens:
            if not 0 < self.keep_tokens <= grid[0] * grid[1]:
                raise ValueError(
                    f"keep_tokens={self.keep_tokens} must be in 1..{grid[0] * grid[1]}, the "
                    f"number of {p}x{p} patches."
                )
            kept = select_tokens(images, p, self.keep_tokens, self.token_selector)
        x = _PatchEmbedding(
            self.width,
            k,
            p,
            use_bias=self.patch_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="embedding",
        )(x, kept)
        if k > p:
            # Measured, not derived: a window wider than the patch sums many more pixels, and
            # without this norm the default VQA model did not learn left/top on the built-in
            # dataset in a 4,000-step probe.
            norm = nn.LayerNorm(
                dtype=self.dtype, param_dtype=self.param_dtype, name="embedding_norm"
            )
            x = norm(x)
        if self.class_token not in CLASS_TOKENS:
            raise ValueError(f"Unknown class_token {self.class_token!r}; use {CLASS_TOKENS}.")
        add_posemb = _AddPositionEmbedding(self.posemb, self.param_dtype, name="posemb")
        if self.class_token == "none":
            return add_posemb(x, grid, kept)
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.width), self.param_dtype)
        if self.class_token == "with_posemb":
            return add_posemb(x, grid, kept, cls=cls)
        return prepend_class_token(cls, add_posemb(x, grid, kept))


class _PatchEmbedding(nn.Module):
    """A conv with stride p and a k x k kernel (k - p even), zero-padded by (k - p) / 2 each side.

    The parameters are `nn.Conv`'s (`kernel` [k, k, C, F], `bias` [F]; same names, shapes and
    initialisers). Without `kept` it is that conv: [B, H, W, C] -> [B, H / p, W / p, F]. With
    `kept` (indices [B, K] into the H / p x W / p grid, row-major) it embeds only those patches:
    each one's k x k window is gathered and multiplied by the kernel as one [K, k k C] x
    [k k C, F] matmul per image, giving [B, K, F]. On a 2-core CPU that is 2.4x faster than the
    conv over the whole grid followed by the selection (15x15 windows, 64 of 225 patches,
    forward and backward), where XLA's conv with 3 input channels runs far below its matmul rate.

    Attributes:
      features: F.
      kernel_size: k.
      patch_size: p.
      use_bias: whether to add the bias (False: no `bias` parameter).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    features: int
    kernel_size: int
    patch_size: int
    use_bias: bool = True
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array, kept: Array | None = None) -> Array:
        """Embed the patches of x [B, H, W, C] (H, W multiples of p): see the class docstring."""
        k, p = self.kernel_size, self.patch_size
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (k, k, x.shape[-1], self.features),
            self.param_dtype,
        )
        bias = jnp.zeros((self.features,), self.param_dtype)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros_init(), bias.shape, self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        pad = (k - p) // 2
        if kept is None:
            y = jax.lax.conv_general_dilated(
                x, kernel, (p, p), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            return y + bias
        grid_w = x.shape[2] // p
        rows, cols = kept // grid_w * p, kept % grid_w * p
        x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

        def window(image, row, col):
            return jax.lax.dynamic_slice(image, (row, col, 0), (k, k, image.shape[-1]))

        windows = jax.vmap(jax.vmap(window, (None, 0, 0)))(x, rows, cols)  # [B, K, k, k, C]
        windows = windows.reshape(*kept.shape, -1)
        return windows @ kernel.reshape(-1, self.features) + bias


def append_coordinates(x: Array) -> Array:
    """Appends each pixel's column and row in [-1, 1] as two channels: [B,H,W,C] -> [B,H,W,C+2].

    With them (CoordConv, Liu et al. 2018) the first convolution already mixes what is at a
    pixel with where it is, so tokens carry absolute position together with colour and shape.
    """
    batch, height, width = x.shape[:3]
    rows, cols = jnp.meshgrid(
        jnp.linspace(-1.0, 1.0, height), jnp.linspace(-1.0, 1.0, width), indexing="ij"
    )
    grid = jnp.broadcast_to(jnp.stack([cols, rows], -1), (batch, height, width, 2))
    return jnp.concatenate([x, grid.astype(x.dtype)], axis=-1)


class ConvStem(nn.Module):
    """Small conv stem: 3x3 stride-2 conv + GroupNorm + ReLU per entry of `channels`.

    Then a linear projection to `width` and position embeddings. GroupNorm rather than
    BatchNorm keeps `__call__` free of mutable batch statistics. With 'SAME' padding each conv
    halves H and W rounding up, e.g. 75 -> 38 -> 19 -> 10 -> 5 for four convs (N = 25).
    Maps images [B, H, W, 3] to [B, N, width].

    Attributes:
      width: token width D.
      channels: output channels of the successive convs.
      posemb: "learn" or "sincos2d".
      mean: per-channel mean for normalisation (of images in [0, 1]).
      std: per-channel std for normalisation.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    width: int
    channels: Sequence[int] = (32, 64, 128, 128)
    posemb: str = "learn"
    coords: bool = False
    mean: Sequence[float] = (0.5, 0.5, 0.5)
    std: Sequence[float] = (0.5, 0.5, 0.5)
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, images: Array) -> Array:
        """Embed images [B, H, W, 3] into [B, N, width] tokens."""
        x = normalize_images(images, self.mean, self.std, self.dtype)
        if self.coords:
            x = append_coordinates(x)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for i, c in enumerate(self.channels):
            x = nn.Conv(c, (3, 3), strides=(2, 2), padding="SAME", name=f"conv_{i}", **kw)(x)
            # Up to 32 groups, as many as divide the channel count.
            x = nn.GroupNorm(num_groups=math.gcd(32, c), name=f"norm_{i}", **kw)(x)
            x = nn.relu(x)
        x = nn.Dense(self.width, name="embedding", **kw)(x)
        return _AddPositionEmbedding(self.posemb, self.param_dtype, name="posemb")(x)
