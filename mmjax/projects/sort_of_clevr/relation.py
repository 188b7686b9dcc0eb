"""Relation Network, CNN+MLP and question-only models of Santoro et al. 2017 for Sort-of-CLEVR.

As the reimplementations build them (kimhc6028/relational-networks): four 3x3 stride-2
convolutions of 24 channels turn a 75x75 image into a 5x5 grid, i.e. N = 25 "objects" of 24
features. The question is its 11-number code (6 colour one-hot, 2 type bits, 3 subtype bits).

- RelationNetwork: each object tagged with its grid coordinates (D = 26);
  a = f(sum over all N^2 ordered pairs (i, j) of g([o_i; o_j; q])), g = 4 x Dense(256) + ReLU,
  f = Dense(256) + ReLU, Dense(256) + ReLU, Dropout(0.5), Dense(answers).
- CNNMLP: the flattened grid [N * 24] with q, then the same f.
- QuestionOnlyMLP: q alone through the same f (the image is ignored).

Differences from the paper, for want of mutable batch statistics in the trainer: GroupNorm
instead of BatchNorm after each convolution. Every model encodes each image once for all of its
Q questions. Each returns (logits float32 [B, Q, answers], {"pre_logits": [B, Q, H]}).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.image import normalize_images

Array = jax.Array
DType = Any

# PyTorch's default (kaiming_uniform with a=sqrt(5): variance 1 / (3 fan_in)), which the
# reimplementations train with. With Flax's lecun_normal (3x the variance per layer) the RN's
# sum over all pairs starts with huge logits: a first loss of 94 at size=tiny, against 6.8
# with this (3.8 at the default size).
KERNEL_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def grid_coordinates(h: int, w: int) -> Array:
    """(row, column) of each cell of an h x w grid, row-major, scaled to [-1, 1]: [h * w, 2]."""
    rows, cols = jnp.meshgrid(jnp.linspace(-1.0, 1.0, h), jnp.linspace(-1.0, 1.0, w), indexing="ij")
    return jnp.stack([rows.reshape(-1), cols.reshape(-1)], -1)


class ObjectEncoder(nn.Module):
    """Images [B, H, W, 3] -> objects [B, N, C]: the cells of the last conv's grid.

    Each conv is 3x3, stride 2, 'SAME' padding, then ReLU and GroupNorm (75 -> 38 -> 19 -> 10
    -> 5 for four convs: N = 25). With `coords`, each object also gets its cell's (row, column)
    in [-1, 1] as two more features (C + 2).

    Attributes:
      channels: output channels of the successive convs.
      norm_groups: GroupNorm groups (must divide every entry of `channels`).
      coords: tag each object with its grid coordinates.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    channels: Sequence[int] = (24, 24, 24, 24)
    norm_groups: int = 8
    coords: bool = True
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, images: Array) -> Array:
        """Encode images [B, H, W, 3] (uint8 or float in [0, 1]) into objects [B, N, C(+2)]."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = normalize_images(images, dtype=self.dtype)
        for i, c in enumerate(self.channels):
            if c % self.norm_groups:
                raise ValueError(f"norm_groups={self.norm_groups} does not divide {c} channels")
            x = nn.Conv(
                c,
                (3, 3),
                strides=(2, 2),
                padding="SAME",
                name=f"conv_{i}",
                kernel_init=KERNEL_INIT,
                **kw,
            )(x)
            x = nn.GroupNorm(num_groups=self.norm_groups, name=f"norm_{i}", **kw)(nn.relu(x))
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        if self.coords:
            xy = jnp.broadcast_to(grid_coordinates(h, w), (b, h * w, 2))
            x = jnp.concatenate([x, xy.astype(x.dtype)], -1)
        return x


class PairDense(nn.Module):
    """The first layer of g on every ordered pair with each question: [B, Q, N, N, H].

    out[b, q, i, j] = W [o_i; o_j; q] + bias with one kernel W [2D + C, H], computed as
    W_a o_i + W_b o_j + (W_q q + bias), three projections broadcast against each other, so the
    [B, Q, N, N, 2D + C] input is never built (`factorised=False` builds it, as a reference).

    Attributes:
      features: H.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    features: int
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, objects: Array, questions: Array, factorised: bool = True) -> Array:
        """First-layer pre-activations [B, Q, N, N, H] of objects [B, N, D], questions [B, Q, C]."""
        d, c = objects.shape[-1], questions.shape[-1]
        kernel = self.param("kernel", KERNEL_INIT, (2 * d + c, self.features), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        kernel, bias = kernel.astype(self.dtype), bias.astype(self.dtype)
        objects, questions = objects.astype(self.dtype), questions.astype(self.dtype)
        if not factorised:
            b, n = objects.shape[:2]
            q = questions.shape[1]
            first = jnp.broadcast_to(objects[:, None, :, None], (b, q, n, n, d))
            second = jnp.broadcast_to(objects[:, None, None, :], (b, q, n, n, d))
            question = jnp.broadcast_to(questions[:, :, None, None], (b, q, n, n, c))
            return jnp.concatenate([first, second, question], -1) @ kernel + bias
        first = objects @ kernel[:d]  # [B, N, H]
        second = objects @ kernel[d : 2 * d]  # [B, N, H]
        question = questions @ kernel[2 * d :] + bias  # [B, Q, H]
        return question[:, :, None, None] + first[:, None, :, None] + second[:, None, None, :]


class AnswerMLP(nn.Module):
    """f: Dense + ReLU per entry of `widths`, dropout before the last layer, then answer logits.

    x [..., D] -> logits float32 [..., num_answers]; also returns the last hidden [..., H].

    Attributes:
      widths: hidden widths (the paper's f: (256, 256)).
      num_answers: output classes.
      dropout_rate: dropout on the last hidden layer, in training only.
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    widths: Sequence[int] = (256, 256)
    num_answers: int = 10
    dropout_rate: float = 0.5
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, Array]:
        """(logits [..., num_answers] float32, last hidden [..., widths[-1]])."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for i, width in enumerate(self.widths):
            x = nn.relu(nn.Dense(width, kernel_init=KERNEL_INIT, name=f"fc_{i}", **kw)(x))
        hidden = x
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        logits = nn.Dense(self.num_answers, kernel_init=KERNEL_INIT, name="out", **kw)(x)
        return logits.astype(jnp.float32), hidden


class RelationNetwork(nn.Module):
    """RN: f(sum over ordered object pairs (i, j) of g(o_i, o_j, q)) for each question q.

    images [B, H, W, 3], questions [B, Q, C] (float codes) -> logits [B, Q, num_answers].
    g's first layer is `PairDense` (factorised); its cost is B * Q * N^2 * g_width^2 per later
    layer, which dominates everything else.

    Attributes:
      num_answers: answer classes.
      channels: conv channels of the `ObjectEncoder`.
      norm_groups: GroupNorm groups of the encoder.
      g_width: width of every layer of g.
      g_depth: number of layers of g.
      f_widths: hidden widths of f.
      dropout_rate: dropout in f (training only).
      factorised: compute g's first layer factorised (False: the direct concatenation).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    question_input: ClassVar[str] = "question_code"  # the example key the model reads
    num_answers: int = 10
    channels: Sequence[int] = (24, 24, 24, 24)
    norm_groups: int = 8
    g_width: int = 256
    g_depth: int = 4
    f_widths: Sequence[int] = (256, 256)
    dropout_rate: float = 0.5
    factorised: bool = True
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, images: Array, questions: Array, train: bool = False):
        """Logits float32 [B, Q, num_answers] and {"pre_logits": f's last hidden [B, Q, H]}."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        objects = ObjectEncoder(self.channels, self.norm_groups, coords=True, name="encoder", **kw)(
            images
        )
        x = nn.relu(PairDense(self.g_width, name="g_0", **kw)(objects, questions, self.factorised))
        for i in range(1, self.g_depth):
            x = nn.relu(nn.Dense(self.g_width, kernel_init=KERNEL_INIT, name=f"g_{i}", **kw)(x))
        x = x.sum((2, 3))  # over all N^2 ordered pairs: [B, Q, g_width]
        logits, hidden = AnswerMLP(
            self.f_widths, self.num_answers, self.dropout_rate, name="f", **kw
        )(x, train)
        return logits, {"pre_logits": hidden}


class CNNMLP(nn.Module):
    """CNN+MLP: the flattened object grid [N * C] next to the question code, through f.

    images [B, H, W, 3], questions [B, Q, C] -> logits [B, Q, num_answers]. The grid is
    flattened in a fixed order, so position is implicit and no coordinates are added.

    Attributes:
      num_answers: answer classes.
      channels: conv channels of the `ObjectEncoder`.
      norm_groups: GroupNorm groups of the encoder.
      f_widths: hidden widths of the MLP (the paper's 256, 256).
      dropout_rate: dropout before the last layer (training only).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    question_input: ClassVar[str] = "question_code"  # the example key the model reads
    num_answers: int = 10
    channels: Sequence[int] = (24, 24, 24, 24)
    norm_groups: int = 8
    f_widths: Sequence[int] = (256, 256)
    dropout_rate: float = 0.5
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, images: Array, questions: Array, train: bool = False):
        """Logits float32 [B, Q, num_answers] and {"pre_logits": the MLP's last hidden}."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        objects = ObjectEncoder(
            self.channels, self.norm_groups, coords=False, name="encoder", **kw
        )(images)
        b, q = questions.shape[:2]
        flat = objects.reshape(b, 1, math.prod(objects.shape[1:]))
        x = jnp.concatenate(
            [jnp.broadcast_to(flat, (b, q, flat.shape[-1])), questions.astype(self.dtype)], -1
        )
        logits, hidden = AnswerMLP(
            self.f_widths, self.num_answers, self.dropout_rate, name="f", **kw
        )(x, train)
        return logits, {"pre_logits": hidden}


class QuestionOnlyMLP(nn.Module):
    """The question code alone through f; the images only set the batch shape.

    images [B, H, W, 3] (ignored), questions [B, Q, C] -> logits [B, Q, num_answers]. It can
    learn at best the most frequent answer of each (colour, subtype).

    Attributes:
      num_answers: answer classes.
      f_widths: hidden widths of the MLP.
      dropout_rate: dropout before the last layer (training only).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    question_input: ClassVar[str] = "question_code"  # the example key the model reads
    num_answers: int = 10
    f_widths: Sequence[int] = (256, 256)
    dropout_rate: float = 0.5
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, images: Array, questions: Array, train: bool = False):
        """Logits float32 [B, Q, num_answers] and {"pre_logits": the MLP's last hidden}."""
        del images
        logits, hidden = AnswerMLP(
            self.f_widths,
            self.num_answers,
            self.dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="f",
        )(questions.astype(self.dtype), train)
        return logits, {"pre_logits": hidden}
