"""Attention weights of a VQATransformer's fusion encoder, per layer and head, and their rollout.

`vqa_attention` runs the model once with `return_attention=True` and returns, for each
question, the square attention matrix over [image tokens; question tokens] of every layer,
the rollout of those layers, and how much each image token feeds the answer.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from mmjax.interpret.grid import on_grid, token_cells, token_grid
from mmjax.interpret.rollout import answer_relevance, attention_rollout, joint_attention


@dataclasses.dataclass
class VQAAttention:
    """The fusion attention of B images with Q questions each.

    Attributes:
      logits: answer logits float32 [B, Q, num_answers].
      layers: per layer, the joint attention float64 [B, Q, H, T, T] over T = N + L tokens
        (N image tokens, then the question's L tokens).
      rollout: attention rollout of all layers, [B, Q, T, T] (rows sum to one).
      answer_to_image: per layer, the attention of the answer's token(s) to the image tokens,
        [B, Q, H, N] (a layer's own weights, no rollout).
      relevance: rollout relevance of each image token for the answer, [B, Q, N].
      grid: (rows, columns) of the image-token grid (N = rows * columns, row-major).
      cells: bool [B, rows * columns], which grid cells are image tokens (all of them unless
        the stem keeps only some patches).

    For a patch stem that keeps only some patches (`keep_tokens`), `layers` and `rollout` are
    over the kept tokens, while `answer_to_image` and `relevance` are placed back on the whole
    patch grid (zero on the dropped patches).
    """

    logits: np.ndarray
    layers: list[np.ndarray]
    rollout: np.ndarray
    answer_to_image: list[np.ndarray]
    relevance: np.ndarray
    grid: tuple[int, int]
    cells: np.ndarray | None = None


def unstack_scanned_params(params, depth: int):
    """Parameters of a `scan_layers=True` model in the layout of the unrolled model.

    `fusion/blocks/...` arrays with a leading axis of size `depth` become `fusion/block_{i}/...`
    (the same block parameters; `MultimodalEncoder` documents the two layouts).
    """
    fusion = dict(params["fusion"])
    if "blocks" not in fusion:
        return params
    blocks = fusion.pop("blocks")
    for i in range(depth):
        fusion[f"block_{i}"] = jax.tree.map(lambda x, i=i: x[i], blocks)
    return {**params, "fusion": fusion}


def answer_rows(model, questions) -> np.ndarray:
    """Which question-token rows the answer head of `model` reads: float [B, Q, L'] weights.

    L' = 1 for question_fusion="pooled" (the question's single fused token); otherwise L' = L
    with weight on the first token for pool="bos" and on the valid tokens for "mean" or
    "flatten" (a dense map of all valid tokens, approximated by their mean).
    """
    questions = np.asarray(questions)
    if model.question_fusion == "pooled":
        return np.ones((*questions.shape[:2], 1))
    if model.pool == "bos":
        rows = np.zeros(questions.shape)
        rows[..., 0] = 1.0
        return rows
    return (questions != 0).astype(np.float64)


def vqa_attention(model, params, images, questions, residual: float = 0.5) -> VQAAttention:
    """Runs `model` (a VQATransformer) on images [B, H, W, 3] and questions [B, Q, L].

    Models trained with `remat` or `scan_layers` are run as the same function without them
    (scanned parameters are unstacked), since only the unrolled blocks return their weights.
    `residual` is the identity's weight in the rollout (`attention_rollout`).
    """
    model = model.clone(remat=False, scan_layers=False)
    params = unstack_scanned_params(params, model.depth)
    logits, intermediates = jax.jit(
        lambda p, i, q: model.apply({"params": p}, i, q, return_attention=True)
    )(params, images, questions)
    batch, num_questions = questions.shape[:2]
    layers = []
    for i in range(model.depth):
        image = np.asarray(intermediates["image_attention"][f"block_{i}"])
        text = np.asarray(intermediates["text_attention"][f"block_{i}"])
        if model.condition_image != "none":  # each question had its own image copy: [B * Q, ...]
            image = image.reshape(batch, num_questions, *image.shape[1:])
            image = np.pad(image, [(0, 0)] * 4 + [(0, text.shape[-1] - image.shape[-1])])
            text = text.reshape(batch, num_questions, *text.shape[2:])
        layers.append(joint_attention(image, text))
    num_image = layers[0].shape[-1] - text.shape[-2]  # T - L
    rows = answer_rows(model, questions)
    rows = rows / rows.sum(-1, keepdims=True)
    rollout = attention_rollout(layers, residual=residual)
    per_layer = [
        np.einsum("bql,bqhlt->bqht", rows, layer[..., num_image:, :num_image]) for layer in layers
    ]
    relevance = answer_relevance(rollout, num_image, rows)
    grid, kept = token_grid(model, images, num_image)
    if kept is not None:
        per_layer = [on_grid(x, kept[:, None, None], grid) for x in per_layer]
        relevance = on_grid(relevance, kept[:, None], grid)
    return VQAAttention(
        logits=np.asarray(logits),
        layers=layers,
        rollout=rollout,
        answer_to_image=per_layer,
        relevance=relevance,
        grid=grid,
        cells=token_cells(kept, grid, batch),
    )
