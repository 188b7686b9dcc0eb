"""The VQA fusion's attention: `image_text_attention` against what it replaces, same pairs.

Each question's L tokens attend to its image's N tokens and to their own question's valid
tokens (mmjax/models/fusion.py). Three ways to compute the same outputs [B, Q, L, H, Dh]:
`image_text_attention` (ours: the image keys shared by the Q questions, one softmax assembled
from the two logit blocks); the naive per-question attention it replaces (the image keys and
values copied to every question, concatenated with the question's own, one masked einsum
softmax over [B*Q, N + L] keys); and `jax.nn.dot_product_attention` over those same copied
keys and mask. With a bias on the image logits (the default model's word pointer) all three
add it. Forward, and forward+backward (gradients of queries, keys and values), each
jit-compiled, float32.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from experiments.benchmarks.attention import _repeated
from experiments.benchmarks.timing import interleaved_medians
from mmjax.models.fusion import image_text_attention


@dataclasses.dataclass(frozen=True)
class Shape:
    """One case: B images of N tokens, Q questions of L tokens each, H heads of Dh.

    Attributes:
      name: what the case is, in words.
      bias: whether a bias [B, H, Q, L, N] is added to the image logits.
    """

    name: str
    batch: int
    tokens: int
    questions: int
    length: int
    heads: int
    head_dim: int
    bias: bool

    def text(self) -> str:
        """'B=8 N=64 Q=20 L=1 H=4 Dh=16' (+ ' bias')."""
        return (
            f"B={self.batch} N={self.tokens} Q={self.questions} L={self.length} "
            f"H={self.heads} Dh={self.head_dim}" + (" bias" if self.bias else "")
        )


# The default VQA model's fusion (64 kept image tokens, each question pooled to one token,
# width 64 in 4 heads, the word pointer's bias), the same with 4x the image tokens, and the
# shapes of the speed claim in image_text_attention's docstring.
SHAPES = {
    "default": Shape("default VQA model", 8, 64, 20, 1, 4, 16, True),
    "tokens_4x": Shape("default, 4x the image tokens", 8, 256, 20, 1, 4, 16, True),
    "docstring": Shape("image_text_attention's docstring", 32, 225, 20, 14, 4, 32, False),
}


def inputs(shape: Shape) -> dict:
    """The inputs of `image_text_attention` for `shape`, by keyword.

    Random queries, keys and values, the text mask (the last quarter of each question padded,
    at least one token valid) and the bias [B, H, Q, L, N] or None.
    """
    b, n, q, length = shape.batch, shape.tokens, shape.questions, shape.length
    h, d = shape.heads, shape.head_dim
    keys = jax.random.split(jax.random.key(n + length), 6)
    text, image = (b, q, length, h, d), (b, n, h, d)
    valid = jnp.arange(length) < max(1, length - length // 4)
    return dict(
        q_text=jax.random.normal(keys[0], text),
        k_image=jax.random.normal(keys[1], image),
        v_image=jax.random.normal(keys[2], image),
        k_text=jax.random.normal(keys[3], text),
        v_text=jax.random.normal(keys[4], text),
        text_mask=jnp.broadcast_to(valid, (b, q, length)),
        bias_image=jax.random.normal(keys[5], (b, h, q, length, n)) if shape.bias else None,
    )


def _per_question(q_text, k_image, v_image, k_text, v_text, text_mask, bias_image):
    """The per-question inputs of the naive attention.

    Queries [B*Q, L, H, Dh], keys and values [B*Q, N + L, H, Dh] (the image's copied to every
    question), mask [B*Q, 1, 1, N + L] and bias [B*Q, H, L, N + L] (None without a bias).
    """
    b, q, length, h, d = q_text.shape
    n = k_image.shape[1]

    def joint(image, text):
        copied = jnp.broadcast_to(image[:, None], (b, q, n, h, d))
        return jnp.concatenate([copied, text], axis=2).reshape(b * q, n + length, h, d)

    mask = jnp.concatenate([jnp.ones((b, q, n), bool), text_mask], axis=-1)
    mask = mask.reshape(b * q, 1, 1, n + length)
    bias = None
    if bias_image is not None:
        bias = jnp.einsum("bhqln->bqhln", bias_image).reshape(b * q, h, length, n)
        zeros = jnp.zeros((b * q, h, length, length), bias.dtype)
        bias = jnp.concatenate([bias, zeros], axis=-1)
    queries = q_text.reshape(b * q, length, h, d)
    return queries, joint(k_image, k_text), joint(v_image, v_text), mask, bias


def naive_per_question(q_text, k_image, v_image, k_text, v_text, text_mask, bias_image=None):
    """Per-question softmax attention over [image copied; own question] keys, as einsums."""
    q, k, v, mask, bias = _per_question(
        q_text, k_image, v_image, k_text, v_text, text_mask, bias_image
    )
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
    return out.reshape(q_text.shape)


def jax_nn_per_question(q_text, k_image, v_image, k_text, v_text, text_mask, bias_image=None):
    """`jax.nn.dot_product_attention` over the per-question keys of `naive_per_question`."""
    q, k, v, mask, bias = _per_question(
        q_text, k_image, v_image, k_text, v_text, text_mask, bias_image
    )
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask).reshape(q_text.shape)


def ours(q_text, k_image, v_image, k_text, v_text, text_mask, bias_image=None):
    """`image_text_attention`'s output (no weights returned, no dropout)."""
    return image_text_attention(
        q_text, k_image, v_image, k_text, v_text, text_mask, bias_image=bias_image
    )[0]


IMPLEMENTATIONS = {"ours": ours, "naive": naive_per_question, "jax_nn": jax_nn_per_question}


def _forward_backward(fn):
    """(q, k_i, v_i, k_t, v_t, mask, bias) -> gradients of sum(fn) in the five q/k/v inputs."""

    def loss(*args):
        return jnp.sum(fn(*args))

    return jax.grad(loss, argnums=(0, 1, 2, 3, 4))


def measure(name: str, backward: bool, reps: int, rep_seconds: float = 0.1) -> dict:
    """One `fusion_attention` line: ms per call of the three on case `SHAPES[name]`, in turns."""
    shape = SHAPES[name]
    args = tuple(inputs(shape).values())
    candidates, calls = {}, {}
    for key, fn in IMPLEMENTATIONS.items():
        jitted = jax.jit(_forward_backward(fn) if backward else fn)
        candidates[key], calls[key] = _repeated(jitted, args, rep_seconds)
    seconds = interleaved_medians(candidates, reps, warmup=0)
    ms = {key: 1e3 * seconds[key] / calls[key] for key in candidates}
    return {
        "section": "fusion_attention",
        "case": name,
        "shape": shape.text(),
        "pass": "forward+backward" if backward else "forward",
        "ours_ms": ms["ours"],
        "naive_ms": ms["naive"],
        "jax_nn_ms": ms["jax_nn"],
        "speed_vs_naive": ms["naive"] / ms["ours"],
        "speed_vs_jax_nn": ms["jax_nn"] / ms["ours"],
    }
