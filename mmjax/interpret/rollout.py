"""Attention rollout (Abnar & Zuidema 2020): how much each input token feeds each output token.

A transformer layer's output at token i is its residual input plus attention over the tokens.
Rollout models layer l as the row-stochastic matrix  Â_l = r I + (1 - r) mean_heads(A_l)
(r = `residual`, 0.5 in the paper) and multiplies them from the first layer up:
R = Â_L ... Â_2 Â_1. Row i of R distributes token i's output over the input tokens; every row
sums to one.

In the VQA fusion encoder the tokens of one question are [image tokens (N); question tokens
(L)]. With `share_image=True` image tokens attend only to image tokens, so their rows hold zeros
over the question keys (`joint_attention` builds the full square matrix either way).
"""

from __future__ import annotations

import numpy as np


def joint_attention(image_weights, text_weights) -> np.ndarray:
    """The attention over [image; question] tokens of one fusion layer: [B, Q, H, T, T].

    Args:
      image_weights: image-token rows, [B, H, N, N] (image tokens shared by the Q questions,
        `share_image=True`) or [B, Q, H, N, N + L] (per question).
      text_weights: question-token rows, [B, Q, H, L, N + L].

    Returns:
      float64 [B, Q, H, T, T] with T = N + L: rows 0..N-1 the image tokens, rows N.. the
      question's tokens; columns in the same order.
    """
    text = np.asarray(text_weights, np.float64)
    image = np.asarray(image_weights, np.float64)
    batch, questions, heads, length, total = text.shape
    if image.ndim == 4:  # shared image tokens: zero weight on the question keys, same for all Q
        n = image.shape[-1]
        image = np.concatenate([image, np.zeros((*image.shape[:-1], total - n))], axis=-1)
        image = np.broadcast_to(image[:, None], (batch, questions, heads, n, total))
    if image.shape[-1] != total or image.shape[-2] + length != total:
        raise ValueError(
            f"image rows {list(image.shape)} and text rows {list(text.shape)} do not make a "
            "square [N + L, N + L] attention matrix"
        )
    return np.concatenate([image, text], axis=-2)


def attention_rollout(layers, residual: float = 0.5, head_fusion: str = "mean") -> np.ndarray:
    """Rollout of per-layer attention, first layer first: [..., H, T, T] each -> [..., T, T].

    Args:
      layers: a sequence of row-stochastic attention arrays [..., H, T, T], one per layer.
      residual: weight r of the identity (the residual connection) in each layer's matrix.
      head_fusion: "mean" (the paper), "max" or "min" over heads; "max" and "min" rows are
        renormalised to sum to one.

    Returns:
      float64 [..., T, T]: row i is token i's final state distributed over the input tokens;
      each row sums to one.
    """
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual={residual} must lie in [0, 1]")
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}
    if head_fusion not in fuse:
        raise ValueError(f"head_fusion={head_fusion!r} is not one of {sorted(fuse)}")
    if not len(layers):
        raise ValueError("attention_rollout needs at least one layer")
    result = None
    for weights in layers:
        a = fuse[head_fusion](np.asarray(weights, np.float64), axis=-3)
        a = a / a.sum(-1, keepdims=True)
        a = residual * np.eye(a.shape[-1]) + (1.0 - residual) * a
        result = a if result is None else a @ result
    return result


def answer_relevance(rollout, num_image_tokens: int, answer_rows) -> np.ndarray:
    """Relevance of each image token for the answer: [..., T, T] -> [..., N].

    `answer_rows` [..., L] weights the question's token rows that the answer head reads (one
    for the pooled or BOS token, the valid tokens for a mean); the relevance is their weighted
    mean row of the rollout, restricted to the N image columns. Its sum is the share of the
    answer that flows from the image (the rest is from the question's own tokens).
    """
    rollout = np.asarray(rollout, np.float64)
    rows = np.asarray(answer_rows, np.float64)
    rows = rows / rows.sum(-1, keepdims=True)
    text_rows = rollout[..., num_image_tokens:, :]  # [..., L, T]
    return np.einsum("...l,...lt->...t", rows, text_rows)[..., :num_image_tokens]
